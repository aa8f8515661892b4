"""Per-neuron numbers of an ``Analysis`` (with their scores against the planted truth) and the recording's
entry in ``RUN/insilico/summary.json``: each number summarised over neurons, trained next to untrained."""

from __future__ import annotations

import numpy as np
from scipy import stats

from neurofit.analysis.insilico.experiment import Analysis
from neurofit.analysis.insilico.truth import (
    Truth,
    centre_error,
    filter_correlation,
    orientation_error_deg,
)
from neurofit.analysis.insilico.tuning import Tuning

#: Per-neuron numbers any model gives, with what they mean (written into the JSON).
MODEL_METRICS: dict[str, str] = {
    "mei_activation": "rate to the best MEI start / mean rate over the training images",
    "mei_activation_vs_max": "rate to the best MEI start / largest rate over the training images",
    "mei_start_similarity": "mean pairwise Pearson correlation of the MEI starts",
    "noise_rf_sigma_px": "RF envelope std from the noise RF fit, pixels",
    "orientation_selectivity": "vector-average orientation selectivity of the windowed gratings, 0..1",
    "preferred_sf_cpp": "preferred spatial frequency of the full-field gratings, cycles/pixel",
    "preferred_tf_hz": "preferred drift frequency of the full-field gratings, Hz (video models; null for static)",
    "f1_f0": "F1 / (F0 - blank) of the optimal windowed grating (> 1: simple)",
    "fullfield_f1_f0": "F1 / (F0 - blank) of the optimal full-field grating",
    "surround_suppression_index": "1 - response to the largest grating / peak over sizes (blank subtracted, "
                                  "0..1)",
    "preferred_size_px": "window diameter of the peak of the size tuning, pixels",
}
#: Per-neuron scores against the planted truth.
TRUTH_METRICS: dict[str, str] = {
    "mei_filter_correlation": "best-phase correlation of the best MEI start with the planted Gabor pair",
    "gradient_rf_filter_correlation": "best-phase correlation of the gradient RF (at the mean image) with it",
    "sta_filter_correlation": "best-phase correlation of the white-noise STA with it (near 0 for complex "
                              "cells in theory)",
    "mei_centre_error_px": "distance of the MEI energy's Gaussian centre from the planted RF centre, px",
    "gradient_rf_centre_error_px": "the same for the gradient RF, px",
    "noise_rf_centre_error_px": "the same for the noise RF (STA energy or response-weighted variance), px",
    "noise_rf_sigma_ratio": "noise RF envelope std / planted envelope std",
    "orientation_error_deg": "windowed preferred orientation vs planted, degrees mod 180",
    "fullfield_orientation_error_deg": "full-field preferred orientation vs planted, degrees mod 180",
    "sf_ratio": "full-field preferred spatial frequency / planted",
}
#: Headline targets of issue #20: metric, neuron group, comparison, threshold.
TARGETS = (("mei_filter_correlation", "reliable", ">=", 0.7), ("orientation_error_deg", "all", "<=", 15.0),
           ("noise_rf_centre_error_px", "all", "<=", 1.5), ("simple_complex_accuracy", "all", ">=", 0.8))


