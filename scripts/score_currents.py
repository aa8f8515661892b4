"""Fitted inter-region currents scored against the simulator's truth; prints one JSON object.

Data: CURBD's three-region simulation (``--preset curbd``, ``neurofit simulate regions --preset curbd``) at each
inter-region amplitude (``ampInterReg``, ``--amplitudes``), or neurofit's ``default`` preset (random sparse
projections, two region pairs without any). For each fit (``curbd``: ``configs/rnn_curbd.yaml``, CURBD's
algorithm; ``default``: neurofit's defaults, the batched loop with the current target) and each of "without
inputs" (as the reference fits: the outside drivers are left out) and "with inputs" (the truth's outside
inputs given as known inputs), the model is fitted, run freely and its currents decomposed
(``neurofit.rnn.decompose``); per ordered region pair (source -> target), over the target's units and time:

- ``fitted_rms``, ``true_rms``: rms of the fitted and the true current (curbd: ``ampInterReg`` x the source
  rate on the linked units, zero elsewhere);
- ``rms_ratio``: their ratio (1 is the right size; null for pairs without a projection);
- ``correlation``: Pearson r of fitted and true current over units x time (null without a projection).

The data are the recorded (peak-normalised) rates, so model currents are in units of the model's h, within
the normalisation's 0.1-1% of the simulator's.

Usage: python scripts/score_currents.py [--preset curbd] [--amplitudes 0.02 0.2] [--runs 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from neurofit.data.simulate.regions import RegionsSimulation, simulate_regions
from neurofit.data.simulate.regions_curbd import simulate_curbd
from neurofit.rnn.config import load_config
from neurofit.rnn.currents import decompose
from neurofit.rnn.data import load_rnn_data
from neurofit.rnn.fit import fit

CONFIGS = {"curbd": Path(__file__).resolve().parent.parent / "configs" / "rnn_curbd.yaml", "default": None}


def pair_scores(fitted: np.ndarray, true: np.ndarray) -> dict[str, float | None]:
    """rms, rms ratio and correlation of two (unit, time) current arrays."""
    fitted_rms, true_rms = float(np.sqrt(np.mean(fitted**2))), float(np.sqrt(np.mean(true**2)))
    present = true.std() > 0 and fitted.std() > 0
    return {"fitted_rms": fitted_rms, "true_rms": true_rms,
            "rms_ratio": fitted_rms / true_rms if true_rms else None,
            "correlation": float(np.corrcoef(fitted.ravel(), true.ravel())[0, 1]) if present else None}


def score(sim: RegionsSimulation, folder: Path, config: Path | None, with_inputs: bool,
          runs: int) -> dict[str, Any]:
    """Fit one configuration and score every inter-region pair."""
    path = folder / "data.npz"
    extra = {"inputs": sim.inputs[0], "input_channels": np.asarray(sim.input_channels)} if with_inputs else {}
    np.savez(path, rates=sim.rates[0].T, regions=sim.regions, dt=sim.dt, **extra)
    cfg = load_config(config, {"rls.runs": runs, "model.use_inputs": with_inputs})
    outcome = fit(load_rnn_data(path, cfg.data.normalize), cfg)
    rates, pvar, _ = outcome.evaluate(cfg.model.seed)
    unit = decompose(outcome.model, rates, outcome.data.exog)["unit_current"].sum("sign").values  # (N, src, 1, T)
    names = list(dict.fromkeys(sim.regions.tolist()))
    pairs = {}
    for s, source in enumerate(names):
        for t, target in enumerate(names):
            if s != t:
                into = sim.regions == target
                pairs[f"{source}->{target}"] = pair_scores(unit[into, s, 0], sim.currents[0][:, into, s].T)
    ratios = [p["rms_ratio"] for p in pairs.values() if p["rms_ratio"] is not None]
    return {"free_run_pVar": pvar, "wall_s": outcome.wall_s, "pairs": pairs,
            "rms_ratio_range": [min(ratios), max(ratios)],
            "mean_correlation": float(np.mean([p["correlation"] for p in pairs.values()
                                               if p["correlation"] is not None]))}


def main() -> None:
    """Parse arguments, fit and score every combination, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="curbd", choices=["curbd", "default"])
    parser.add_argument("--amplitudes", type=float, nargs="+", default=[0.02, 0.2], help="curbd: ampInterReg")
    parser.add_argument("--fits", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--runs", type=int, default=20, help="rls training runs per fit")
    parser.add_argument("--units", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"preset": args.preset, "units": args.units, "runs": args.runs}
    datasets = ({f"amp_{amp:g}": simulate_curbd(0, n_units=args.units, amp_inter_region=amp)
                 for amp in args.amplitudes} if args.preset == "curbd"
                else {"default": simulate_regions(0, n_units=args.units)})
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        for label, sim in datasets.items():
            for name in args.fits:
                for with_inputs in (False, True):
                    key = f"{label}/{name}/{'with' if with_inputs else 'without'}_inputs"
                    result[key] = score(sim, Path(tmp), CONFIGS[name], with_inputs, args.runs)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
