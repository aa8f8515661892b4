"""Tutorial: reproduce the README architecture comparison on the default simulated data.

Simulates the default mouse-V1 store (``neurofit simulate v1``: 2 recordings x 300 neurons), fits every
architecture config x seed on it with identical splits in deterministic mode (``neurofit sweep``), compares
them and prints one JSON object: the overall table (mean ± SEM over seeds), the paired tests, the
interaction-map scores against the planted coupling beside their baselines (``interactions``), the report
path, this invocation's wall time (``wall_s``) and the summed training time of all runs (``train_s_total``,
which stays meaningful when a re-run skips finished runs). Architectures: baseline, ridge, ln, and attention /
normalisation configs where ``configs/`` has them. Re-running resumes: finished runs are skipped, and the same
seeds give the same numbers.

    python scripts/compare_architectures.py [--out runs/compare_architectures] [--seeds 0 1 2] [--max-epochs N]

The same as commands:

    neurofit simulate v1 --out OUT/data.zarr
    neurofit sweep --data OUT/data.zarr --configs configs/baseline.yaml configs/ridge.yaml configs/ln.yaml \\
        configs/attention.yaml configs/normalization.yaml configs/attention_normalization.yaml \\
        --seeds 0 1 2 --out OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
#: Config name patterns in table order; a pattern that matches nothing is left out.
ARCHITECTURES = ("baseline.yaml", "ridge.yaml", "ln.yaml", "attention.yaml", "normali[sz]ation.yaml",
                 "attention_normali[sz]ation.yaml")


def default_configs() -> list[Path]:
    """The configs of ``ARCHITECTURES`` present in ``configs/``, in table order."""
    return [path for pattern in ARCHITECTURES for path in sorted(CONFIGS.glob(pattern))]


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def summary(ds) -> dict:
    """JSON-friendly overall table, paired tests and interaction-map scores (overall rows, with baselines and
    verdict) of a comparison Dataset."""
    from neurofit.analysis.interaction_table import interaction_records

    overall = ds.sel(recording="overall")
    table = []
    for arch in ds["architecture"].values:
        row = overall.sel(architecture=arch)
        entry = {"architecture": str(arch), "seeds": str(row["seeds"].item())}
        for var in ("single_trial_correlation", "correlation_to_average", "feve", "fraction_of_ceiling",
                    "n_parameters", "wall_s", "embedding_ari", "embedding_similarity",
                    "embedding_similarity_shuffled"):
            entry[var] = _number(float(row[var]))
            if f"{var}_sem" in row:
                entry[f"{var}_sem"] = _number(float(row[f"{var}_sem"]))
        table.append(entry)
    tests = [{"pair": str(p), "p_neurons_holm": _number(float(ds["p_neurons_holm"].sel(pair=p))),
              "significant_neurons": bool(ds["significant_neurons"].sel(pair=p)),
              "p_seeds_holm": _number(float(ds["p_seeds_holm"].sel(pair=p))),
              "significant_seeds": bool(ds["significant_seeds"].sel(pair=p))} for p in ds["pair"].values]
    interactions = [row for row in interaction_records(ds) if row["recording"] == "overall"]
    return {"table": table, "tests": tests, "interactions": interactions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/compare_architectures", help="sweep directory")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=None, help="cap training epochs (quick look)")
    parser.add_argument("--configs", nargs="+", default=None, help="configs to compare (default: see above)")
    args = parser.parse_args()

    from neurofit.api import sweep
    from neurofit.data.simulate.v1 import simulate_v1_store

    out = Path(args.out)
    data = out / "data.zarr"
    start = time.time()
    if not data.exists():
        out.mkdir(parents=True, exist_ok=True)
        simulate_v1_store(data)
    simulated = time.time()
    configs = args.configs or [str(p) for p in default_configs()]
    ds = sweep(data, configs, args.seeds, out, max_epochs=args.max_epochs,
               log=lambda line: print(line, flush=True, file=sys.stderr))
    result = {"data": str(data), "configs": configs, "seeds": args.seeds, "max_epochs": args.max_epochs,
              "report": str(out / "report.html"), "simulate_s": simulated - start,
              "wall_s": time.time() - start,
              "train_s_total": float((ds["wall_s"] * ds["n_seeds"]).sum()), **summary(ds)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
