"""Benchmark: do learned interaction maps recover planted coupling beyond cortical distance (issue #22)?

For every scenario of ``configs/benchmarks/coupling.yaml`` (planted structure x whether the drive's fluctuations
pass through the coupling) it simulates a store, and for every model config runs ``neurofit fit``,
``neurofit evaluate`` and ``neurofit attention`` as subprocesses (the exact commands are in the output).
Per map it reports the AUC of coupled pairs and the rank correlation with the planted coupling beside the
distance-only, distance-profile, signal-correlation and untrained baselines, the partial correlation
controlling for distance and signal correlation with its permutation p, and the verdict line; per run the
stimulus-only single-trial r and, for context models, the r with population context by reliability.
Prints one JSON object to stdout (partial results to stderr as they come).

    python scripts/benchmark_coupling.py [--config configs/benchmarks/coupling.yaml] [--out DIR]
        [--scenarios tuning_through ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: The maps of attention_vs_distance.json, by JSON key (None: the recording's top level).
MAP_KEYS = {"attention": None, "coupling": "coupling_vs_distance",
            "context_attention": "context_attention_vs_distance",
            "context_coupling": "context_coupling_vs_distance"}


def _run(cmd: list[str], log: list[str]) -> None:
    log.append(" ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def _map_scores(entry: dict) -> dict:
    out = {}
    for name, key in MAP_KEYS.items():
        summary = entry if key is None else entry.get(key)
        if summary is None or "baselines" not in summary or (key is None and "spearman_rho" not in entry):
            continue
        b = summary["baselines"]
        out[name] = {"scores": b["scores"], "partial_correlation": b["partial_correlation"],
                     "partial_correlation_distance": b["partial_correlation_distance"],
                     "coupled_pairs": b["coupled_pairs"], "beyond_distance": b["beyond_distance"],
                     "verdict": b["verdict"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "benchmarks" / "coupling.yaml"))
    parser.add_argument("--out", default="/tmp/neurofit_coupling_benchmark")
    parser.add_argument("--scenarios", nargs="+", default=None, help="default: all in the config")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    sim = dict(cfg["simulator"])
    preset, neurons = sim.pop("preset"), sim.pop("neurons")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from neurofit.data.simulate.v1 import simulate_v1_store

    results, commands, start = {}, [], time.time()
    for scenario in args.scenarios or list(cfg["scenarios"]):
        store = out / f"{scenario}.zarr"
        simulate_v1_store(store, recordings=1, neurons=neurons, seed=cfg["fit"]["seed"], preset=preset,
                          overwrite=True, **sim, **cfg["scenarios"][scenario])
        commands.append(f"simulate_v1_store({store}, recordings=1, neurons={neurons}, seed={cfg['fit']['seed']}, "
                        f"preset={preset!r}, **{ {**sim, **cfg['scenarios'][scenario]} })")
        results[scenario] = {}
        for model in cfg["models"]:
            run = out / f"{scenario}_{model}"
            shutil.rmtree(run, ignore_errors=True)  # the benchmark's own output folder: each run starts fresh
            sets = [a for o in cfg["fit"]["overrides"] for a in ("--set", o)]
            nf = [sys.executable, "-m", "neurofit"]
            _run([*nf, "fit", "--data", str(store), "--config", f"configs/{model}.yaml", "--out", str(run),
                  "--seed", str(cfg["fit"]["seed"]), "--max-epochs", str(cfg["fit"]["max_epochs"]),
                  "--threads", str(args.threads), *sets], commands)
            _run([*nf, "evaluate", str(run), "--no-figures"], commands)
            _run([*nf, "attention", str(run), "--permutations", str(cfg["permutations"])], commands)
            metrics = json.loads((run / "metrics.json").read_text())
            entry = json.loads((run / "attention" / "attention_vs_distance.json").read_text())["mouse0"]
            results[scenario][model] = {
                "stimulus_only_single_trial_correlation": metrics["mean"]["single_trial_correlation"],
                "fraction_of_ceiling": metrics["mean"].get("fraction_of_ceiling"),
                "with_population_context": metrics.get("with_population_context", {}).get("recordings", {})
                .get("mouse0"),
                "maps": _map_scores(entry), "planted_coupling": entry.get("planted_coupling")}
            print(json.dumps({scenario: {model: results[scenario][model]}}), file=sys.stderr, flush=True)
    print(json.dumps({"config": cfg, "threads": args.threads, "wall_s": time.time() - start,
                      "loadavg": os.getloadavg(), "commands": commands, "results": results}, indent=2))


if __name__ == "__main__":
    main()
