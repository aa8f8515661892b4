"""Multi-recording data loading for training and prediction.

Each batch comes from one recording (readouts differ in size). Per epoch a *schedule* of batches is drawn
from the seed and epoch alone, so every DDP rank computes the same schedule and takes its own disjoint
part of every batch (``shard``): ranks step through the same recordings in lockstep, see disjoint trials,
read only the chunks their own trials lie in, and always have the same number of batches (no hangs from
uneven counts).

Arrays are read from zarr lazily, or held in memory when they fit a budget. To keep streaming cheap,
training batches are cut from shuffled windows of whole chunks (a shuffle buffer), so one batch reads a few
chunks rather than one chunk per trial.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader, Dataset, Sampler

from neurofit.config.schema import DataConfig
from neurofit.data.recording import TEST_TIERS, VALIDATION_TIERS
from neurofit.data.spec import RecordingSpec, spec_from_recording
from neurofit.data.store import list_recordings, open_recording, reading
from neurofit.errors import ConfigError, DataError

ARRAY_VARS = ("stimulus", "responses", "behavior", "pupil_center", "response_mask")
SAMPLING = ("proportional", "balanced")


class ChunkCache:
    """Decoded trial chunks of one on-disk array, least recently used evicted first.

    Training batches are cut from shuffled windows of whole chunks (``epoch_schedule``), so consecutive
    batches share chunks: keeping the window's chunks decoded means every chunk is read and decompressed
    once per epoch instead of once per batch that touches it."""

    def __init__(self, array, capacity: int, label: str = "array") -> None:
        """``array``: a chunked on-disk array; ``capacity``: decoded chunks kept; ``label``: the array's
        place (``STORE:RECORDING/VAR``) in read errors."""
        self.array, self.capacity, self.label = array, capacity, label
        self.chunk = int(array.chunks[0])
        self.blocks: OrderedDict[int, np.ndarray] = OrderedDict()

    def block(self, index: int) -> np.ndarray:
        """Chunk ``index`` (chunk rows of the array, the last one may be shorter)."""
        if index in self.blocks:
            self.blocks.move_to_end(index)
            return self.blocks[index]
        with reading(self.label, f"chunk {index}"):
            block = self.array[index * self.chunk:(index + 1) * self.chunk]
        self.blocks[index] = block
        if len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)
        return block

    def read(self, trials: np.ndarray) -> np.ndarray:
        """Rows ``trials`` (any order) -> (len(trials), ...)."""
        out = np.empty((len(trials),) + tuple(self.array.shape[1:]), dtype=self.array.dtype)
        chunk_ids = trials // self.chunk
        for index in np.unique(chunk_ids):
            rows = chunk_ids == index
            out[rows] = self.block(int(index))[trials[rows] - index * self.chunk]
        return out


@dataclass
class RecordingArrays:
    """The arrays of one recording, in memory (numpy) or on disk (zarr behind a chunk cache), read by trial
    indices."""

    name: str
    arrays: dict[str, np.ndarray | ChunkCache]
    chunk: int
    tiers: np.ndarray
    stimulus_id: np.ndarray  # (trial,) repeats of one stimulus share it
    has_responses: np.ndarray  # (trial,) bool: any recorded response

    def read(self, trials: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays for the given trials (any order), each (len(trials), ...)."""
        trials = np.asarray(trials)
        return {key: arr[trials] if isinstance(arr, np.ndarray) else arr.read(trials)
                for key, arr in self.arrays.items()}

    def trials(self, tier: str) -> np.ndarray:
        """Indices of trials in ``tier`` that have recorded responses."""
        return np.flatnonzero((self.tiers == tier) & self.has_responses)


def load_arrays(path: str | os.PathLike, name: str, in_memory: bool, cache_chunks: int = 16) -> RecordingArrays:
    """Open one recording for loading. ``in_memory`` reads every array now; otherwise reads stay lazy,
    with up to ``cache_chunks`` decoded chunks kept per array (at least one shuffle window)."""
    with reading(path, f"recording {name!r}"):
        group = zarr.open_group(str(path), mode="r")[name]
        arrays = {key: group[key] for key in ARRAY_VARS if key in group}
        chunk = int(arrays["responses"].chunks[0])
        if in_memory:
            arrays = {key: arr[...] for key, arr in arrays.items()}
        else:
            arrays = {key: ChunkCache(arr, cache_chunks, f"{path}:{name}/{key}") for key, arr in arrays.items()}
        tiers = np.asarray(group["tier"][...]).astype(str)
        if "response_mask" in group:
            mask = np.asarray(group["response_mask"][...])
            has = mask.reshape(len(tiers), -1).any(axis=1)
        else:
            has = np.ones(len(tiers), dtype=bool)
        stimulus_id = np.asarray(group["stimulus_id"][...])
    return RecordingArrays(name, arrays, chunk, tiers, stimulus_id, has)


