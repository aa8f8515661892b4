"""Data loading: SENSORIUM 2022 conversion speed, and training-batch throughput streamed from zarr vs held
in memory, at the default batch size.

Prints one JSON object. Two throughputs per mode: ``load_batches_per_s`` (the loader alone) and
``train_batches_per_s`` (loader + a training step of the default model, what a fit sees); the target is
zarr within 10% of memory for the latter.

``--video``: frames/s served by the training loader (``NeuralDataModule.train_dataloader``, batches of
configs/video_base.yaml's size) from a store at SENSORIUM 2023 scale (8,000 neurons, 300-frame trials, 36 x 64
video, behaviour and pupil per frame, float32), held in memory and streamed from zarr; the target is >= 10,000
frames/s streamed. The store is written in trial blocks with ``StoreWriter.append`` and was just written, so
it is read from the page cache: this measures decoding and batch assembly, not the disk.

    python scripts/benchmark_loading.py [--trials 2000 --neurons 8000 --workers 1]
    python scripts/benchmark_loading.py --video [--trials 240 --batches 25 --workers 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurofit.config import load_config  # noqa: E402
from neurofit.data import make_recording  # noqa: E402
from neurofit.data.datamodule import NeuralDataModule  # noqa: E402
from neurofit.data.sources.sensorium import convert_sensorium  # noqa: E402
from neurofit.data.store import StoreWriter  # noqa: E402
from neurofit.models.encoder import Encoder  # noqa: E402
from neurofit.training.losses import poisson_loss  # noqa: E402
from tests.fixtures_sensorium import make_static_tree  # noqa: E402


def throughput(store: Path, in_memory: bool, batch_size: int, workers: int, max_batches: int,
               train: bool) -> float:
    """Batches per second over up to ``max_batches`` training batches (after one warm-up batch)."""
    dm = NeuralDataModule(store, batch_size=batch_size, in_memory=in_memory, num_workers=workers)
    specs = dm.prepare_specs()
    model = Encoder(load_config(ROOT / "configs/default.yaml").model, specs) if train else None
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


def write_video_store(path: Path, trials: int, neurons: int, frames: int, height: int, width: int,
                      block: int = 16) -> None:
    """A SENSORIUM 2023-like store, ``block`` trials at a time: 8-bit grey videos as float32, gamma responses
    (random mantissas, close to incompressible: the slow case for decoding), every 10th trial ``oracle``."""
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 600, (neurons, 3))
    tiers = np.where(np.arange(trials) % 10 == 9, "oracle", "train")
    with StoreWriter(path) as writer:
        for start in range(0, trials, block):
            n = min(block, trials - start)
            ds = make_recording(
                rng.integers(0, 256, (n, frames, height, width), dtype=np.uint8).astype(np.float32),
                rng.standard_gamma(1.0, (n, frames, neurons), dtype=np.float32),
                name="video", source="benchmark", unit_id=np.arange(neurons), x_um=coords[:, 0],
                y_um=coords[:, 1], z_um=coords[:, 2], tier=tiers[start:start + n],
                stimulus_id=np.arange(start, start + n),
                behavior=rng.standard_normal((n, frames, 3), dtype=np.float32),
                pupil_center=rng.standard_normal((n, frames, 2), dtype=np.float32),
                response_mask=np.ones((n, frames), dtype=bool), frame_rate_hz=30.0)
            writer.append("video", ds)


def video(args: argparse.Namespace) -> dict:
    """Frames/s of the training loader at SENSORIUM 2023 scale, in memory and streamed."""
    frames = 300
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "video.zarr"
        write_video_store(store, args.trials, args.neurons, frames, 36, 64)
        result = {"trials": args.trials, "neurons": args.neurons, "frames": frames, "video": [36, 64],
                  "batch_size": args.batch_size, "workers": args.workers, "batches": args.batches,
                  "threads": torch.get_num_threads(),
                  "store_mb": round(sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20)}
        for mode, in_memory in (("memory", True), ("zarr", False)):
            rate = throughput(store, in_memory, args.batch_size, args.workers, args.batches, train=False)
            result[f"{mode}_frames_per_s"] = round(rate * args.batch_size * frames)
    result["zarr_vs_memory"] = round(result["zarr_frames_per_s"] / result["memory_frames_per_s"], 3)
    result["zarr_target_frames_per_s"] = 10_000
    return result


#: Defaults per mode: the static benchmark's, and for --video the data settings of configs/video_base.yaml
#: and a store whose training epoch holds the warm-up batch and ``batches`` full ones.
DEFAULTS = {"static": {"trials": 2000, "batch_size": 32, "workers": 1, "batches": 15},
            "video": {"trials": 240, "batch_size": 8, "workers": 0, "batches": 25}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", action="store_true", help="SENSORIUM 2023 scale video store: frames/s")
    parser.add_argument("--trials", type=int, help="default 2000 (--video: 240)")
    parser.add_argument("--neurons", type=int, default=8000)
    parser.add_argument("--batch-size", type=int,
                        help="default configs/base.yaml's data.batch_size (--video: configs/video_base.yaml's)")
    parser.add_argument("--workers", type=int, help="default 1 (--video: 0, as the configs)")
    parser.add_argument("--batches", type=int, help="timed batches, default 15 (--video: 25)")
    args = parser.parse_args()
    for key, value in DEFAULTS["video" if args.video else "static"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.video:
        print(json.dumps(video(args)))
        return
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
