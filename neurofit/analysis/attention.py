"""What an interaction layer learned, on plain arrays: attention maps and normalisation pools against
cortical distance, against a known coupling, and the ``RUN/attention/`` outputs (docs/architecture.md,
section "attention/").

Pairs of neurons are not independent samples (each neuron is in N - 1 pairs), so significance comes from
permutation tests that shuffle neuron labels (positions, or the truth matrix's rows and columns together);
the textbook Spearman p-value is reported alongside as ``p_value_asymptotic`` and is optimistic.

Comparing with the simulator's truth: attention weights and pools are non-negative, the true coupling J is
signed (excitation within ~170 um, a weaker inhibitory surround beyond, which is most pairs), so a map is
compared with |J| and with its excitatory and inhibitory parts separately, and with the normalisation pools
(``TRUTH_REFERENCES``). Attention whose values are the drives also applies a signed coupling of the drives
(``NeuronAttention.drive_coupling``), which is compared with signed J itself. Every comparison also gives
``distance_only_rho``, the score of a map that is any decreasing function of distance alone: a learned map
adds information about the truth only where it beats it.
Both interaction layers build a preference for near neighbours in at initialisation (attention's distance
bias, the distance pools), so a map that falls off with distance shows what the architecture assumes as much
as what was learned; ``untrained`` entries give the same numbers for the model before training.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import xarray as xr
from scipy import stats

from neurofit.analysis.interaction_scores import average_ranks, descriptive_scores, interaction_scores
from neurofit.data.store import write_zarr
from neurofit.io import save_figure, write_json
from neurofit.models.interactions.attention import spatial_order

SUMMARY_FILE = "attention_vs_distance.json"
#: Truth matrices a learned map is compared with, by name, with the description written into the JSON. J is
#: the simulator's signed coupling and P its normalisation pools, (N, N), row i = what neuron i receives
#: from neuron j (the orientation of the maps). Signed J is compared only with signed maps (attention's
#: coupling of the drives): a non-negative map cannot express sign, and rank-correlating it with signed J
#: mixes "strong excitation" with "weak inhibition".
TRUTH_REFERENCES: dict[str, str] = {
    "coupling_abs": "|J|, strength of the true lateral coupling of either sign (zero diagonal)",
    "coupling_excitatory": "max(J, 0), the excitatory near-neighbour coupling (ties at 0 for inhibitory pairs)",
    "coupling_inhibitory": "max(-J, 0), the broader inhibitory surround (ties at 0 for excitatory pairs)",
    "norm_pool": "P, the true divisive-normalisation pool weights (rows sum to 1)",
    "coupling": "J, the signed true lateral coupling (compared only with signed maps: attention's coupling of "
                "the drives)",
}
#: The reference reported as ``truth_correlation`` for each kind of map: attention mixes other neurons into
#: the drive like lateral coupling does; pools are compared with the pools.
PRIMARY_TRUTH = {"attention": "coupling_abs", "pool": "norm_pool", "coupling": "coupling",
                 "context_attention": "coupling_abs", "context_coupling": "coupling"}
#: Rows x neurons handled at once when binning all pairs (bounds scratch memory to ~100 MB).
_PAIR_CHUNK = 2**23


@dataclass
class DistanceCurve:
    """Mean pair weight per cortical-distance bin with a bootstrap confidence band (over query neurons).

    edges_um (n_bins + 1,), centers_um, mean, ci_low, ci_high (n_bins,) and counts (n_bins,) pairs per bin;
    bins without pairs hold NaN.
    """

    edges_um: np.ndarray
    centers_um: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    counts: np.ndarray


@dataclass
class PairCorrelation:
    """Spearman rho between pair weights and another pair quantity over off-diagonal pairs.

    p_value: permutation p (neuron labels shuffled, two-sided, (k + 1) / (n + 1)); p_value_asymptotic:
    scipy's, which treats pairs as independent; n_pairs: pairs used (a random subset for large N).
    """

    rho: float
    p_value: float
    p_value_asymptotic: float
    n_pairs: int
    n_permutations: int


def _check_square(weights: np.ndarray, n: int | None = None) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or (n is not None and weights.shape[0] != n):
        raise ValueError(f"expected an (N, N) map for N={n}, got shape {weights.shape}")
    return weights


def distance_curve(weights: np.ndarray, positions_um: np.ndarray, edges_um: np.ndarray | None = None,
                   n_bins: int = 12, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> DistanceCurve:
    """Binned weight vs cortical distance, diagonal excluded.

    weights: (N, N) map (row i: what neuron i attends to / is normalised by); positions_um: (N, 3) um.
    edges_um: bin edges in um; default ``n_bins`` equal bins up to the 95th percentile of pair distances.
    The band resamples query neurons (rows) with replacement, ``n_boot`` times.
    """
    pos = np.asarray(positions_um, dtype=np.float64)
    weights = _check_square(weights, len(pos))
    n = len(pos)
    rng = np.random.default_rng(seed)
    if edges_um is None:
        i, j = _sample_pairs(n, 100_000, rng)
        edges_um = np.linspace(0.0, np.percentile(np.linalg.norm(pos[i] - pos[j], axis=1), 95), n_bins + 1)
    edges_um = np.asarray(edges_um, dtype=np.float64)
    nb = len(edges_um) - 1
    sums, counts = np.zeros((n, nb)), np.zeros((n, nb))
    rows = max(1, _PAIR_CHUNK // n)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        d = np.linalg.norm(pos[start:stop, None] - pos[None], axis=-1)
        b = np.digitize(d, edges_um) - 1
        valid = (b >= 0) & (b < nb)
        valid[np.arange(stop - start), np.arange(start, stop)] = False
        flat = (np.arange(stop - start)[:, None] * nb + b)[valid]
        sums[start:stop] = np.bincount(flat, weights[start:stop][valid], (stop - start) * nb).reshape(-1, nb)
        counts[start:stop] = np.bincount(flat, minlength=(stop - start) * nb).reshape(-1, nb)
    resample = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.sum(0) / counts.sum(0)
        boot = (resample @ sums) / (resample @ counts)
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(boot, [alpha, 1 - alpha], axis=0) if n_boot else (mean, mean)
    return DistanceCurve(edges_um, (edges_um[:-1] + edges_um[1:]) / 2, mean, low, high, counts.sum(0))


def _sample_pairs(n: int, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """All ordered off-diagonal pairs (i, j) when there are at most ``max_pairs``, else a random subset."""
    if n * (n - 1) <= max_pairs:
        i, j = np.nonzero(~np.eye(n, dtype=bool))
        return i, j
    i = rng.integers(0, n, max_pairs)
    j = (i + rng.integers(1, n, max_pairs)) % n  # uniform over j != i
    return i, j


def _permutation_spearman(weights: np.ndarray, pair_values: Callable[[np.ndarray, np.ndarray], np.ndarray],
                          n_permutations: int, max_pairs: int, seed: int) -> PairCorrelation:
    """Spearman rho between weights[i, j] and pair_values(i, j) over off-diagonal pairs; the null relabels
    neurons of the second quantity: pair_values(perm[i], perm[j])."""
    n = weights.shape[0]
    rng = np.random.default_rng(seed)
    i, j = _sample_pairs(n, max_pairs, rng)
    w_rank = average_ranks(weights[i, j])
    values = pair_values(i, j)
    if np.ptp(w_rank) == 0 or np.ptp(values) == 0:  # a constant side (an untrained uniform map) ranks nothing
        return PairCorrelation(float("nan"), float("nan"), float("nan"), len(i), n_permutations)
    rho, p_asym = stats.spearmanr(w_rank, values)
    exceed = 0
    for _ in range(n_permutations):
        perm = rng.permutation(n)
        null = np.corrcoef(w_rank, average_ranks(pair_values(perm[i], perm[j])))[0, 1]
        exceed += abs(null) >= abs(rho)
    p_perm = (exceed + 1) / (n_permutations + 1) if n_permutations else float("nan")
    return PairCorrelation(float(rho), float(p_perm), float(p_asym), len(i), n_permutations)


def distance_correlation(weights: np.ndarray, positions_um: np.ndarray, n_permutations: int = 1000,
                         max_pairs: int = 50_000, seed: int = 0) -> PairCorrelation:
    """Spearman rho between pair weight (N, N) and cortical distance (positions (N, 3) um), diagonal
    excluded; permutation null: neuron positions shuffled. A map that falls off with distance gives rho < 0."""
    pos = np.asarray(positions_um, dtype=np.float64)
    weights = _check_square(weights, len(pos))
    return _permutation_spearman(weights, lambda i, j: np.linalg.norm(pos[i] - pos[j], axis=1),
                                 n_permutations, max_pairs, seed)


def truth_correlation(weights: np.ndarray, truth: np.ndarray, n_permutations: int = 1000,
                      max_pairs: int = 50_000, seed: int = 0) -> PairCorrelation:
    """Spearman rho between a learned map and a true coupling/pool matrix (both (N, N), same neuron order;
    pass |J| for signed couplings), diagonal excluded; permutation null: the truth's neurons relabelled."""
    weights = _check_square(weights)
    truth = _check_square(truth, weights.shape[0])
    return _permutation_spearman(weights, lambda i, j: truth[i, j], n_permutations, max_pairs, seed)