def store_nbytes(path: str | os.PathLike, names: list[str]) -> int:
    """Uncompressed bytes of the loadable arrays of the given recordings."""
    root = zarr.open_group(str(path), mode="r")
    return sum(int(root[n][k].nbytes) for n in names for k in ARRAY_VARS if k in root[n])


def epoch_schedule(trials: dict[str, np.ndarray], chunks: dict[str, int], batch_size: int, seed: int,
                   epoch: int, sampling: str = "proportional", window: int = 8) -> list[tuple[str, np.ndarray]]:
    """The epoch's batches as (recording, trial indices), identical on every rank.

    ``proportional``: every training trial once per epoch, so recordings contribute in proportion to
    their size. ``balanced``: every recording contributes as many batches as the largest one (smaller ones
    cycle), so small recordings are not drowned out. Trials are shuffled within windows of ``window`` whole
    chunks whose order is shuffled too; batches of different recordings are interleaved at random.
    """
    if sampling not in SAMPLING:
        raise ConfigError(f"data.sampling: unknown {sampling!r} (choose from {list(SAMPLING)})")
    rng = np.random.default_rng([seed, epoch])
    per_rec: dict[str, list[np.ndarray]] = {}
    for name in sorted(trials):
        idx = trials[name]
        if not len(idx):
            continue
        chunk_ids = idx // chunks[name]
        uniq = rng.permutation(np.unique(chunk_ids))
        order = []
        for start in range(0, len(uniq), window):
            members = idx[np.isin(chunk_ids, uniq[start:start + window])]
            order.append(rng.permutation(members))
        flat = np.concatenate(order)
        per_rec[name] = [flat[i:i + batch_size] for i in range(0, len(flat), batch_size)]
    if sampling == "balanced" and per_rec:
        most = max(len(b) for b in per_rec.values())
        per_rec = {n: [b[i % len(b)] for i in range(most)] for n, b in per_rec.items()}
    # Interleave recordings at random but keep each recording's batches in window order, so consecutive
    # batches of a recording come from the same chunks (the chunk cache then reads each chunk once).
    labels = rng.permutation(np.repeat(np.array(list(per_rec), dtype=object), [len(b) for b in per_rec.values()]))
    position = dict.fromkeys(per_rec, 0)
    schedule = []
    for name in labels:
        schedule.append((name, per_rec[name][position[name]]))
        position[name] += 1
    return schedule


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s part of a global batch of trial indices: the batch cut, in trial order, into
    ``world_size`` consecutive blocks whose sizes differ by at most one, each kept in batch order. The parts are
    disjoint and together the whole batch; as chunks hold consecutive trials, each rank reads only the chunks
    its own trials lie in, sharing at most a chunk at each block boundary with its neighbour (interleaved
    parts, ``batch[rank::world_size]``, would make every rank read every chunk of the batch)."""
    if world_size == 1:
        return batch
    mine = np.array_split(np.argsort(batch, kind="stable"), world_size)[rank]
    return batch[np.sort(mine)]


class ScheduleSampler(Sampler):
    """Yields this rank's (recording, trials) batches of the epoch schedule; Lightning calls ``set_epoch``."""

    def __init__(self, trials: dict[str, np.ndarray], chunks: dict[str, int], batch_size: int, seed: int,
                 sampling: str, window: int, rank: int = 0, world_size: int = 1) -> None:
        self.trials, self.chunks = trials, chunks
        self.batch_size, self.seed, self.sampling, self.window = batch_size, seed, sampling, window
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        smallest = min(len(t) for t in trials.values())
        if smallest < world_size:
            raise DataError(f"a recording has {smallest} training trials, fewer than {world_size} processes")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _schedule(self) -> list[tuple[str, np.ndarray]]:
        # The global batch is batch_size per rank; short final batches with fewer trials than ranks are
        # merged away by dropping them, so every rank gets at least one trial per step.
        sched = epoch_schedule(self.trials, self.chunks, self.batch_size * self.world_size, self.seed,
                               self.epoch, self.sampling, self.window)
        return [(n, b) for n, b in sched if len(b) >= self.world_size]

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for name, batch in self._schedule():
            yield name, shard(batch, self.rank, self.world_size)

    def __len__(self) -> int:
        return len(self._schedule())


class BatchDataset(Dataset):
    """Map-style dataset whose items are whole batches: key (recording, trials) -> dict of arrays."""

    def __init__(self, recordings: dict[str, RecordingArrays]) -> None:
        self.recordings = recordings

    def __len__(self) -> int:
        return sum(len(r.tiers) for r in self.recordings.values())

    def __getitem__(self, key: tuple[str, np.ndarray]) -> dict:
        name, trials = key
        batch = self.recordings[name].read(np.asarray(trials))
        batch["recording"] = name
        return batch


