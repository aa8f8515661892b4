"""Benchmark: training-step time and peak memory of the attention readout against the plain readout.

For each neuron count N and variant (``plain``: conv core + Gaussian readout; ``global``: + neuron
self-attention over all N; ``windowed``: + attention within Hilbert-curve windows) a fresh subprocess builds a
SENSORIUM-sized model (conv core, 4 layers x 64 channels, 36 x 64 images, batch 64) and times
forward + backward of the whole model (``step_s``) and of the readout stage alone on fixed core features
(``readout_stage_s``, run first so that its peak resident memory, ``ru_maxrss``, is the readout's alone;
tracemalloc does not see torch's allocations). Prints one JSON object to stdout.

    python scripts/benchmark_attention.py [--sizes 1000 2000 4000 8000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

VARIANTS = ("plain", "global", "windowed")


def _worker(args: argparse.Namespace) -> dict:
    """One (variant, N) measurement in this process."""
    from neurofit.models.cores.conv import ConvCore
    from neurofit.models.interactions import build_interaction
    from neurofit.models.readouts.gaussian import GaussianReadout

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, c = args.neurons, args.channels
    positions = torch.rand(n, 3) * torch.tensor([1000.0, 1000.0, 300.0])
    core = ConvCore(channels=c, layers=4, input_kernel=9, hidden_kernel=7, depthwise=True)
    readout = GaussianReadout(n, c, positions)
    interaction = None
    if args.variant != "plain":
        window = args.window if args.variant == "windowed" else None
        interaction = build_interaction("attention", n_neurons=n, embedding_dim=c, feature_dim=c,
                                        positions_um=positions, heads=args.heads, head_dim=args.head_dim,
                                        window=window)
        with torch.no_grad():  # a trained gate: the backward pass must reach every attention parameter
            interaction.gate.fill_(0.1)
    images = torch.randn(args.batch, 1, *args.image)
    responses = torch.rand(args.batch, n)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def readout_stage(features: torch.Tensor) -> torch.Tensor:
        out = readout(features)
        drive = out.drive if interaction is None else interaction(out.drive, out.features, readout.embedding)
        rate = torch.nn.functional.elu(drive) + 1
        return (rate - responses * torch.log(rate)).mean()  # Poisson loss up to a constant

    def timed(fn) -> float:
        start = time.perf_counter()
        fn().backward()
        return time.perf_counter() - start

    # The readout stage first, on fixed features, so its peak memory is measured before the core's
    # activations (and the allocator's reuse of them) blur it.
    fixed = torch.randn(args.batch, c, *args.image)
    stage = [timed(lambda: readout_stage(fixed)) for _ in range(1 + args.repeats)][1:]
    stage_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = [timed(lambda: readout_stage(core(images))) for _ in range(1 + args.repeats)][1:]
    return {"variant": args.variant, "n_neurons": n, "step_s": statistics.median(steps),
            "readout_stage_s": statistics.median(stage), "readout_stage_peak_rss_mb": stage_rss,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_build_mb": base_rss}


def _loglog_slope(ns: list[int], values: list[float]) -> float:
    """Exponent k of values ~ N^k from a least-squares fit in log-log (1: linear, 2: quadratic)."""
    return float(np.polyfit(np.log(ns), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=64, help="core channels C = embedding dim D")
    parser.add_argument("--image", type=int, nargs=2, default=[36, 64])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--window", type=int, default=128, help="block size of the windowed variant")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=VARIANTS, dest="variant", help=argparse.SUPPRESS)
    parser.add_argument("--neurons", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(_worker(args)))
        return
    passthrough = ["--batch", args.batch, "--channels", args.channels, "--image", *args.image,
                   "--heads", args.heads, "--head-dim", args.head_dim, "--window", args.window,
                   "--repeats", args.repeats, "--threads", args.threads]
    load_before = os.getloadavg()
    results = []
    for n in args.sizes:
        for variant in args.variants:
            cmd = [sys.executable, __file__, "--worker", variant, "--neurons", str(n), *map(str, passthrough)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # partial results survive a stop
    by = {(r["variant"], r["n_neurons"]): r for r in results}
    summary = {}
    for variant in args.variants:
        rows = [by[(variant, n)] for n in args.sizes]
        stage_s = [r["readout_stage_s"] for r in rows]
        summary[variant] = {"readout_stage_time_exponent": _loglog_slope(args.sizes, stage_s)
                            if len(args.sizes) > 1 else None}
        if "plain" in args.variants and variant != "plain":
            extra = [by[(variant, n)]["readout_stage_peak_rss_mb"] - by[("plain", n)]["readout_stage_peak_rss_mb"]
                     for n in args.sizes]
            summary[variant].update({
                "step_ratio_vs_plain": {n: by[(variant, n)]["step_s"] / by[("plain", n)]["step_s"]
                                        for n in args.sizes},
                "stage_ratio_vs_plain": {n: by[(variant, n)]["readout_stage_s"]
                                         / by[("plain", n)]["readout_stage_s"] for n in args.sizes},
                "extra_readout_stage_rss_vs_plain_mb": dict(zip(args.sizes, extra)),
                "extra_memory_exponent": _loglog_slope(args.sizes, [max(e, 1.0) for e in extra])
                if len(args.sizes) > 1 else None,
            })
    largest = max(args.sizes)
    target = {v: {"n_neurons": largest, "step_ratio": summary[v]["step_ratio_vs_plain"][largest],
                  "within_2x": summary[v]["step_ratio_vs_plain"][largest] <= 2.0}
              for v in summary if "step_ratio_vs_plain" in summary[v]}
    print(json.dumps({
        "config": {k: v for k, v in vars(args).items() if k not in ("variant", "neurons")},
        "machine": {"torch": torch.__version__, "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "results": results, "summary": summary, "target_2x_at_largest_n": target,
        "notes": "step = forward + backward of core + readout (+ attention); the 2x target compares steps. "
                 "extra_memory_exponent fits the readout stage's peak RSS above the plain readout's at the "
                 "same N against N (1 = linear, 2 = quadratic); readout_stage_time_exponent fits the "
                 "readout-stage time.",
    }, indent=2))


if __name__ == "__main__":
    main()
