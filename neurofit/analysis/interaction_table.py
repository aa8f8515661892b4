"""Interaction maps in the architecture comparison: for every compared run with interaction layers whose store
plants coupling (the simulator's truth ``coupling`` / ``norm_pool``), each map's scores against the planted
truth beside its baselines (``neurofit.analysis.interaction_scores``), read from the run's
``attention/attention_vs_distance.json`` and averaged over each architecture's seeds.

The numbers are those ``neurofit attention RUN`` writes: a run without them (or with entries written before
the baselines existed) is mapped on the fly by the same function (``interaction_maps.map_run``, default
options), which writes ``RUN/attention/`` as the command would.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from neurofit.analysis.attention import MAP_KINDS, SUMMARY_FILE, map_summaries
from neurofit.analysis.compare import OVERALL, RunResult, mean_sem
from neurofit.data.store import open_truth
from neurofit.rundir import RunDir

#: The run's attention summary, relative to the run directory.
ATTENTION_SUMMARY = f"attention/{SUMMARY_FILE}"
#: The map and its baselines, as named under ``baselines.scores``.
BASELINES = ("map", "distance_only", "distance_profile", "signal_correlation", "untrained")
#: Scores per map or baseline: AUC of coupled pairs and Spearman rho with the planted reference.
SCORES = ("auc", "spearman")
#: Averaged variables (each ``interaction_<name>`` with ``_sem``): scores and the partial correlation.
VARIABLES = tuple(f"{b}_{s}" for b in BASELINES for s in SCORES) + ("partial_rho",)


def has_interactions(result: RunResult) -> bool:
    """Whether the run is an encoder with an interaction layer (other than ``none``)."""
    return result.config.type == "encoder" and any(
        layer.name != "none" for layer in result.config.model.interactions)


def _planted(data: str, recording: str) -> bool:
    truth = open_truth(data, recording)
    return truth is not None and ("coupling" in truth or "norm_pool" in truth)


def _scored(entry: dict | None) -> bool:
    """Whether a recording's JSON entry has every map scored against planted truth (``baselines.scores``)."""
    maps = map_summaries(entry) if isinstance(entry, dict) else {}
    return bool(maps) and all("scores" in m.get("baselines", {}) for m in maps.values())


def run_entries(result: RunResult, compute_missing: bool = True) -> dict[str, dict]:
    """{recording: entry of ``attention_vs_distance.json``} for the run's recordings with planted truth; {} for
    runs without interaction layers or truth. Recordings missing there or not scored are mapped first
    (``map_run``) when ``compute_missing``, else left out."""
    if not has_interactions(result):
        return {}
    names = [n for n in dict.fromkeys(result.neurons["recording"].values.tolist())
             if _planted(result.config.data.path, n)]
    if not names:
        return {}
    run = RunDir(result.path)
    saved = run.read_json(ATTENTION_SUMMARY) if run.file(ATTENTION_SUMMARY).is_file() else {}
    missing = [n for n in names if not _scored(saved.get(n))]
    if missing and compute_missing:
        from neurofit.analysis.interaction_maps import map_run

        saved.update(map_run(result.path, recordings=missing))
    return {n: saved[n] for n in names if _scored(saved.get(n))}


def as_number(value: float | None) -> float:
    """A JSON number, or NaN for its null (a score that could not be computed)."""
    return np.nan if value is None else float(value)


def _values(baselines: dict) -> list[float]:
    """``VARIABLES`` of one map's ``baselines`` entry (NaN for a baseline it lacks, e.g. no untrained map)."""
    scores = baselines["scores"]
    return [as_number(scores.get(b, {}).get(s)) for b in BASELINES for s in SCORES] + [
        as_number(baselines["partial_correlation"]["rho"])]


