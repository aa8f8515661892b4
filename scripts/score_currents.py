"""Fitted inter-region currents scored against the simulator's truth; prints one JSON object.

Data: CURBD's three-region simulation (``neurofit simulate regions --preset curbd``) at each inter-region
amplitude (``ampInterReg``, ``--amplitudes``), 300 units, one trial. Fits (``--fits``):

- ``reference``: CURBD's own ``trainMultiRegionRNN`` (the numpy port ``scripts/curbd_reference.py``, 20 runs);
  the reference takes no inputs, so only "without inputs";
- ``rls``: ``configs/rnn_curbd.yaml`` (CURBD's algorithm in neurofit);
- ``bptt``: ``configs/rnn_bptt.yaml``; ``bptt_group``: the same with the group-sparse penalty on inter-region
  blocks (``bptt.group_penalty`` 5);
- ``default``: ``neurofit rnn fit`` without a config (zero-started inter-region blocks under their own prior
  ``rls.P0_inter``, inferred inputs).

Each neurofit fit runs "without inputs" (as the reference fits: the outside drivers are left out) and "with
inputs" (the truth's outside inputs given as known inputs). The model is fitted, run freely and its currents
decomposed (``neurofit.rnn.decompose``); per ordered region pair (source -> target), over the target's units
and time:

- ``fitted_rms``, ``true_rms``: rms of the fitted and the true current (``ampInterReg`` x the source rate on
  the linked units, zero elsewhere); ``rms_ratio``: their ratio (1 is the right size);
- ``correlation``: Pearson r of fitted and true current over units x time.

With ``--necessity`` the default fit without inputs is also put through ``rnn currents --necessity``'s test
(``neurofit.rnn.necessity``; ``--inits`` initialisations, 5 refit runs, the last 20% held out, restarts every
``--window`` samples, the loss on the fifth of the target's units the fits drive most from the source): per
pair its verdict, held-out pVar loss, noise and paired t (``critical_t``: the Bonferroni-corrected one-sided
5% level), how many of the true link's target units were among those tested (``linked_units_tested``), and
the current's rms ratio mean and spread over the initialisations; ``target_met`` per pair: the ratio within 3x
of 1 or the block "not required by the data".

The data are the recorded (peak-normalised) rates, so model currents are in units of the model's h, within
the normalisation's 0.1-1% of the simulator's.

Usage: python scripts/score_currents.py [--amplitudes 0.02 0.2] [--fits reference rls bptt bptt_group default]
       [--necessity] [--inits 8] [--window 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from curbd_reference import ReferenceRNN
from threadpoolctl import threadpool_limits

from neurofit.data.simulate.regions import RegionsSimulation
from neurofit.data.simulate.regions_curbd import simulate_curbd
from neurofit.rnn.config import load_config
from neurofit.rnn.currents import decompose
from neurofit.rnn.data import load_rnn_data
from neurofit.rnn.fit import fit
from neurofit.rnn.necessity import NOT_REQUIRED, necessity

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
#: name -> (config, overrides); ``reference`` is the port, not a neurofit config.
FITS: dict[str, tuple[Path | None, dict[str, Any]]] = {
    "reference": (None, {}), "rls": (CONFIGS / "rnn_curbd.yaml", {}), "bptt": (CONFIGS / "rnn_bptt.yaml", {}),
    "bptt_group": (CONFIGS / "rnn_bptt.yaml", {"bptt.group_penalty": 5.0}), "default": (None, {})}
#: Training runs of the reference port (rnn_curbd.yaml's).
REFERENCE_RUNS = 20
#: A fitted current counts as the right size within this factor of the true rms.
RMS_FACTOR = 3.0


def pair_scores(fitted: np.ndarray, true: np.ndarray) -> dict[str, float | None]:
    """rms, rms ratio and correlation of two (unit, time) current arrays."""
    fitted_rms, true_rms = float(np.sqrt(np.mean(fitted**2))), float(np.sqrt(np.mean(true**2)))
    present = true.std() > 0 and fitted.std() > 0
    return {"fitted_rms": fitted_rms, "true_rms": true_rms,
            "rms_ratio": fitted_rms / true_rms if true_rms else None,
            "correlation": float(np.corrcoef(fitted.ravel(), true.ravel())[0, 1]) if present else None}


def score_pairs(sim: RegionsSimulation, unit: np.ndarray | None) -> dict[str, Any]:
    """Scores of every inter-region pair from fitted currents ``unit`` (neuron, source region, time); None:
    zero currents (for the true rms alone)."""
    if unit is None:
        unit = np.zeros((len(sim.regions), len(set(sim.regions.tolist())), sim.rates.shape[1]))
    names = list(dict.fromkeys(sim.regions.tolist()))
    pairs = {}
    for s, source in enumerate(names):
        for target in names:
            if source != target:
                into = sim.regions == target
                pairs[f"{source}->{target}"] = pair_scores(unit[into, s], sim.currents[0][:, into, s].T)
    ratios = [p["rms_ratio"] for p in pairs.values()]
    return {"pairs": pairs, "rms_ratio_range": [min(ratios), max(ratios)],
            "mean_correlation": float(np.mean([p["correlation"] or 0.0 for p in pairs.values()]))}


def write_data(sim: RegionsSimulation, path: Path, with_inputs: bool) -> Path:
    """The simulation as an npz for ``load_rnn_data``, with the outside inputs when ``with_inputs``."""
    extra = {"inputs": sim.inputs[0], "input_channels": np.asarray(sim.input_channels)} if with_inputs else {}
    np.savez(path, rates=sim.rates[0].T, regions=sim.regions, dt=sim.dt, **extra)
    return path


def score_reference(sim: RegionsSimulation) -> dict[str, Any]:
    """CURBD's own loop (the port): 20 training runs, a free run, its currents J_ab r_b."""
    start = time.perf_counter()
    port = ReferenceRNN(sim.rates[0].T, sim.dt)
    for _ in range(REFERENCE_RUNS):
        port.run(True)
    pvar = port.run(False)[0]
    rates = port.model_rates()
    index = {name: sim.regions == name for name in dict.fromkeys(sim.regions.tolist())}
    unit = np.stack([port.J[:, cols] @ rates[cols] for cols in index.values()], axis=1)
    return {"free_run_pVar": pvar, "wall_s": time.perf_counter() - start, **score_pairs(sim, unit)}


