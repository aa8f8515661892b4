"""``python tests/ddp_probe.py ARGS`` is ``python -m neurofit ARGS`` that also records what its process did, for
the DDP tests: the cluster environment, rank and world size the Trainer gave it; per training step the
recording and trial ids its sampler yielded; every chunk it decoded from the store while training; every file
it wrote through neurofit's atomic writers. At exit the record goes to ``$NEUROFIT_PROBE/<pid>.json``.

Lightning's own launcher re-runs this script for its other ranks, and torchrun or srun start it directly, so
every rank is recorded however it was started.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import neurofit.io  # noqa: E402  (patched before any module binds atomic_path)

RECORD: dict = {"environment": None, "rank": None, "world_size": None, "steps": [], "chunk_reads": [],
                "writes": []}
_pending: dict[int, tuple] = {}  # id of a trial array the train sampler yielded -> (epoch, the array)
_reading = {"epoch": None}  # the epoch of the training batch being read, None for any other read

_atomic_path = neurofit.io.atomic_path


@contextlib.contextmanager
def _recorded_atomic_path(path, *args, **kwargs):
    RECORD["writes"].append(str(path))
    with _atomic_path(path, *args, **kwargs) as tmp:
        yield tmp


neurofit.io.atomic_path = _recorded_atomic_path

from neurofit.cli import main  # noqa: E402
from neurofit.data import datamodule  # noqa: E402

_iter, _getitem, _block, _loader = (datamodule.ScheduleSampler.__iter__, datamodule.BatchDataset.__getitem__,
                                    datamodule.ChunkCache.block, datamodule.NeuralDataModule.train_dataloader)


def _recorded_iter(self):
    for name, trials in _iter(self):
        RECORD["steps"].append({"epoch": self.epoch, "rank": self.rank, "recording": name,
                                "trials": [int(t) for t in trials]})
        _pending[id(trials)] = (self.epoch, trials)
        yield name, trials


def _recorded_getitem(self, key):
    # Validation batches (and the readout's RF mapping) read through the same caches; only reads of the
    # training batches the sampler yielded count.
    _reading["epoch"] = _pending.pop(id(key[1]), (None,))[0]
    try:
        return _getitem(self, key)
    finally:
        _reading["epoch"] = None


def _recorded_block(self, index):
    if _reading["epoch"] is not None and index not in self.blocks:
        RECORD["chunk_reads"].append({"epoch": _reading["epoch"], "array": self.label, "chunk": int(index)})
    return _block(self, index)


def _recorded_loader(self):
    trainer = self.trainer
    environment = getattr(trainer.strategy, "cluster_environment", None)  # None in one process
    RECORD.update(environment=type(environment).__name__, rank=trainer.global_rank, world_size=trainer.world_size)
    return _loader(self)


datamodule.ScheduleSampler.__iter__ = _recorded_iter
datamodule.BatchDataset.__getitem__ = _recorded_getitem
datamodule.ChunkCache.block = _recorded_block
datamodule.NeuralDataModule.train_dataloader = _recorded_loader


@atexit.register
def _write() -> None:
    folder = Path(os.environ["NEUROFIT_PROBE"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{os.getpid()}.json").write_text(json.dumps(RECORD))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
