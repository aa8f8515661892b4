"""Compare architectures: gather evaluated runs, summarise them over seeds and test which differences between
architectures are significant (paired across neurons and across seeds, Holm-corrected across pairs).

Runs are grouped into architectures by config name. Everything is returned as one ``xarray.Dataset`` (see
``compare_runs``) so notebooks, the CSV/Markdown tables and the HTML report all read the same numbers.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats

from neurofit.config import ExperimentConfig, load_config
from neurofit.errors import ConfigError, DataError
from neurofit.rundir import RunDir

#: Config values that legitimately differ between seeds of one architecture.
PER_SEED = ("training.seed", "data.path")
#: Metrics summarised over seeds; oracle correlation is left out because it depends on the data only.
TABLE_METRICS = ("single_trial_correlation", "correlation_to_average", "feve", "fraction_of_ceiling")
#: Per-neuron columns of ``neurons.csv`` (written by ``neurofit.evaluation``).
NEURON_METRICS = ("single_trial_correlation", "correlation_to_average", "fev", "feve", "oracle_correlation",
                  "ceiling_correlation")
#: Label of the across-recordings row of the table (the ``mean`` block of ``metrics.json``).
OVERALL = "overall"


@dataclass
class RunResult:
    """One fitted and evaluated run.

    ``metrics`` is ``metrics.json``; ``neurons`` has dim ``neuron`` with coords ``recording`` and ``unit_id``
    and one float variable per column of ``neurons.csv`` (correlations unitless, NaN where undefined)."""

    path: Path
    architecture: str
    seed: int
    config: ExperimentConfig
    info: dict
    metrics: dict
    neurons: xr.Dataset

    @property
    def neuron_keys(self) -> list[str]:
        """``recording/unit_id`` per neuron: the key that matches neurons across runs."""
        return [f"{r}/{u}" for r, u in zip(self.neurons["recording"].values, self.neurons["unit_id"].values)]


def _float(text: str) -> float:
    return float(text) if text not in ("", "None") else np.nan


def read_neurons(path: str | os.PathLike) -> xr.Dataset:
    """Read a run's ``neurons.csv`` as a Dataset over ``neuron`` (coords ``recording``, ``unit_id``).

    Unit ids take their type from the run's ``specs.json`` (int or str), matched by position within each
    recording because ``neurons.csv`` lists every recording's neurons in spec order."""
    path = Path(path)
    specs_file = RunDir(path).read_json("specs.json", "an incomplete run")
    try:
        specs = {s["name"]: s["unit_id"] for s in specs_file}
        with open(path / "neurons.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (TypeError, KeyError) as err:
        raise DataError(f"{path / 'specs.json'}: not a list of recording specs ({err})") from None
    except OSError as err:
        raise DataError(f"{path / 'neurons.csv'}: cannot be read ({err}; run neurofit evaluate)") from None
    recordings = [row["recording"] for row in rows]
    unit_ids: list = []
    for name in dict.fromkeys(recordings):
        ids = specs.get(name, [])
        written = [row["unit_id"] for row in rows if row["recording"] == name]
        if [str(u) for u in ids] != written:
            raise DataError(f"{path}: neurons.csv does not match specs.json for recording {name!r} "
                            "(re-run neurofit evaluate)")
        unit_ids.extend(ids)
    data = {m: ("neuron", np.array([_float(row[m]) for row in rows])) for m in NEURON_METRICS}
    return xr.Dataset(data, coords={"recording": ("neuron", np.array(recordings)),
                                    "unit_id": ("neuron", np.array(unit_ids))})


def is_evaluated(path: str | os.PathLike) -> bool:
    """Whether a run dir has both evaluation outputs, ``metrics.json`` and ``neurons.csv``."""
    return (Path(path) / "metrics.json").exists() and (Path(path) / "neurons.csv").exists()


def ensure_evaluated(path: str | os.PathLike, evaluate_missing: bool = True) -> None:
    """Evaluate a run on its test tier if it has no ``metrics.json``/``neurons.csv`` (``evaluate_missing``);
    otherwise raise a ``DataError`` naming the run."""
    if is_evaluated(path):
        return
    if not evaluate_missing:
        raise DataError(f"{path}: run has no metrics.json/neurons.csv (run: neurofit evaluate {path})")
    from neurofit.evaluation import evaluate

    try:
        evaluate(path, figures=False)
    except DataError as err:
        raise DataError(f"{path}: cannot evaluate the run on the fly: {err}") from None


def load_result(path: str | os.PathLike, evaluate_missing: bool = True) -> RunResult:
    """Open a fitted run, evaluating it first where needed (see ``ensure_evaluated``)."""
    run = RunDir(path)
    info = run.read_json("train_info.json", "not a finished run: did neurofit fit complete?")
    ensure_evaluated(run.path, evaluate_missing)
    config = load_config(run.file("config.yaml"))
    metrics = run.read_json("metrics.json", "run neurofit evaluate")
    if not isinstance(info, dict) or not isinstance(metrics, dict) or "mean" not in metrics:
        raise DataError(f"{run.path}: train_info.json or metrics.json does not hold a run's summary")
    return RunResult(path=run.path, architecture=str(info.get("config", config.name)),
                     seed=int(info.get("seed", config.training.seed)), config=config, info=info,
                     metrics=metrics, neurons=read_neurons(run.path))


def split_fingerprint(data: str | os.PathLike, recordings: list[str]) -> str:
    """SHA-256 over the ``tier`` and ``stimulus_id`` coordinates of the given recordings of a store: equal
    fingerprints mean identical train/validation/test splits."""
    import zarr

    try:
        root = zarr.open_group(str(data), mode="r")
        digest = hashlib.sha256()
        for name in sorted(recordings):
            for coord in ("tier", "stimulus_id"):
                digest.update(f"{name}:{coord}:".encode())
                digest.update(np.asarray(root[name][coord][...]).astype(str).tobytes())
    except (FileNotFoundError, KeyError) as err:
        raise DataError(f"{data}: cannot read the splits of recordings {recordings} ({err})") from None
    return digest.hexdigest()


def check_comparable(results: list[RunResult]) -> None:
    """Raise a ``DataError`` unless all runs were scored on the same tier, neurons and data splits, every
    architecture's runs share one config (apart from seed) and no (architecture, seed) repeats."""
    first = results[0]
    keys = set(first.neuron_keys)
    data_paths = [str(Path(r.config.data.path).resolve()) for r in results]
    recordings = sorted(set(first.neurons["recording"].values.tolist()))
    # One store means one split; only runs on different stores need their splits read and compared.
    stores = set(data_paths)
    fingerprints = {p: split_fingerprint(p, recordings) for p in stores} if len(stores) > 1 else {}
    seen: dict[tuple[str, int], Path] = {}
    configs: dict[str, RunResult] = {}
    for r, path in zip(results, data_paths):
        if r.metrics["tier"] != first.metrics["tier"]:
            raise DataError(f"{r.path}: scored on tier {r.metrics['tier']!r} but {first.path} on "
                            f"{first.metrics['tier']!r}; evaluate all runs on one tier")
        if set(r.neuron_keys) != keys:
            raise DataError(f"{r.path}: its recordings/neurons differ from {first.path}'s; runs must be "
                            "fit on the same data")
        if fingerprints and fingerprints[path] != fingerprints[data_paths[0]]:
            raise DataError(f"{r.path}: trained on {path} whose splits differ from those of {first.path}")
        if (r.architecture, r.seed) in seen:
            raise DataError(f"{r.path} and {seen[r.architecture, r.seed]}: two runs of {r.architecture!r} "
                            f"with seed {r.seed}")
        seen[r.architecture, r.seed] = r.path
        base = configs.setdefault(r.architecture, r)
        if r.config.identity(*PER_SEED) != base.config.identity(*PER_SEED):
            raise DataError(f"{r.path} and {base.path}: both named {r.architecture!r} but their configs differ "
                            "(give the variants different config names)")


def group_by_architecture(results: list[RunResult]) -> dict[str, list[RunResult]]:
    """Runs per architecture, architectures in order of first appearance, runs sorted by seed."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.architecture, []).append(r)
    return {name: sorted(runs, key=lambda r: r.seed) for name, runs in groups.items()}


def mean_sem(values: list[float | None]) -> tuple[float, float]:
    """Mean and standard error (std with ddof 1 / sqrt(n)) over the non-missing values; NaN where undefined
    (no values; the SEM of a single value)."""
    x = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return np.nan, np.nan
    sem = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else np.nan
    return float(x.mean()), sem


def summary_table(groups: dict[str, list[RunResult]]) -> xr.Dataset:
    """Mean and SEM over seeds of every table metric per architecture and recording (plus ``overall``, the
    unweighted mean over recordings), with seeds, mean parameter count and mean training wall time (s).

    Returns a Dataset with dims (architecture, recording): ``<metric>`` and ``<metric>_sem``; and over
    architecture: ``n_seeds``, ``seeds`` (comma-separated), ``n_parameters``, ``wall_s``, ``epochs``."""
    names = list(groups)
    first = next(iter(groups.values()))[0]
    recordings = list(first.metrics["recordings"]) + [OVERALL]
    data: dict[str, tuple] = {}
    for metric in TABLE_METRICS:
        mean = np.full((len(names), len(recordings)), np.nan)
        sem = np.full_like(mean, np.nan)
        for i, runs in enumerate(groups.values()):
            for j, rec in enumerate(recordings):
                block = [(r.metrics["mean"] if rec == OVERALL else r.metrics["recordings"][rec]).get(metric)
                         for r in runs]
                mean[i, j], sem[i, j] = mean_sem(block)
        data[metric] = (("architecture", "recording"), mean)
        data[f"{metric}_sem"] = (("architecture", "recording"), sem)
    per_arch = {
        "n_seeds": [len(runs) for runs in groups.values()],
        "seeds": [",".join(str(r.seed) for r in runs) for runs in groups.values()],
        "n_parameters": [float(np.mean([r.info["n_parameters"] for r in runs])) for runs in groups.values()],
        "wall_s": [float(np.mean([r.info["wall_s"] for r in runs])) for runs in groups.values()],
        "epochs": [float(np.mean([r.info.get("epochs", 0) for r in runs])) for runs in groups.values()],
    }
    for key, values in per_arch.items():
        data[key] = ("architecture", np.array(values))
    return xr.Dataset(data, coords={"architecture": names, "recording": recordings})


def neuron_correlations(groups: dict[str, list[RunResult]]) -> xr.DataArray:
    """Per-neuron single-trial correlation averaged over each architecture's seeds, neurons matched by
    (recording, unit_id) in the order of the first run. Returns (architecture, neuron) with neuron coords
    ``neuron_recording`` and ``unit_id`` (not ``recording``: that names the table's recording dim)."""
    first = next(iter(groups.values()))[0]
    order = {k: i for i, k in enumerate(first.neuron_keys)}
    values = np.full((len(groups), len(order)), np.nan)
    for i, runs in enumerate(groups.values()):
        per_seed = np.full((len(runs), len(order)), np.nan)
        for s, r in enumerate(runs):
            idx = [order[k] for k in r.neuron_keys]
            per_seed[s, idx] = r.neurons["single_trial_correlation"].values
        values[i] = per_seed.mean(axis=0)
    return xr.DataArray(values, dims=("architecture", "neuron"),
                        coords={"architecture": list(groups),
                                "neuron_recording": ("neuron", first.neurons["recording"].values),
                                "unit_id": ("neuron", first.neurons["unit_id"].values)},
                        name="neuron_single_trial_correlation")


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same shape); NaN entries are not tests and stay NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p-value of paired samples (neuron,), over pairs where both are finite;
    returns (p, n pairs). Identical samples give p = 1; fewer than 2 pairs give NaN."""
    keep = np.isfinite(a) & np.isfinite(b)
    diff = b[keep] - a[keep]
    if keep.sum() < 2:
        return np.nan, int(keep.sum())
    if not np.any(diff):
        return 1.0, int(keep.sum())
    return float(stats.wilcoxon(diff).pvalue), int(keep.sum())


def seed_ttest(runs_a: list[RunResult], runs_b: list[RunResult]) -> tuple[float, float, int]:
    """Paired t-test of the overall single-trial correlation over the seeds both architectures have.

    Returns (mean difference b - a, two-sided p, number of matched seeds); p is NaN with fewer than 2."""
    a = {r.seed: r.metrics["mean"]["single_trial_correlation"] for r in runs_a}
    b = {r.seed: r.metrics["mean"]["single_trial_correlation"] for r in runs_b}
    common = sorted(set(a) & set(b))
    if not common:
        return np.nan, np.nan, 0
    xa, xb = np.array([a[s] for s in common]), np.array([b[s] for s in common])
    diff = float(np.mean(xb - xa))
    if len(common) < 2:
        return diff, np.nan, len(common)
    if not np.any(xb - xa - diff):  # a constant difference has no spread: the t statistic is undefined
        return diff, (1.0 if diff == 0 else 0.0), len(common)
    return diff, float(stats.ttest_rel(xb, xa).pvalue), len(common)


def paired_tests(groups: dict[str, list[RunResult]], neuron_r: xr.DataArray, alpha: float = 0.05) -> xr.Dataset:
    """Every pair of architectures (a listed before b), differences b - a.

    Across neurons: Wilcoxon signed-rank on the seed-averaged per-neuron single-trial correlations
    (``neuron_r``, (architecture, neuron)). Across seeds: paired t-test on the overall mean over matched seeds.
    Each family is Holm-corrected across pairs; ``significant_*`` is adjusted p < ``alpha``.
    Returns a Dataset over dim ``pair`` (labels "b vs a")."""
    pairs = list(itertools.combinations(list(groups), 2))
    rows = []
    for a, b in pairs:
        ra, rb = neuron_r.sel(architecture=a).values, neuron_r.sel(architecture=b).values
        p_n, n_n = wilcoxon_p(ra, rb)
        keep = np.isfinite(ra) & np.isfinite(rb)
        median = float(np.median(rb[keep] - ra[keep])) if keep.any() else np.nan
        diff, p_s, n_s = seed_ttest(groups[a], groups[b])
        rows.append((a, b, n_n, median, p_n, n_s, diff, p_s))
    cols = list(zip(*rows)) if rows else [[] for _ in range(8)]
    p_neurons, p_seeds = np.array(cols[4], dtype=float), np.array(cols[7], dtype=float)
    adj_n, adj_s = holm(p_neurons), holm(p_seeds)
    dim = "pair"
    return xr.Dataset(
        {"architecture_a": (dim, np.array(cols[0], dtype=object)),
         "architecture_b": (dim, np.array(cols[1], dtype=object)),
         "n_neurons": (dim, np.array(cols[2], dtype=int)),
         "median_difference_neurons": (dim, np.array(cols[3], dtype=float)),
         "p_neurons": (dim, p_neurons), "p_neurons_holm": (dim, adj_n),
         "significant_neurons": (dim, np.nan_to_num(adj_n, nan=1.0) < alpha),
         "n_seeds_matched": (dim, np.array(cols[5], dtype=int)),
         "mean_difference_seeds": (dim, np.array(cols[6], dtype=float)),
         "p_seeds": (dim, p_seeds), "p_seeds_holm": (dim, adj_s),
         "significant_seeds": (dim, np.nan_to_num(adj_s, nan=1.0) < alpha)},
        coords={dim: [f"{b} vs {a}" for a, b in pairs]}, attrs={"alpha": alpha})


def check_report_options(alpha: float, clusters: int) -> None:
    """``alpha`` (significance level) in (0, 1) and ``clusters`` (k-means k) >= 2, else ``ConfigError``."""
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha}: the significance level must be in (0, 1)")
    if clusters < 2:
        raise ConfigError(f"--clusters {clusters}: k-means needs at least 2 clusters")


def compare_runs(paths: list[str | os.PathLike], *, evaluate_missing: bool = True, alpha: float = 0.05,
                 clusters: int = 5) -> xr.Dataset:
    """Load, check and compare fitted runs; the one Dataset every table, figure and report reads.

    Dims: ``architecture``, ``recording`` (each recording and ``overall``), ``pair``, ``neuron`` (coords
    ``neuron_recording``, ``unit_id``). Holds the
    ``summary_table`` variables, the ``paired_tests`` variables, ``neuron_single_trial_correlation``
    (architecture, neuron) and the embedding consistency of ``neurofit.analysis.embeddings``
    (``embedding_ari``, ``embedding_similarity``, ``embedding_similarity_shuffled`` over architecture;
    ``embedding_similarity_neuron`` over (architecture, neuron)) and the gain of every pair against neuron
    reliability (``neurofit.analysis.reliability``, over (pair, reliability_bin)). Where runs with interaction
    layers were fit on a store with planted coupling, the interaction-map scores and baselines of
    ``neurofit.analysis.interaction_table`` (over (architecture, recording, interaction_map); without
    ``evaluate_missing`` only those ``neurofit attention`` already wrote). attrs: ``tier``, ``alpha``,
    ``clusters``, ``runs``."""
    from neurofit.analysis.embeddings import architecture_consistency
    from neurofit.analysis.interaction_table import interaction_table
    from neurofit.analysis.reliability import gain_by_reliability

    check_report_options(alpha, clusters)

    if not paths:
        raise DataError("compare: give at least one run directory")
    results = [load_result(p, evaluate_missing) for p in paths]
    check_comparable(results)
    groups = group_by_architecture(results)
    neuron_r = neuron_correlations(groups)
    consistency = architecture_consistency({a: [r.path for r in runs] for a, runs in groups.items()},
                                           neuron_r, clusters=clusters)
    oracle = next(iter(groups.values()))[0].neurons["oracle_correlation"].values  # same order as neuron_r
    ds = xr.merge([summary_table(groups), paired_tests(groups, neuron_r, alpha), neuron_r, consistency,
                   gain_by_reliability(neuron_r, oracle)], combine_attrs="drop")
    interactions = interaction_table(groups, ds["recording"].values.tolist(), evaluate_missing)
    if interactions is not None:
        ds = xr.merge([ds, interactions], combine_attrs="drop")
    ds.attrs.update(tier=results[0].metrics["tier"], alpha=alpha, clusters=clusters,
                    runs=[str(r.path) for r in results])
    return ds
