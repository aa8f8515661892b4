"""Benchmark of the video cores (gru, gru_wide, ctrnn, conv3d, conv3d_wide as in configs/video_*.yaml). Prints
one JSON object.

``throughput``: training frames/s at SENSORIUM 2023 scale (8,000 neurons, 300-frame trials, 36 x 64, behaviour
and pupil per frame) with truncated BPTT as in ``EncoderModule`` (the config's ``tbptt_frames`` chunks, one
optimiser step per chunk that holds scored frames, the first 50 frames unscored). Each core runs in a fresh
subprocess so its peak memory is its own: ``peak_mem_mb`` is the peak resident set on CPU,
``torch.cuda.max_memory_allocated`` on GPU. ``--device cuda`` uses bf16 autocast.

``quality``: fits every config on a video store with ground truth (``neurofit simulate v1 --video``), evaluates
on the test tier and reports the fraction of ceiling and held-out correlations, with the issue's targets
(the best recurrent core >= 0.8 of ceiling; each ConvGRU better than the 3D-conv core of its size: ``gru`` vs
``conv3d``, and ``gru_wide``, the ConvGRU with twice the channels and the front end fed to the readout, vs
``conv3d_wide``).

    python scripts/benchmark_video.py throughput [--device cuda] [--batch 1] [--steps 2]
    python scripts/benchmark_video.py quality --data VIDEO.zarr --out RUNS [--epochs N] [--set KEY=VALUE ...]

``quality`` reuses a core's run that already finished in RUNS, so ``--cores gru`` and ``--cores conv3d`` can
run side by side (one thread each) and a final call with all cores only evaluates and reports.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CORES = ("gru", "gru_wide", "ctrnn", "conv3d", "conv3d_wide")
RECURRENT = ("gru", "gru_wide", "ctrnn")
#: (recurrent, feed-forward) cores with about as many core parameters.
SAME_SIZE = (("gru", "conv3d"), ("gru_wide", "conv3d_wide"))
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _spec(neurons: int, height: int, width: int):
    """A SENSORIUM 2023-like recording spec: random cortical positions, unit statistics."""
    from neurofit.data.spec import RecordingSpec

    rng = np.random.default_rng(0)
    stats = {"stimulus_mean": 128.0, "stimulus_std": 45.0, "response_std": [1.0] * neurons,
             "behavior_mean": [0.0] * 3, "behavior_std": [1.0] * 3,
             "pupil_mean": [0.0] * 2, "pupil_std": [1.0] * 2}
    return RecordingSpec(name="bench", n_neurons=neurons, unit_id=list(range(neurons)),
                         coords_um=rng.uniform(0, 600, (neurons, 3)).tolist(), image_shape=(height, width),
                         video=True, behavior_channels=["pupil", "dpupil", "speed"], has_pupil=True,
                         frame_rate_hz=30.0, stats=stats)


def _throughput_worker(args: argparse.Namespace) -> dict:
    """Time truncated-BPTT training steps of one core in this process."""
    from neurofit.config import load_config
    from neurofit.models.encoder import Encoder
    from neurofit.training.losses import poisson_loss
    from neurofit.training.module import batch_mask, time_slice

    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = load_config(CONFIG_DIR / f"video_{args.core}.yaml")
    tcfg = cfg.training
    chunk, skip = tcfg.tbptt_frames, tcfg.skip_frames
    encoder = Encoder(cfg.model, [_spec(args.neurons, 36, 64)]).to(device).train()
    opt = torch.optim.AdamW(encoder.parameters(), lr=tcfg.lr)
    b, t = args.batch, args.frames
    batch = {"recording": "bench", "stimulus": torch.rand(b, t, 36, 64, device=device) * 255,
             "behavior": torch.randn(b, t, 3, device=device), "pupil_center": torch.randn(b, t, 2, device=device),
             "responses": torch.rand(b, t, args.neurons, device=device)}
    mask = batch_mask(batch, skip)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def train_step() -> None:
        # The chunked update of EncoderModule._tbptt_step, without Lightning around it.
        with encoder.core.carry_state():
            for start in range(0, t, chunk):
                frames = slice(start, start + chunk)
                part = time_slice(batch, frames)
                if start + chunk <= skip:  # burn-in only: advance the state without gradients
                    with torch.no_grad(), autocast:
                        encoder("bench", part["stimulus"], part["behavior"], part["pupil_center"])
                    continue
                with autocast:
                    rate = encoder("bench", part["stimulus"], part["behavior"], part["pupil_center"])
                    loss = poisson_loss(rate.float(), part["responses"], mask[:, frames])
                    loss = loss + encoder.regularizer(tcfg.regularization)
                opt.zero_grad()
                loss.backward()
                opt.step()
                encoder.core.detach_state()

    train_step()  # warm-up: allocator, kernels
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elapsed = time.perf_counter() - start
    return {"core": args.core, "tbptt_frames": chunk, "skip_frames": skip,
            "frames_per_s": b * t * args.steps / elapsed, "step_s": elapsed / args.steps, "peak_mem_mb": peak_mb,
            "core_parameters": sum(p.numel() for p in encoder.core.parameters()),
            "parameters": sum(p.numel() for p in encoder.parameters())}


def throughput(args: argparse.Namespace) -> dict:
    """Run ``_throughput_worker`` for every core in a subprocess."""
    results = []
    for core in args.cores:
        cmd = [sys.executable, __file__, "_worker", "--core", core, "--device", args.device, "--batch",
               str(args.batch), "--frames", str(args.frames), "--neurons", str(args.neurons), "--steps",
               str(args.steps), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cuda = args.device == "cuda"
    return {"benchmark": "video_throughput", "device": args.device,
            "precision": "bf16-autocast" if cuda else "fp32",
            "gpu": torch.cuda.get_device_name() if cuda else None, "host": platform.node(),
            "threads": args.threads, "batch": args.batch, "frames": args.frames, "neurons": args.neurons,
            "image": [36, 64], "steps": args.steps, "results": results}


def quality(args: argparse.Namespace) -> dict:
    """Fit and evaluate every core's config on ``args.data``."""
    from neurofit.evaluation import evaluate
    from neurofit.training.fit import fit

    out_root = Path(args.out or tempfile.mkdtemp(prefix="benchmark_video_"))
    results = {}
    for core in args.cores:
        run = out_root / core
        # A finished run is reused, so cores can be fitted by parallel invocations and reported by a last one.
        if not (run / "train_info.json").exists():
            fit(args.data, CONFIG_DIR / f"video_{core}.yaml", run, seed=args.seed, max_epochs=args.epochs,
                overrides=list(args.set or []), progress=False)
        info = json.loads((run / "train_info.json").read_text())
        metrics = evaluate(run, figures=False)["mean"]
        scores = ("fraction_of_ceiling", "single_trial_correlation", "correlation_to_average", "feve")
        results[core] = {**{k: metrics[k] for k in scores}, "epochs": info["epochs"],
                         "n_parameters": info["n_parameters"], "fit_wall_s": info["wall_s"]}
    best = max((c for c in RECURRENT if c in results), key=lambda c: results[c]["fraction_of_ceiling"],
               default=None)
    targets = {}
    if best is not None:
        targets.update(best_recurrent=best,
                       recurrent_at_least_0_8_of_ceiling=results[best]["fraction_of_ceiling"] >= 0.8)
    for gru, conv in SAME_SIZE:  # at the epochs each run trained
        if gru in results and conv in results:
            targets[f"{gru}_vs_{conv}"] = _paired(out_root, results, gru, conv)
    return {"benchmark": "video_quality", "data": str(args.data), "epochs": args.epochs, "overrides": args.set,
            "threads": args.threads, "seed": args.seed, "runs": str(out_root),
            "results": results, "targets": targets}