def interaction_table(groups: dict[str, list[RunResult]], recordings: list[str],
                      compute_missing: bool = True) -> xr.Dataset | None:
    """Interaction-map scores per architecture, recording (``recordings``, ``OVERALL`` the unweighted mean over
    the others) and map (``MAP_KINDS`` names), mean and SEM over seeds; None when no run has scored maps.

    Returns a Dataset over (architecture, recording, interaction_map): ``interaction_<v>`` and
    ``interaction_<v>_sem`` for every ``VARIABLES`` v (AUC and Spearman rho, unitless), and the counts of
    scored (seed, recording) cells ``interaction_n_scored`` and of those "beyond distance"
    ``interaction_n_beyond_distance``; coord ``interaction_reference`` (e.g. "|J|") over interaction_map."""
    per_run = {a: [run_entries(r, compute_missing) for r in runs] for a, runs in groups.items()}
    references: dict[str, str] = {}
    for entry in (e for runs in per_run.values() for entries in runs for e in entries.values()):
        for kind, summary in map_summaries(entry).items():
            references.setdefault(kind, summary["baselines"]["reference"])
    if not references:
        return None
    kinds = [k for k in MAP_KINDS if k in references]
    recs = [r for r in recordings if r != OVERALL]
    shape = (len(groups), len(recs) + 1, len(kinds))
    mean, sem = np.full(shape + (len(VARIABLES),), np.nan), np.full(shape + (len(VARIABLES),), np.nan)
    n_scored, n_beyond = np.zeros(shape), np.zeros(shape)
    for a, runs in enumerate(per_run.values()):
        values = np.full((len(runs), len(recs), len(kinds), len(VARIABLES)), np.nan)
        for s, entries in enumerate(runs):
            for r, rec in enumerate(recs):
                for kind, summary in map_summaries(entries.get(rec, {})).items():
                    k = kinds.index(kind)
                    values[s, r, k] = _values(summary["baselines"])
                    n_scored[a, r, k] += 1
                    n_beyond[a, r, k] += summary["baselines"]["beyond_distance"]
        with warnings.catch_warnings():  # a map absent from every recording of a run: NaN, as intended
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.concatenate([values, np.nanmean(values, axis=1, keepdims=True)], axis=1)
        for index in np.ndindex(values.shape[1:]):
            mean[(a, *index)], sem[(a, *index)] = mean_sem(list(values[(slice(None), *index)]))
    n_scored[:, -1], n_beyond[:, -1] = n_scored[:, :-1].sum(1), n_beyond[:, :-1].sum(1)
    dims = ("architecture", "recording", "interaction_map")
    data = {f"interaction_{v}": (dims, mean[..., i]) for i, v in enumerate(VARIABLES)}
    data.update({f"interaction_{v}_sem": (dims, sem[..., i]) for i, v in enumerate(VARIABLES)})
    data.update(interaction_n_scored=(dims, n_scored), interaction_n_beyond_distance=(dims, n_beyond))
    return xr.Dataset(data, coords={"architecture": list(groups), "recording": recs + [OVERALL],
                                    "interaction_map": kinds,
                                    "interaction_reference": ("interaction_map", [references[k] for k in kinds])})


def _verdict(n_beyond: int, n_scored: int) -> str:
    """"yes" / "no" when every scored cell agrees, else "K/N yes"."""
    if n_beyond == n_scored:
        return "yes"
    return "no" if n_beyond == 0 else f"{n_beyond}/{n_scored} yes"


def has_interaction_maps(ds: xr.Dataset) -> bool:
    """Whether any (architecture, recording, map) cell of a comparison has scored maps."""
    return "interaction_map" in ds.dims and bool(ds["interaction_n_scored"].sum() > 0)


def interaction_records(ds: xr.Dataset) -> list[dict]:
    """One JSON-friendly row per (architecture, recording, map) with scored maps (architectures without
    interaction layers have none): the ``interaction_table`` variables without their prefix (None for NaN),
    ``reference``, ``n_scored``, ``n_beyond_distance`` and ``beyond_distance`` ("yes", "no" or "K/N yes")."""
    if "interaction_map" not in ds.dims:
        return []
    rows = []
    for arch in ds["architecture"].values:
        for rec in ds["recording"].values:
            for kind in ds["interaction_map"].values:
                cell = ds.sel(architecture=arch, recording=rec, interaction_map=kind)
                n = int(cell["interaction_n_scored"])
                if not n:
                    continue
                beyond = int(cell["interaction_n_beyond_distance"])
                row = {"architecture": str(arch), "recording": str(rec), "interaction_map": str(kind),
                       "reference": str(cell["interaction_reference"].item()), "n_scored": n,
                       "n_beyond_distance": beyond, "beyond_distance": _verdict(beyond, n)}
                for v in VARIABLES:
                    for name in (v, f"{v}_sem"):
                        value = float(cell[f"interaction_{name}"])
                        row[name] = value if np.isfinite(value) else None
                rows.append(row)
    return rows