def truth_references(coupling: np.ndarray | None = None,
                     norm_pool: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The ``TRUTH_REFERENCES`` matrices (each (N, N)) from the simulator's signed coupling J (N, N) and
    pools P (N, N), both in the maps' neuron order and orientation; absent inputs give no entries."""
    refs: dict[str, np.ndarray] = {}
    if coupling is not None:
        coupling = _check_square(coupling)
        refs["coupling_abs"] = np.abs(coupling)
        refs["coupling_excitatory"] = np.maximum(coupling, 0.0)
        refs["coupling_inhibitory"] = np.maximum(-coupling, 0.0)
    if norm_pool is not None:
        refs["norm_pool"] = _check_square(norm_pool)
    return refs


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _correlation_entry(corr: PairCorrelation) -> dict:
    """JSON form of a PairCorrelation (a constant map or reference gives rho null rather than NaN)."""
    return {key: _finite(value) if isinstance(value, float) else value for key, value in asdict(corr).items()}


def truth_comparisons(weights: np.ndarray, positions_um: np.ndarray, references: dict[str, np.ndarray],
                      n_permutations: int = 1000, max_pairs: int = 50_000, seed: int = 0) -> dict[str, dict]:
    """A learned map (N, N) against each truth matrix in ``references`` (name -> (N, N), same neuron order),
    diagonal excluded: the ``truth_correlation`` fields plus ``distance_only_rho``, Spearman rho of the
    reference with minus the cortical distance (positions (N, 3) um) over the same pairs, i.e. what any map
    that decreases with distance alone would score, and ``description``. References that are constant over
    the pairs (e.g. no inhibition planted) carry no rank information and are left out."""
    weights = _check_square(weights)
    pos = np.asarray(positions_um, dtype=np.float64)
    # The same pair sample as truth_correlation draws with this seed.
    i, j = _sample_pairs(weights.shape[0], max_pairs, np.random.default_rng(seed))
    minus_distance = -np.linalg.norm(pos[i] - pos[j], axis=1)
    out = {}
    for name, truth in references.items():
        values = _check_square(truth, weights.shape[0])[i, j]
        if np.ptp(values) == 0:
            continue
        corr = truth_correlation(weights, truth, n_permutations, max_pairs, seed)
        out[name] = {**_correlation_entry(corr),
                     "distance_only_rho": _finite(stats.spearmanr(minus_distance, values)[0]),
                     "description": TRUTH_REFERENCES.get(name, name)}
    return out


def _block_average(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """Average k x k blocks so that an (N, N) image has at most ``max_pixels`` per side."""
    k = max(1, math.ceil(image.shape[0] / max_pixels))
    n = image.shape[0] // k * k
    return image[:n, :n].reshape(n // k, k, n // k, k).mean(axis=(1, 3))


def _colour_scale(values: np.ndarray, signed: bool) -> dict:
    """imshow/scatter colour options: magma up to the 99th percentile, or for signed maps a diverging map
    symmetric about zero."""
    if signed:
        limit = float(np.nanpercentile(np.abs(values), 99)) or 1.0
        return {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}
    return {"cmap": "magma", "vmax": np.nanpercentile(values, 99)}


def plot_map(ax: plt.Axes, weights: np.ndarray, positions_um: np.ndarray, label: str = "attention",
             signed: bool = False) -> None:
    """The (N, N) map with both axes ordered along a Hilbert curve of cortical position, so local structure
    shows as a band along the diagonal (diagonal itself blanked; large N block-averaged to 512 px); ``signed``
    maps in a diverging colour scale."""
    order = spatial_order(torch.as_tensor(np.asarray(positions_um, dtype=np.float32))).numpy()
    image = np.array(weights, dtype=np.float64)[np.ix_(order, order)]
    np.fill_diagonal(image, np.nan)
    image = _block_average(np.nan_to_num(image, nan=np.nanmean(image)), 512)
    shown = ax.imshow(image, interpolation="nearest", **_colour_scale(image, signed))
    ax.figure.colorbar(shown, ax=ax, label=label, shrink=0.8)
    ax.set(title=f"{label} (neurons ordered by cortical position)", xlabel="key neuron j", ylabel="neuron i")


def plot_curve(ax: plt.Axes, curve: DistanceCurve, label: str = "attention") -> None:
    """Mean weight vs distance with its confidence band."""
    ax.fill_between(curve.centers_um, curve.ci_low, curve.ci_high, alpha=0.3, label="95% bootstrap CI")
    ax.plot(curve.centers_um, curve.mean, "o-", label=f"mean {label}")
    ax.set(xlabel="cortical distance (um)", ylabel=f"mean {label}", title=f"{label} vs distance")
    ax.legend(frameon=False)


def plot_sheet(ax: plt.Axes, weights: np.ndarray, positions_um: np.ndarray, neuron: int,
               label: str = "attention", signed: bool = False) -> None:
    """One neuron's row of the map drawn on the cortical sheet (x, y in um); the neuron is the star."""
    pos = np.asarray(positions_um)
    row = np.array(weights[neuron], dtype=np.float64)
    row[neuron] = np.nan
    colours = _colour_scale(row, signed) if signed else {"cmap": "viridis", "vmax": np.nanpercentile(row, 99)}
    shown = ax.scatter(pos[:, 0], pos[:, 1], c=row, s=8, **colours)
    ax.scatter(pos[neuron, 0], pos[neuron, 1], marker="*", s=200, c="red", edgecolors="k")
    ax.figure.colorbar(shown, ax=ax, label=f"{label} from neuron {neuron}", shrink=0.8)
    ax.set(xlabel="x (um)", ylabel="y (um)", title=f"{label} of one neuron on the cortical sheet", aspect="equal")


def summary_figure(weights: np.ndarray, positions_um: np.ndarray, curve: DistanceCurve,
                   path: str | os.PathLike, label: str = "attention", neuron: int | None = None,
                   signed: bool = False, baselines: dict | None = None) -> Path:
    """Save the panels (map by position, distance curve, sheet plot of ``neuron``, default the neuron closest
    to the centre of the field, and with planted-truth ``baselines`` their scores) as one PNG; ``signed`` maps
    in a diverging colour scale."""
    pos = np.asarray(positions_um, dtype=np.float64)
    if neuron is None:
        neuron = int(np.argmin(np.linalg.norm(pos[:, :2] - pos[:, :2].mean(0), axis=1)))
    scored = baselines is not None and "scores" in baselines
    fig, axes = plt.subplots(1, 4 if scored else 3, figsize=(23 if scored else 17, 5))
    plot_map(axes[0], weights, pos, label, signed)
    plot_curve(axes[1], curve, label)
    plot_sheet(axes[2], weights, pos, neuron, label, signed)
    if scored:
        plot_baselines(axes[3], baselines)
    return save_figure(fig, path)


def plot_baselines(ax: plt.Axes, baselines: dict) -> None:
    """AUC of coupled pairs and Spearman rho with the planted reference, the map beside each baseline, with
    the verdict line as the title."""
    names = list(baselines["scores"])
    x = np.arange(len(names))
    for offset, metric in ((-0.2, "auc"), (0.2, "spearman")):
        values = [baselines["scores"][n][metric] for n in names]
        values = [np.nan if v is None else v for v in values]
        ax.bar(x + offset, values, width=0.4, label=metric)
    ax.axhline(0.5, color="grey", lw=0.5, ls="--")
    ax.set_xticks(x, [n.replace("_", "\n") for n in names])
    verdict = baselines["verdict"].split(" (")[0]
    partial = baselines["partial_correlation"]
    p = "n/a" if partial["p_value"] is None else f"{partial['p_value']:.2g}"
    rho = "n/a" if partial["rho"] is None else f"{partial['rho']:.2f}"
    ax.set(title=f"{verdict}\npartial rho {rho} (p {p}) vs {baselines['reference']}", ylabel="score")
    ax.legend(frameon=False)


def _json_list(values: np.ndarray) -> list[float | None]:
    return [_finite(v) for v in np.asarray(values, dtype=np.float64)]


def distance_summary(weights: np.ndarray, positions_um: np.ndarray, label: str,
                     references: dict[str, np.ndarray] | None = None, untrained: np.ndarray | None = None,
                     n_permutations: int = 1000, n_boot: int = 1000, seed: int = 0,
                     planted: np.ndarray | None = None, signal_corr: np.ndarray | None = None,
                     signed: bool = False, planted_name: str = "J") -> tuple[dict, DistanceCurve]:
    """The JSON entry for one map (N, N) with positions (N, 3) um: ``spearman_rho``, ``p_value``
    (permutation), ``p_value_asymptotic``, ``distance_bins_um`` (bin centres), ``distance_bin_edges_um``,
    ``mean_<label>``, ``ci_low``, ``ci_high``, ``pair_counts``.

    With ``references`` (``truth_references``): ``truth_correlations`` {name: {rho, p_value, ...,
    distance_only_rho, description}} and ``truth_correlation``, the entry of the primary reference for this
    label (``PRIMARY_TRUTH``) with its name under ``reference``. With ``untrained`` (N, N), the same map of
    the model before training: ``untrained`` {spearman_rho, p_value, truth_correlation}.

    ``baselines`` and ``verdict`` (``interaction_scores``): with ``planted`` (N, N), the planted matrix the map
    should recover (J; ``signed`` maps against J itself), the map's AUC of coupled pairs and rank correlation
    beside a distance-only map, the signal-correlation map ``signal_corr`` (N, N), the untrained map, the
    partial correlation controlling for distance and signal correlation, and the line "beyond distance:
    yes / no"; without it (real data), only how much distance and signal correlation explain the map.
    """
    corr = distance_correlation(weights, positions_um, n_permutations=n_permutations, seed=seed)
    curve = distance_curve(weights, positions_um, n_boot=n_boot, seed=seed)
    entry = {
        "spearman_rho": _finite(corr.rho), "p_value": _finite(corr.p_value),
        "p_value_asymptotic": _finite(corr.p_value_asymptotic),
        "n_pairs": corr.n_pairs, "n_permutations": corr.n_permutations,
        "distance_bins_um": _json_list(curve.centers_um), "distance_bin_edges_um": _json_list(curve.edges_um),
        f"mean_{label}": _json_list(curve.mean), "ci_low": _json_list(curve.ci_low),
        "ci_high": _json_list(curve.ci_high), "pair_counts": [int(c) for c in curve.counts],
    }
    primary = _primary_reference(label, references or {})
    if references:
        comparisons = truth_comparisons(weights, positions_um, references, n_permutations, seed=seed)
        entry["truth_correlations"] = comparisons
        if primary in comparisons:
            entry["truth_correlation"] = {**comparisons[primary], "reference": primary}
    if untrained is not None:
        before = distance_correlation(untrained, positions_um, n_permutations=n_permutations, seed=seed)
        entry["untrained"] = {"spearman_rho": _finite(before.rho), "p_value": _finite(before.p_value)}
        if primary is not None:
            truth = truth_comparisons(untrained, positions_um, {primary: references[primary]}, n_permutations,
                                      seed=seed)
            if primary in truth:
                entry["untrained"]["truth_correlation"] = {**truth[primary], "reference": primary}
    if planted is not None:
        entry["baselines"] = interaction_scores(weights, planted, positions_um, signed=signed,
                                                signal_corr=signal_corr, untrained=untrained,
                                                n_permutations=n_permutations, seed=seed, truth_name=planted_name)
    else:
        entry["baselines"] = descriptive_scores(weights, positions_um, signal_corr, seed)
    entry["verdict"] = entry["baselines"]["verdict"]
    return entry, curve


def _primary_reference(label: str, references: dict[str, np.ndarray]) -> str | None:
    """The reference reported as ``truth_correlation``: ``PRIMARY_TRUTH[label]`` where given, else the first
    one available (a caller with only one kind of truth still gets a headline number)."""
    preferred = PRIMARY_TRUTH.get(label)
    if preferred in references:
        return preferred
    return next(iter(references), None)


def _update_json(path: Path, name: str, entry: dict) -> None:
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary[name] = entry
    write_json(path, summary, allow_nan=False)


#: The maps ``write_interaction_outputs`` knows: name -> (JSON key, None for the recording's top level; label in
#: keys and figures; signed; the planted matrix it is scored against: "coupling" J or "pools" P).
MAP_KINDS: dict[str, tuple[str | None, str, bool, str]] = {
    "attention": (None, "attention", False, "coupling"),
    "coupling": ("coupling_vs_distance", "coupling", True, "coupling"),
    "pools": ("pools_vs_distance", "pool", False, "pools"),
    "context_attention": ("context_attention_vs_distance", "context_attention", False, "coupling"),
    "context_coupling": ("context_coupling_vs_distance", "context_coupling", True, "coupling"),
}


def map_summaries(entry: dict) -> dict[str, dict]:
    """The per-map summaries of one recording's entry of ``attention_vs_distance.json``, by ``MAP_KINDS`` name
    in that order: the attention map's keys are the entry's top level (present when it has a ``verdict``),
    the other maps' are under their own key."""
    return {kind: entry if key is None else entry[key] for kind, (key, _, _, _) in MAP_KINDS.items()
            if (("verdict" in entry) if key is None else key in entry)}


def write_interaction_outputs(out_dir: str | os.PathLike, name: str, unit_id: np.ndarray, positions_um: np.ndarray,
                              attention: np.ndarray | None = None, attention_per_head: np.ndarray | None = None,
                              pools: np.ndarray | None = None, coupling: np.ndarray | None = None,
                              truth: np.ndarray | None = None,
                              truth_pools: np.ndarray | None = None, untrained_attention: np.ndarray | None = None,
                              untrained_pools: np.ndarray | None = None, n_permutations: int = 1000,
                              n_boot: int = 1000, seed: int = 0, *, context_attention: np.ndarray | None = None,
                              context_coupling: np.ndarray | None = None,
                              untrained_coupling: np.ndarray | None = None,
                              untrained_context_attention: np.ndarray | None = None,
                              untrained_context_coupling: np.ndarray | None = None,
                              signal_correlation: np.ndarray | None = None, planted: dict | None = None) -> dict:
    """Write ``OUT/NAME.zarr``, the recording's entry in ``OUT/attention_vs_distance.json`` (merged with
    other recordings already there) and a figure ``OUT/NAME_<map>.png`` per map.

    All maps are in the order of ``unit_id`` (N,), both axes; positions_um (N, 3) um. attention (N, N),
    averaged over heads; attention_per_head (H, N, N); pools (N, N) normalisation pools; coupling (N, N) the
    signed coupling of drives of attention with drive values (``NeuronAttention.drive_coupling``), compared
    with the signed truth J under ``coupling_vs_distance`` and drawn in ``OUT/NAME_coupling.png``;
    context_attention (N, N) and context_coupling (N, N) the maps of the layer that conditions on recorded
    activity (``ContextAttention``), under ``context_attention_vs_distance`` and
    ``context_coupling_vs_distance``.
    Optional simulator truth for the recovery test: truth (N, N), the signed lateral coupling J (row i
    receives from column j), and truth_pools (N, N), the normalisation pools; each map is compared with all
    ``truth_references`` of them (``distance_summary``). untrained_* (N, N): the same maps of the model
    before training, reported under ``untrained`` and as a baseline, and stored in the zarr.
    signal_correlation (N, N): tuning similarity from the model's predicted responses, the baseline that the
    interaction scores control for (stored as ``signal_correlation``). planted: what the simulator planted
    (its truth's ``coupling_structure``), copied to the entry as ``planted_coupling``.
    Every map gets ``baselines`` and a ``verdict`` line (``distance_summary``). Returns the JSON entry.
    """
    maps = {"attention": attention, "coupling": coupling, "pools": pools, "context_attention": context_attention,
            "context_coupling": context_coupling}
    before = {"attention": untrained_attention, "coupling": untrained_coupling, "pools": untrained_pools,
              "context_attention": untrained_context_attention, "context_coupling": untrained_context_coupling}
    if all(m is None for m in maps.values()):
        raise ValueError(f"{name}: nothing to write (no attention map, coupling, pools or context maps)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pos = np.asarray(positions_um, dtype=np.float64)
    unit_id = np.asarray(unit_id)
    references = truth_references(truth, truth_pools)
    targets = {"coupling": None if truth is None else _check_square(truth),
               "pools": None if truth_pools is None else _check_square(truth_pools)}
    coords = {"unit_id": ("neuron", unit_id), "key_unit_id": ("neuron_key", unit_id),
              **{axis: ("neuron", pos[:, d]) for d, axis in enumerate(("x_um", "y_um", "z_um"))}}
    data: dict[str, tuple] = {}
    entry: dict = {"n_neurons": len(unit_id)}
    if planted is not None:
        entry["planted_coupling"] = planted
    pair = ("neuron", "neuron_key")
    if attention_per_head is not None:
        data["attention_per_head"] = (("head", "neuron", "neuron_key"),
                                      np.asarray(attention_per_head, dtype=np.float32))
    if signal_correlation is not None:
        data["signal_correlation"] = (pair, np.asarray(signal_correlation, dtype=np.float32))
    for kind, weights in maps.items():
        if weights is None:
            continue
        key, label, signed, target = MAP_KINDS[kind]
        data[kind] = (pair, np.asarray(weights, dtype=np.float32))
        if before[kind] is not None:
            data[f"untrained_{kind}"] = (pair, np.asarray(before[kind], dtype=np.float32))
        # Signed maps are compared with signed J only (module docstring).
        refs = references if not signed else (None if truth is None else {"coupling": targets["coupling"]})
        summary, curve = distance_summary(weights, pos, label, refs, before[kind], n_permutations, n_boot, seed,
                                          planted=targets[target], signal_corr=signal_correlation, signed=signed,
                                          planted_name="J" if target == "coupling" else "P")
        if key is None:
            entry.update(summary)
        else:
            entry[key] = summary
        summary_figure(weights, pos, curve, out / f"{name}_{kind}.png", label, signed=signed,
                       baselines=summary["baselines"])
    attrs = {"recording": name, "description": "row i = how much neuron i attends to / is normalised by "
                                               "neuron j; both axes in the order of unit_id"}
    write_zarr(xr.Dataset(data, coords=coords, attrs=attrs), out / f"{name}.zarr")
    _update_json(out / SUMMARY_FILE, name, entry)
    return entry