def _paired(out_root: Path, results: dict, gru: str, conv: str) -> dict:
    """Recurrent vs feed-forward core of the same size: who wins on mean single-trial r, the median per-neuron
    difference and a Wilcoxon signed-rank test over neurons."""
    from neurofit.analysis.compare import read_neurons, wilcoxon_p

    a, b = (read_neurons(out_root / c)["single_trial_correlation"].values for c in (gru, conv))
    p_value, _ = wilcoxon_p(b, a)
    return {"recurrent_beats_conv3d": results[gru]["single_trial_correlation"]
            > results[conv]["single_trial_correlation"],
            "median_neuron_r_difference": float(np.nanmedian(a - b)), "neuron_wilcoxon_p": p_value,
            "epochs": [results[gru]["epochs"], results[conv]["epochs"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("throughput", "_worker"):
        p = sub.add_parser(name)
        p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
        p.add_argument("--batch", type=int, default=1, help="trials per step (SENSORIUM trains with 8+ on GPU)")
        p.add_argument("--frames", type=int, default=300)
        p.add_argument("--neurons", type=int, default=8000)
        p.add_argument("--steps", type=int, default=2, help="timed training steps (after one warm-up step)")
        p.add_argument("--threads", type=int, default=torch.get_num_threads())
        if name == "throughput":
            p.add_argument("--cores", nargs="+", default=list(CORES), choices=CORES)
        else:
            p.add_argument("--core", required=True, choices=CORES)
    q = sub.add_parser("quality")
    q.add_argument("--data", required=True, help="video store with truth, e.g. from neurofit simulate v1 --video")
    q.add_argument("--out", help="directory for the runs (default: a temporary directory)")
    q.add_argument("--epochs", type=int, help="override every config's training.max_epochs")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--cores", nargs="+", default=list(CORES), choices=CORES)
    q.add_argument("--set", action="append", help="config override for every run, e.g. data.batch_size=4")
    q.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    # On a shared, loaded CPU one intra-op thread can beat two (fewer synchronisation stalls).
    torch.set_num_threads(args.threads)
    if args.mode == "_worker":
        print(json.dumps(_throughput_worker(args)))
        return
    print(json.dumps(throughput(args) if args.mode == "throughput" else quality(args), indent=2, default=float))


if __name__ == "__main__":
    main()