def sequential_batches(trials: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive (unshuffled) batches of trial indices, for validation and prediction."""
    return [trials[i:i + batch_size] for i in range(0, len(trials), batch_size)]


class NeuralDataModule(L.LightningDataModule):
    """Training/validation data of every recording in a store.

    Args:
        path: the zarr store.
        batch_size: trials per batch and per process.
        sampling: "proportional" or "balanced" across recordings (see ``epoch_schedule``).
        in_memory: True, False or "auto" (load when the arrays fit ``memory_budget_gb``).
        num_workers: DataLoader worker processes.
        shuffle_window: chunks per shuffle window when streaming.
        seed: schedule seed.
        recordings: subset of recording names (default: all).
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = 64, sampling: str = "proportional",
                 in_memory: bool | str = "auto", memory_budget_gb: float = 4.0, num_workers: int = 0,
                 shuffle_window: int = 8, seed: int = 0, recordings: list[str] | None = None) -> None:
        super().__init__()
        if sampling not in SAMPLING:
            raise ConfigError(f"data.sampling: unknown {sampling!r} (choose from {list(SAMPLING)})")
        self.path = Path(path)
        self.batch_size, self.sampling, self.num_workers = batch_size, sampling, num_workers
        self.shuffle_window, self.seed = shuffle_window, seed
        names = list_recordings(self.path)
        unknown = sorted(set(recordings or []) - set(names))
        if unknown:
            raise DataError(f"{self.path}: no recording(s) {unknown} (has {names})")
        self.names = list(recordings or names)
        if in_memory == "auto":
            in_memory = store_nbytes(self.path, self.names) <= memory_budget_gb * 2**30
        self.in_memory = bool(in_memory)
        self.recordings: dict[str, RecordingArrays] = {}
        self.specs: list[RecordingSpec] = []

    @classmethod
    def from_config(cls, cfg: DataConfig, seed: int) -> NeuralDataModule:
        """The data module of a config's ``data`` section (``cfg.path`` must be set)."""
        return cls(cfg.path, batch_size=cfg.batch_size, sampling=cfg.sampling, in_memory=cfg.in_memory,
                   memory_budget_gb=cfg.memory_budget_gb, num_workers=cfg.num_workers,
                   shuffle_window=cfg.shuffle_window, seed=seed, recordings=cfg.recordings)

    def prepare_specs(self) -> list[RecordingSpec]:
        """Validate the recordings and compute their specs (training-tier statistics); idempotent."""
        if self.specs:
            return self.specs
        for name in self.names:
            ds = open_recording(self.path, name, validate_values=True)
            arrays = load_arrays(self.path, name, self.in_memory, cache_chunks=2 * self.shuffle_window)
            train = arrays.trials("train")
            if not len(train):
                raise DataError(f"{self.path}: recording {name!r} has no 'train' trials with responses")
            if not len(validation_trials(arrays)):
                raise DataError(f"{self.path}: recording {name!r} has no trials with responses in any of the "
                                f"validation tiers {list(VALIDATION_TIERS)}")
            self.recordings[name] = arrays
            self.specs.append(spec_from_recording(ds, name, train))
        return self.specs

    def setup(self, stage: str | None = None) -> None:
        self.prepare_specs()

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        sampler = ScheduleSampler(
            {n: r.trials("train") for n, r in self.recordings.items()},
            {n: r.chunk for n, r in self.recordings.items()},
            self.batch_size, self.seed, self.sampling, self.shuffle_window, rank, world)
        return DataLoader(BatchDataset(self.recordings), sampler=sampler, batch_size=None,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        # Every rank scores the full validation set: it is small, and the early-stopping correlation must be
        # the same number on all ranks.
        keys = [(n, b) for n, r in self.recordings.items()
                for b in sequential_batches(validation_trials(r), self.batch_size)]
        return DataLoader(BatchDataset(self.recordings), sampler=keys, batch_size=None,
                          num_workers=self.num_workers)


def validation_trials(arrays: RecordingArrays) -> np.ndarray:
    """Trials of the first validation tier present ("validation", else SENSORIUM 2023's "oracle")."""
    for tier in VALIDATION_TIERS:
        trials = arrays.trials(tier)
        if len(trials):
            return trials
    return np.array([], dtype=int)


def tier_trials(arrays: RecordingArrays, tier: str) -> np.ndarray:
    """Trials of ``tier`` with responses; tier "test" falls back to the first held-out tier present."""
    trials = arrays.trials(tier)
    if len(trials) or tier != "test":
        return trials
    for candidate in TEST_TIERS:
        trials = arrays.trials(candidate)
        if len(trials):
            return trials
    return trials