def score_neurofit(sim: RegionsSimulation, path: Path, fit_spec: tuple[Path | None, dict[str, Any]],
                   with_inputs: bool) -> dict[str, Any]:
    """Fit one configuration (config file, overrides) and score every inter-region pair."""
    config, overrides = fit_spec
    cfg = load_config(config, {**overrides, "model.use_inputs": with_inputs})
    outcome = fit(load_rnn_data(path, cfg.data.normalize), cfg)
    rates, pvar, _ = outcome.evaluate(cfg.model.seed)
    currents = decompose(outcome.model, rates, outcome.data.exog)
    regions = list(currents["target_region"].values)
    unit = currents["unit_current"].sum("sign").sel(source=regions).values[:, :, 0]  # (neuron, region, time)
    return {"free_run_pVar": pvar, "wall_s": outcome.wall_s, **score_pairs(sim, unit)}


def score_necessity(sim: RegionsSimulation, path: Path, inits: int, window: int) -> dict[str, Any]:
    """The necessity test of the default fit without inputs, and per pair whether the target is met and how
    many of the true link's target units are among the units the test measured the loss on."""
    cfg = load_config(None, {"model.use_inputs": False})
    start = time.perf_counter()
    result = necessity(load_rnn_data(path, cfg.data.normalize), cfg, inits=inits, window=window)
    true = {key: pair["true_rms"] for key, pair in score_pairs(sim, None)["pairs"].items()}
    pairs = {}
    for key, block in result["blocks"].items():
        source, _, target = key.partition("->")
        linked = np.flatnonzero((sim.regions == target) & (sim.J[:, sim.regions == source] != 0).any(axis=1))
        ratio = np.asarray(block["current_rms"]) / true[key]
        sized = bool(1 / RMS_FACTOR <= ratio.mean() <= RMS_FACTOR)
        pairs[key] = {"verdict": block["verdict"], "loss_mean": block["loss_mean"], "noise": block["noise"],
                      "t": block["t"], "linked_units_tested": f"{np.isin(linked, block['driven_units']).sum()}/"
                                                              f"{len(linked)}",
                      "rms_ratio_mean": float(ratio.mean()), "rms_ratio_spread": float(ratio.std(ddof=1)),
                      "target_met": sized or block["verdict"] == NOT_REQUIRED}
    return {"wall_s": time.perf_counter() - start, "full_pvar": result["full_pvar"],
            "full_pvar_spread": result["full_pvar_spread"], "critical_t": result["threshold"], "pairs": pairs,
            "required": sorted(k for k, p in pairs.items() if p["verdict"] != NOT_REQUIRED),
            "target_met_every_pair": all(p["target_met"] for p in pairs.values())}


def main() -> None:
    """Parse arguments, fit and score every combination, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--amplitudes", type=float, nargs="+", default=[0.02, 0.2], help="ampInterReg")
    parser.add_argument("--fits", nargs="+", default=list(FITS), choices=list(FITS))
    parser.add_argument("--necessity", action="store_true", help="also test the default fit's blocks")
    parser.add_argument("--inits", type=int, default=8, help="necessity: initialisations")
    parser.add_argument("--window", type=int, default=10, help="necessity: held-out restarts every WINDOW samples")
    parser.add_argument("--units", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"units": args.units, "torch": torch.__version__}
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        for amp in args.amplitudes:
            sim = simulate_curbd(0, n_units=args.units, amp_inter_region=amp)
            paths = {inputs: write_data(sim, Path(tmp) / f"{inputs}.npz", inputs) for inputs in (False, True)}
            for name in args.fits:
                for inputs in (False,) if name == "reference" else (False, True):
                    key = f"amp_{amp:g}/{name}/{'with' if inputs else 'without'}_inputs"
                    result[key] = (score_reference(sim) if name == "reference"
                                   else score_neurofit(sim, paths[inputs], FITS[name], inputs))
            if args.necessity:
                result[f"amp_{amp:g}/default/necessity"] = score_necessity(sim, paths[False], args.inits,
                                                                           args.window)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
