"""Benchmark the data-constrained RNN (CURBD) fits on the multi-region simulator; prints one JSON object.

Sections (``--sections``):

- ``speed``: a straightforward per-sample numpy RLS loop written after CURBD's ``trainMultiRegionRNN``
  (float64, one unit per neuron, ``dt_factor`` Euler steps per sample, the same hyperparameters) against
  neurofit's torch ``rls`` on the simulator's three-region data (300 units, 1,200 samples). Time to pVar 0.99
  is reported under two definitions: ``curbd`` (the pVar of the training run's own trajectory, as CURBD
  prints it) and ``free`` (a separate free run without learning over the whole trial, evaluated outside the
  clock with the same evaluator for both implementations). Variants: CURBD's random start, and a ridge start.
- ``recovery``: correlation and magnitude ratio (||fitted|| / ||true||) of the recovered inter-region
  currents against the simulator's true currents, per connected (source -> target) pair, with and without
  the known inputs supplied, for rls and ridge; the magnitude of currents fitted for absent projections too.
- ``scaling``: seconds per RLS run and per data sample against the number of units (``--units``) on
  ``--device``.

Usage: python scripts/benchmark_rnn.py [--device cpu|cuda] [--units 300 1000 5000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from neurofit.data.simulate.regions import RegionsSimulation, simulate_regions
from neurofit.rnn.config import load_config
from neurofit.rnn.currents import decompose
from neurofit.rnn.data import RNNData, load_rnn_data
from neurofit.rnn.fit import fit
from neurofit.rnn.model import build_model, fit_data, free_run
from neurofit.rnn.ridge import solve_ridge
from neurofit.rnn.rls import RLSTrainer

#: Hyperparameters shared by the reference loop and neurofit in the speed section (CURBD's example values).
SPEED_MODEL = {"model.dt_factor": 5, "model.g": 1.5, "model.tau": 0.1, "model.noise_amp": 0.01,
               "model.noise_tau": 0.1, "model.target": "currents", "model.use_inputs": False, "rls.P0": 1.0}


def reference_rls(target: np.ndarray, dt_data: float, *, dt_factor: int, g: float, tau: float, noise_amp: float,
                  noise_tau: float, p0: float, seed: int):
    """CURBD's per-sample RLS loop in numpy (float64), one training run per iteration of the generator.

    Args:
        target: (N, T) data currents (arctanh of the normalised rates).
    Yields:
        (seconds of that run, J after it, pVar of the run's own trajectory as CURBD computes it).
    """
    rng = np.random.default_rng(seed)
    n, n_data = target.shape
    dt = dt_data / dt_factor
    n_model = (n_data - 1) * dt_factor + 1
    white = math.sqrt(noise_tau / dt) * rng.standard_normal((n, n_model))
    noise = np.ones((n, n_model))
    for t in range(1, n_model):
        noise[:, t] = white[:, t] + (noise[:, t - 1] - white[:, t]) * math.exp(-dt / noise_tau)
    noise *= noise_amp
    J = g * rng.standard_normal((n, n)) / math.sqrt(n)
    P = p0 * np.eye(n)
    data_rates = np.tanh(target)
    sample_at = np.arange(n_data) * dt_factor
    rates = np.zeros((n, n_model))
    while True:
        start = time.perf_counter()
        H = target[:, 0:1].copy()
        rates[:, 0:1] = np.tanh(H)
        learn_t, i_learn = 0.0, 0
        for tt in range(1, n_model):
            learn_t += dt
            rates[:, tt:tt + 1] = np.tanh(H)
            JR = J.dot(rates[:, tt]).reshape(n, 1) + noise[:, tt:tt + 1]
            H = H + dt * (-H + JR) / tau
            if learn_t >= dt_data:
                learn_t = 0.0
                err = JR - target[:, i_learn:i_learn + 1]
                i_learn += 1
                r = rates[:, tt].reshape(n, 1)
                k = P.dot(r)
                c = 1.0 / (1.0 + r.T.dot(k)[0, 0])
                P = P - c * k.dot(k.T)
                J = J - c * np.outer(err.flatten(), k.flatten())
        seconds = time.perf_counter() - start
        model_rates = rates[:, sample_at]
        curbd_pvar = 1 - (np.linalg.norm(data_rates - model_rates) / (math.sqrt(data_rates.size)
                                                                      * np.std(data_rates))) ** 2
        yield seconds, J.copy(), float(curbd_pvar)


def _sim_data(sim: RegionsSimulation, folder: Path, normalize: str = "max") -> RNNData:
    path = folder / "sim.npz"
    np.savez(path, rates=sim.rates.transpose(0, 2, 1), regions=sim.regions, dt=sim.dt, inputs=sim.inputs,
             input_channels=np.asarray(sim.input_channels))
    return load_rnn_data(path, normalize)


def _summary(curve: list[dict[str, float]], target: float) -> dict[str, Any]:
    def first(key: str) -> dict[str, Any]:
        hit = next((c for c in curve if c[key] >= target), None)
        if hit is None:
            return {"seconds": None, "runs": None}
        return {"seconds": hit["seconds"], "runs": hit["run"] + 1}

    times = [b["seconds"] - a["seconds"] for a, b in zip([{"seconds": 0.0}] + curve[:-1], curve)]
    return {"seconds_per_run": float(np.median(times)), "to_target_curbd": first("curbd_pvar"),
            "to_target_free": first("free_pvar"), "final_free_pvar": curve[-1]["free_pvar"],
            "curve": [{k: round(v, 5) for k, v in c.items()} for c in curve]}


def speed(data: RNNData, device: str, max_runs: int, target: float) -> dict[str, Any]:
    """Reference numpy loop vs neurofit rls (random and ridge starts), same data and hyperparameters."""
    cfg = load_config(None, SPEED_MODEL)
    evaluator = build_model(data, cfg.model, cfg.constraints).to(device)
    fd = fit_data(evaluator, data, "rates", device)
    out: dict[str, Any] = {"n_units": data.n_units, "n_samples": data.n_samples, "target_pvar": target,
                           "hyperparameters": SPEED_MODEL}

    curve, elapsed = [], 0.0
    reference = reference_rls(fd.h[0].double().cpu().numpy(), data.dt, dt_factor=5, g=1.5, tau=0.1,
                              noise_amp=0.01, noise_tau=0.1, p0=1.0, seed=0)
    for run in range(max_runs):
        seconds, J, curbd_pvar = next(reference)
        elapsed += seconds
        evaluator.weight.data[:, : data.n_units] = torch.as_tensor(J, dtype=torch.float32, device=device)
        curve.append({"run": run, "seconds": elapsed, "curbd_pvar": curbd_pvar,
                      "free_pvar": free_run(evaluator, fd, cfg.model.seed)[1]})
        if curve[-1]["free_pvar"] >= target and curbd_pvar >= target:
            break
    out["reference_numpy"] = _summary(curve, target)

    for name, init, segments in (("neurofit_rls", "random", 1), ("neurofit_rls_ridge_start", "ridge", 1),
                                 ("neurofit_rls_ridge_start_8_segments", "ridge", 8)):
        model = build_model(data, cfg.model, cfg.constraints).to(device)
        _sync(device)
        start = time.perf_counter()
        if init == "ridge":
            solve_ridge(model, fd, cfg.ridge)
        trainer = RLSTrainer(model, fd, cfg.rls.P0, segments)
        _sync(device)
        elapsed = time.perf_counter() - start
        curve = []
        for run in range(max_runs):
            start = time.perf_counter()
            curbd_pvar, _ = trainer.run()
            _sync(device)
            elapsed += time.perf_counter() - start
            curve.append({"run": run, "seconds": elapsed, "curbd_pvar": curbd_pvar,
                          "free_pvar": free_run(model, fd, cfg.model.seed)[1]})
            if curve[-1]["free_pvar"] >= target and curbd_pvar >= target:
                break
        out[name] = _summary(curve, target)
        ref = out["reference_numpy"]
        out[name]["speedup_per_run"] = ref["seconds_per_run"] / out[name]["seconds_per_run"]
        for key in ("to_target_curbd", "to_target_free"):
            ours, theirs = out[name][key]["seconds"], ref[key]["seconds"]
            out[name][key]["speedup"] = None if ours is None or theirs is None else theirs / ours
    return out


def _pair_stats(fitted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Pearson r over units x time and the ratio of Frobenius norms."""
    f, t = fitted.ravel(), true.ravel()
    t_norm = float(np.linalg.norm(t))
    corr = float(np.corrcoef(f, t)[0, 1]) if np.std(f) > 0 and np.std(t) > 0 else float("nan")
    return {"correlation": corr, "magnitude_ratio": float(np.linalg.norm(f)) / t_norm if t_norm else float("nan")}


def recovery(sim: RegionsSimulation, folder: Path, device: str, rls_runs: int) -> dict[str, Any]:
    """Recovered vs true inter-region currents with and without the known inputs, for rls and ridge."""
    data = _sim_data(sim, folder, "max")
    names = list(dict.fromkeys(sim.regions.tolist()))
    connected = {(s, t) for s, t in sim.projections}
    true_norms = [np.linalg.norm(sim.currents[..., sim.regions == t, names.index(s)]) for s, t in connected]
    out: dict[str, Any] = {"projections": sorted(f"{s}->{t}" for s, t in connected)}
    settings = {
        "rls_curbd": {"method": "rls", "rls.runs": rls_runs, "rls.free_runs": 1},
        "rls_drive_ridge_start": {"method": "rls", "rls.runs": rls_runs, "rls.free_runs": 1,
                                  "model.target": "drive", "rls.init": "ridge"},
        "ridge_drive": {"method": "ridge", "model.target": "drive"},
    }
    for label, overrides in settings.items():
        for use_inputs in (True, False):
            cfg = load_config(None, {**overrides, "model.use_inputs": use_inputs})
            result = fit(data, cfg, device)
            rates, final_pvar, _ = free_run(result.model, result.data, cfg.model.seed)
            unit = decompose(result.model, rates, result.data.exog)["unit_current"].sum("sign")
            pairs, absent = {}, {}
            for s in names:
                for t in names:
                    if s == t:
                        continue
                    fitted = unit.sel(source=s).values[sim.regions == t].transpose(1, 2, 0)  # (trial, time, unit)
                    if (s, t) in connected:
                        true = sim.currents[..., sim.regions == t, names.index(s)]
                        pairs[f"{s}->{t}"] = _pair_stats(fitted, true)
                    else:
                        absent[f"{s}->{t}"] = float(np.linalg.norm(fitted) / np.mean(true_norms))
            out[f"{label}/{'with' if use_inputs else 'without'}_inputs"] = {
                "pVar": final_pvar, "wall_s": result.wall_s, "pairs": pairs,
                "mean_correlation": float(np.mean([p["correlation"] for p in pairs.values()])),
                "mean_magnitude_ratio": float(np.mean([p["magnitude_ratio"] for p in pairs.values()])),
                "absent_pairs_magnitude_vs_true_pairs": absent,
            }
    return out


def scaling(units: list[int], n_samples: int, device: str, runs: int, folder: Path) -> list[dict[str, Any]]:
    """Seconds per RLS run (CURBD settings) against network size."""
    rows = []
    for n in units:
        sim = simulate_regions(0, n_units=n, n_samples=n_samples, burn_in=50)
        data = _sim_data(sim, folder)
        cfg = load_config(None, SPEED_MODEL)
        model = build_model(data, cfg.model, cfg.constraints).to(device)
        fd = fit_data(model, data, "rates", device)
        trainer = RLSTrainer(model, fd, cfg.rls.P0)
        times, pvars = [], []
        for _ in range(runs):
            _sync(device)
            start = time.perf_counter()
            pvars.append(trainer.run()[0])
            _sync(device)
            times.append(time.perf_counter() - start)
        gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
        rows.append({"n_units": n, "n_samples": n_samples, "seconds_per_run": float(np.median(times)),
                     "us_per_sample": float(np.median(times)) / n_samples * 1e6, "curbd_pvar_last_run": pvars[-1],
                     "peak_gpu_mb": gpu_mb})
    return rows


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    """Parse arguments, run the sections, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--units", type=int, nargs="+", default=[300], help="network sizes for 'scaling'")
    parser.add_argument("--samples", type=int, default=1200, help="samples per trial for 'scaling'")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch and numpy's BLAS)")
    parser.add_argument("--max-runs", type=int, default=15, help="training runs at most, per speed variant")
    parser.add_argument("--recovery-runs", type=int, default=15, help="rls runs in the recovery section")
    parser.add_argument("--scaling-runs", type=int, default=2, help="rls runs timed per size")
    parser.add_argument("--target", type=float, default=0.99, help="pVar to reach")
    parser.add_argument("--sections", nargs="+", default=["speed", "recovery", "scaling"],
                        choices=["speed", "recovery", "scaling"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"device": args.device, "threads": args.threads, "torch": torch.__version__}
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sim = simulate_regions(0)
        if "speed" in args.sections:
            result["speed"] = speed(_sim_data(sim, folder), args.device, args.max_runs, args.target)
        if "recovery" in args.sections:
            result["recovery"] = recovery(sim, folder, args.device, args.recovery_runs)
        if "scaling" in args.sections:
            result["scaling"] = scaling(args.units, args.samples, args.device, args.scaling_runs, folder)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
