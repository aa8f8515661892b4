"""CURBD parity and scale: neurofit's ``rls.loop: curbd`` against a numpy port of the reference's
``trainMultiRegionRNN`` (``scripts/curbd_reference.py``) on data of the reference's own ``threeRegionSim``
(``neurofit simulate regions --preset curbd``); prints one JSON object.

Sections (``--sections``):

- ``parity`` (300 units, 1,201 samples): the port and neurofit (``configs/rnn_curbd.yaml`` as shipped, float32;
  the same in float64; and started from the ridge solution, ``rls.init: ridge``, whose curve is not meant to
  match) train run by run, alternating so all see the same machine load; after every training run a
  free run (no learning, the training noise, as the reference's free runs) gives the free-run pVar, outside
  the clock. Reported: free-run pVar after k = 1, 5, 10, 20 runs and its difference from the port's, seconds
  per training run, training seconds (with the ridge solve) until the free-run pVar first reaches 0.99, and
  the speed-ups.
- ``scale``: seconds per training run, the training runs' and the final free run's pVar, seconds of that
  free run (the dynamics without updates) and peak memory (resident set of a fresh process that loads the
  data and fits) at ``--units`` (the preset scaled up), with ``--scale-config`` (``configs/rnn_curbd.yaml``;
  ``configs/rnn_curbd_large.yaml`` is the setting for thousands of units) and the updates applied at once
  and held 32 at a time (``rls.defer_updates``); the fitted exponent of seconds per run against N, the
  projected time of 10 runs and the measured total of the ``--scale-runs`` at the largest size.

Usage: python scripts/benchmark_curbd.py [--sections parity scale] [--units 1000 2000 5000] [--threads 1]
       [--scale-runs 2] [--scale-config configs/rnn_curbd.yaml] [--device cpu|cuda]
       [--scale-variants immediate_updates deferred_updates_32] [--set model.dt_factor=1 ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from curbd_reference import ReferenceRNN
from threadpoolctl import threadpool_limits

from neurofit.data.simulate.regions_curbd import simulate_curbd
from neurofit.rnn.config import load_config
from neurofit.rnn.data import load_rnn_data
from neurofit.rnn.fit import resolve_device
from neurofit.rnn.model import build_model, fit_data
from neurofit.rnn.ridge import solve_ridge
from neurofit.rnn.rls import make_trainer

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CONFIG = CONFIGS / "rnn_curbd.yaml"
CHECKPOINTS = (1, 5, 10, 20)
TARGET = 0.99
#: neurofit variants of the parity section: name -> (config, overrides).
VARIANTS = {"neurofit": (CONFIG, {}), "neurofit_float64": (CONFIG, {"rls.dtype": "float64"}),
            "neurofit_ridge_start": (CONFIG, {"rls.init": "ridge"}),
            # the setting for thousands of units: one Euler step per sample, updates held 32 at a time
            "neurofit_large": (CONFIGS / "rnn_curbd_large.yaml", {})}
#: The variants that run the reference's algorithm from its own start, so their curves should match its.
EXACT = ("neurofit", "neurofit_float64")
#: Variants of the scale section: name -> overrides (after ``--set``).
SCALE_VARIANTS = {"immediate_updates": ["rls.defer_updates=1"], "deferred_updates_32": ["rls.defer_updates=32"]}


def write_preset(folder: Path, n_units: int) -> Path:
    """The curbd preset (seed 0) as an npz of (neuron, time) rates; returns its path."""
    sim = simulate_curbd(0, n_units=n_units)
    path = folder / f"curbd_{n_units}.npz"
    np.savez(path, rates=sim.rates[0].T, regions=sim.regions, dt=sim.dt)
    return path


def neurofit_trainer(path: Path, overrides: dict[str, Any] | list[str], config: Path = CONFIG,
                     device: str = "cpu") -> tuple[Any, float]:
    """The curbd loop of ``config`` (with ``overrides``) on the npz at ``path`` on ``device``, and the seconds
    its start took when that is part of training (the ridge solve of ``rls.init: ridge``)."""
    cfg = load_config(config, overrides)
    dtype = torch.float64 if cfg.rls.dtype == "float64" else torch.float32
    data = load_rnn_data(path, cfg.data.normalize)
    dev = resolve_device(device)
    model = build_model(data, cfg.model, cfg.constraints).to(device=dev, dtype=dtype)
    fd = fit_data(model, data, cfg.data.space, dev, dtype)
    trainer = make_trainer(model, fd, cfg.rls, draw_weights=cfg.rls.init == "random")
    start = time.perf_counter()
    if cfg.rls.init == "ridge":
        solve_ridge(model, fd, cfg.ridge)
    return trainer, time.perf_counter() - start if cfg.rls.init == "ridge" else 0.0


def parity(folder: Path, max_runs: int) -> dict[str, Any]:
    """Port and neurofit variants trained side by side; learning curves, parity and timings."""
    path = write_preset(folder, 300)
    with np.load(path) as npz:
        activity = npz["rates"]
    reference = ReferenceRNN(activity, 0.01)
    built = {name: neurofit_trainer(path, overrides, config) for name, (config, overrides) in VARIANTS.items()}
    variants = {name: trainer for name, (trainer, _) in built.items()}
    train = {"reference_port": lambda: reference.run(True)[0],
             **{k: (lambda t=t: t.run()[0]) for k, t in variants.items()}}
    free = {"reference_port": lambda: reference.run(False)[0],
            **{k: (lambda t=t: t.free_run(t.model.cfg.seed)[1]) for k, t in variants.items()}}
    curves: dict[str, list[dict[str, float]]] = {name: [] for name in train}
    elapsed = {"reference_port": 0.0, **{name: setup for name, (_, setup) in built.items()}}
    for run in range(max_runs):
        for name in train:
            start = time.perf_counter()
            train_pvar = train[name]()
            seconds = time.perf_counter() - start
            elapsed[name] += seconds
            curves[name].append({"run": run + 1, "seconds": seconds, "elapsed_s": elapsed[name],
                                 "train_pvar": float(train_pvar), "free_pvar": float(free[name]())})
    out: dict[str, Any] = {"n_units": activity.shape[0], "n_samples": activity.shape[1], "target_pvar": TARGET}
    ref = summarise(curves["reference_port"])
    out["reference_port"] = ref
    for name in variants:
        ours = summarise(curves[name])
        ours["free_pvar_minus_reference"] = {k: ours["free_pvar_at"][k] - ref["free_pvar_at"][k]
                                             for k in ours["free_pvar_at"]}
        if name in EXACT:
            gaps = ours["free_pvar_minus_reference"].values()
            ours["within_0.005_at_every_k"] = all(abs(d) <= 0.005 for d in gaps)
        ours["speedup_per_run"] = ref["seconds_per_run"] / ours["seconds_per_run"]
        ref_t, our_t = ref["to_target"]["seconds"], ours["to_target"]["seconds"]
        ours["speedup_to_target"] = None if ref_t is None or our_t is None else ref_t / our_t
        out[name] = ours
    return out


def summarise(curve: list[dict[str, float]]) -> dict[str, Any]:
    """Free-run pVar at the checkpoints, median seconds per run and the first run reaching the target."""
    hit = next((c for c in curve if c["free_pvar"] >= TARGET), None)
    return {"free_pvar_at": {str(k): curve[k - 1]["free_pvar"] for k in CHECKPOINTS if k <= len(curve)},
            "seconds_per_run": float(np.median([c["seconds"] for c in curve])),
            "to_target": {"runs": None if hit is None else hit["run"],
                          "seconds": None if hit is None else hit["elapsed_s"]},
            "curve": [{k: round(v, 5) for k, v in c.items()} for c in curve]}


def scale_one(path: Path, runs: int, overrides: list[str], config: Path, device: str) -> dict[str, Any]:
    """Seconds per training run, seconds of one free run (the dynamics alone, no updates) and peak resident
    memory of this process (meant to be a fresh one; on CUDA also the peak of allocated device memory). Each
    run ends in its pVar, a host read, so the clock sees the device's work."""
    trainer, _ = neurofit_trainer(path, overrides, config, device)
    times, pvars = [], []
    for _ in range(runs):
        start = time.perf_counter()
        pvars.append(trainer.run()[0])
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    free_pvar = trainer.free_run(trainer.model.cfg.seed)[1]
    return {"n_units": trainer.model.n_units, "config": str(config), "overrides": overrides, "runs": runs,
            "seconds_per_run": times, "seconds_all_runs": sum(times),
            "seconds_free_run": time.perf_counter() - start, "train_pvar": pvars, "free_pvar": float(free_pvar),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "device": device,
            "peak_device_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None}


def scale(folder: Path, units: list[int], runs: int, overrides: list[str], threads: int,
          variants: list[str], config: Path, device: str) -> dict[str, Any]:
    """``scale_one`` in a fresh process per size and entry of ``variants`` (of ``SCALE_VARIANTS``; the variants
    of one size back to back, so they share the machine's load); per variant the fitted exponent and the
    10-run projection."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for n in units:
        path = write_preset(folder, n)
        for name in variants:
            extra = SCALE_VARIANTS[name]
            cmd = [sys.executable, __file__, "--scale-one", str(path), "--scale-runs", str(runs),
                   "--scale-config", str(config), "--device", device, "--threads", str(threads),
                   *[f"--set={o}" for o in [*overrides, *extra]]]
            rows[name].append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    out: dict[str, Any] = {"config": str(config), "overrides": overrides}
    for name, variant in rows.items():
        per_run = np.array([np.median(r["seconds_per_run"]) for r in variant])
        sizes = np.array([r["n_units"] for r in variant])
        exponent = float(np.polyfit(np.log(sizes), np.log(per_run), 1)[0]) if len(sizes) > 1 else None
        medians = dict(zip(map(str, sizes.tolist()), per_run.tolist()))
        out[name] = {"rows": variant, "median_seconds_per_run": medians,
                     "exponent_seconds_vs_N": exponent,
                     "projected_10_runs_s_at_largest": float(10 * per_run[-1]),
                     "seconds_all_runs_at_largest": variant[-1]["seconds_all_runs"],
                     "free_pvar_at_largest": variant[-1]["free_pvar"],
                     "peak_rss_mb_at_largest": variant[-1]["peak_rss_mb"]}
    return out


def main() -> None:
    """Parse arguments, run the sections, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=["parity", "scale"], choices=["parity", "scale"])
    parser.add_argument("--runs", type=int, default=20, help="training runs in the parity section")
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 2000, 5000], help="sizes for 'scale'")
    parser.add_argument("--scale-runs", type=int, default=2, help="training runs timed per size")
    parser.add_argument("--scale-variants", nargs="+", default=list(SCALE_VARIANTS), choices=list(SCALE_VARIANTS),
                        help="update schemes timed in 'scale'")
    parser.add_argument("--scale-config", type=Path, default=CONFIG, help="'scale': the config timed")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="'scale': where neurofit runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="'scale': override of --scale-config (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch and numpy's BLAS)")
    parser.add_argument("--scale-one", type=Path, help=argparse.SUPPRESS)  # the per-size child process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        if args.scale_one is not None:
            print(json.dumps(scale_one(args.scale_one, args.scale_runs, args.overrides, args.scale_config,
                                       args.device)))
            return
        result: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__, "numpy": np.__version__}
        with tempfile.TemporaryDirectory() as tmp:
            if "parity" in args.sections:
                result["parity"] = parity(Path(tmp), args.runs)
            if "scale" in args.sections:
                result["scale"] = scale(Path(tmp), args.units, args.scale_runs, args.overrides, args.threads,
                                        args.scale_variants, args.scale_config, args.device)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
