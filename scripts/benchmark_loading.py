"""Data loading: SENSORIUM 2022 conversion speed, and training-batch throughput streamed from zarr vs held
in memory, at the default batch size.

Prints one JSON object. Two throughputs per mode: ``load_batches_per_s`` (the loader alone) and
``train_batches_per_s`` (loader + a training step of the default model, what a fit sees); the target is
zarr within 10% of memory for the latter.

    python scripts/benchmark_loading.py [--trials 2000 --neurons 8000 --workers 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurofit.config import load_config  # noqa: E402
from neurofit.data.datamodule import NeuralDataModule  # noqa: E402
from neurofit.data.sources.sensorium import convert_sensorium  # noqa: E402
from neurofit.models.encoder import Encoder  # noqa: E402
from neurofit.training.losses import poisson_loss  # noqa: E402
from tests.fixtures_sensorium import make_static_tree  # noqa: E402


def throughput(store: Path, in_memory: bool, batch_size: int, workers: int, max_batches: int,
               train: bool) -> float:
    """Batches per second over up to ``max_batches`` training batches (after one warm-up batch)."""
    dm = NeuralDataModule(store, batch_size=batch_size, in_memory=in_memory, num_workers=workers)
    specs = dm.prepare_specs()
    model = Encoder(load_config(ROOT / "configs/default.yaml")["model"], specs) if train else None
    opt = torch.optim.AdamW(model.parameters()) if train else None
    loader = iter(dm.train_dataloader())
    count, start = -1, 0.0
    for batch in loader:
        if train:
            rate = model(batch["recording"], batch["stimulus"].float(), batch["behavior"], batch["pupil_center"])
            target = batch["responses"] / model.response_std(batch["recording"])
            poisson_loss(rate, target, batch.get("response_mask")).backward()
            opt.step()
            opt.zero_grad()
        count += 1
        if count == 0:
            start = time.perf_counter()
        if count == max_batches:
            break
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--neurons", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=32, help="configs/base.yaml's data.batch_size")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batches", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tree = make_static_tree(tmp, n_neurons=args.neurons, height=36, width=64, n_trials=args.trials,
                                image_dtype="float32", withheld="real")
        summary = convert_sensorium([tree], tmp / "data.zarr")[0]
        store = tmp / "data.zarr"
        result = {"trials": summary.n_trials, "neurons": summary.n_neurons, "batch_size": args.batch_size,
                  "workers": args.workers, "threads": torch.get_num_threads(),
                  "conversion_mb": round(summary.source_bytes / 2**20, 1),
                  "conversion_mb_per_s": round(summary.mb_per_s, 1)}
        for mode, in_memory in (("memory", True), ("zarr", False)):
            for kind, train in (("load", False), ("train", True)):
                rate = throughput(store, in_memory, args.batch_size, args.workers, args.batches, train)
                result[f"{mode}_{kind}_batches_per_s"] = round(rate, 2)
        result["zarr_vs_memory_train"] = round(result["zarr_train_batches_per_s"]
                                               / result["memory_train_batches_per_s"], 3)
        result["zarr_vs_memory_load"] = round(result["zarr_load_batches_per_s"]
                                              / result["memory_load_batches_per_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