def neuron_table(analysis: Analysis, truth: Truth | None) -> dict[str, np.ndarray]:
    """The per-neuron numbers of ``MODEL_METRICS`` (and ``TRUTH_METRICS``, ``simple_predicted`` and the
    type calls' correctness with a truth), plus centres (K, 2) ``mei_centre_px``,
    ``gradient_rf_centre_px``, ``noise_rf_centre_px`` and the tuning's preferences, each (K,)."""
    tuning, fits, meis = analysis.tuning, analysis.fits, analysis.meis
    best_rate = meis.rates.max(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = {
            "mei_activation": best_rate / analysis.train_mean,
            "mei_activation_vs_max": best_rate / analysis.train_max,
            "mei_start_similarity": analysis.mei_similarity,
            "noise_rf_sigma_px": fits["noise"].sigma_px,
            "orientation_selectivity": tuning.osi,
            "preferred_sf_cpp": tuning.fullfield_sf_cpp,
            "f1_f0": tuning.f1_f0,
            "fullfield_f1_f0": tuning.fullfield_f1_f0,
            "surround_suppression_index": tuning.ssi,
            "preferred_size_px": tuning.preferred_size_px,
            "preferred_orientation_rad": tuning.orientation_rad,
            "fullfield_preferred_orientation_rad": tuning.fullfield_orientation_rad,
            "fullfield_orientation_selectivity": tuning.fullfield_osi,
            "preferred_tf_hz": tuning.fullfield_tf_hz,
            "blank_rate": tuning.blank,
            "simple_predicted": tuning.f1_f0 > 1,
            **{f"{name}_centre_px": fits[key].centre_px
               for name, key in (("mei", "mei"), ("gradient_rf", "gradient"), ("noise_rf", "noise"))},
        }
    if truth is None:
        return table
    table.update({
        "mei_filter_correlation": filter_correlation(meis.best(), truth.filters),
        "gradient_rf_filter_correlation": filter_correlation(analysis.gradient, truth.filters),
        "sta_filter_correlation": filter_correlation(analysis.noise.sta, truth.filters),
        "mei_centre_error_px": centre_error(fits["mei"].centre_px, truth.centre_px),
        "gradient_rf_centre_error_px": centre_error(fits["gradient"].centre_px, truth.centre_px),
        "noise_rf_centre_error_px": centre_error(fits["noise"].centre_px, truth.centre_px),
        "noise_rf_sigma_ratio": fits["noise"].sigma_px / truth.sigma_px,
        "orientation_error_deg": orientation_error_deg(tuning.orientation_rad, truth.orientation_rad),
        "fullfield_orientation_error_deg": orientation_error_deg(tuning.fullfield_orientation_rad,
                                                                 truth.orientation_rad),
        "sf_ratio": tuning.fullfield_sf_cpp / truth.sf_cpp,
        "type_correct": (tuning.f1_f0 > 1) == truth.simple,
        "fullfield_type_correct": (tuning.fullfield_f1_f0 > 1) == truth.simple,
    })
    return table


def _finite(value: float) -> float | None:
    """Four significant digits (p-values keep their exponent), None for NaN or inf."""
    return float(f"{value:.4g}") if np.isfinite(value) else None


def _grouped(values: np.ndarray, groups: dict[str, np.ndarray], reduce=np.nanmedian) -> dict[str, float | None]:
    """``reduce`` of values (K,) over each neuron group (name -> mask (K,)); None for an empty group."""
    out = {}
    for name, mask in groups.items():
        part = np.asarray(values, dtype=np.float64)[mask]
        out[name] = _finite(reduce(part)) if np.isfinite(part).any() else None
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> dict:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:  # no ranks to correlate
        return {"spearman_rho": None, "p_value": None, "n": int(ok.sum())}
    rho, p = stats.spearmanr(x[ok], y[ok])
    return {"spearman_rho": _finite(rho), "p_value": _finite(p), "n": int(ok.sum())}


def summarise(tables: dict[str, dict[str, np.ndarray]], reliable: np.ndarray | None, truth: Truth | None,
              planted: Tuning | None = None) -> dict:
    """The JSON sections ``metrics`` (model numbers) and, with a truth, ``truth`` and ``targets``.

    tables: model label ("trained", "untrained") -> ``neuron_table``; reliable: (K,) mask of the neurons
    above the median test correlation of the trained model, or None; planted: the grating tuning of the
    planted model itself (``planted_probe``), or None. Each metric gives its median over all neurons, the
    reliable ones and, with a truth, the planted simple and complex cells, per model; with ``planted`` the
    cell-type accuracy and the suppression index also say what the planted model gives.
    """
    k = len(next(iter(tables.values()))["f1_f0"])
    groups = {"all": np.ones(k, dtype=bool)}
    if reliable is not None:
        groups["reliable"] = reliable
    if truth is not None:
        groups.update(simple=truth.simple, complex=~truth.simple)

    def section(descriptions: dict[str, str]) -> dict:
        return {name: {"description": text, **{label: _grouped(t[name], groups) for label, t in tables.items()}}
                for name, text in descriptions.items()}

    entry = {"metrics": section(MODEL_METRICS)}
    if truth is None:
        return entry
    type_groups = {g: m for g, m in groups.items() if g in ("all", "reliable")}
    majority = max(truth.simple.mean(), 1 - truth.simple.mean())
    entry["truth"] = {
        **section(TRUTH_METRICS),
        "simple_complex_accuracy": {
            "description": "fraction of neurons whose F1/F0 > 1 call (windowed optimal grating) matches the "
                           "planted cell type; majority_class: always calling the commoner type",
            **{label: _grouped(t["type_correct"], type_groups, np.mean) for label, t in tables.items()},
            "majority_class": _finite(majority)},
        "fullfield_simple_complex_accuracy": {
            "description": "the same from the optimal full-field grating",
            **{label: _grouped(t["fullfield_type_correct"], type_groups, np.mean) for label, t in tables.items()},
            "majority_class": _finite(majority)},
        "suppression_vs_pool_strength": {
            "description": "Spearman rho over neurons of the surround suppression index with the planted "
                           "normalisation strength 1 / (1 + sigma^n)",
            **{label: _spearman(t["surround_suppression_index"], truth.pool_strength)
               for label, t in tables.items()}},
    }
    if planted is not None:
        entry["truth"]["simple_complex_accuracy"]["planted_model"] = _finite(np.mean((planted.f1_f0 > 1)
                                                                                     == truth.simple))
        entry["truth"]["suppression_vs_pool_strength"]["planted_model"] = _spearman(planted.ssi,
                                                                                     truth.pool_strength)
        entry["truth"]["suppression_vs_planted_model"] = {
            "description": "Spearman rho over neurons of the suppression index with that of the planted model "
                           "itself (same size tuning at the planted centre, orientation and frequency); "
                           "planted_model_median: its median suppression index",
            **{label: _spearman(t["surround_suppression_index"], planted.ssi) for label, t in tables.items()},
            "planted_model_median": _finite(np.nanmedian(planted.ssi))}
    entry["targets"] = _targets(entry["truth"])
    return entry


def _targets(truth_entry: dict) -> dict:
    """Each of ``TARGETS`` with the trained and untrained values and whether the trained one meets it."""
    out = {}
    for metric, group, op, threshold in TARGETS:
        trained = truth_entry[metric]["trained"].get(group)
        met = None if trained is None else (trained >= threshold if op == ">=" else trained <= threshold)
        out[f"{metric} ({group}) {op} {threshold}"] = {
            "trained": trained, "untrained": truth_entry[metric].get("untrained", {}).get(group), "met": met}
    return out
