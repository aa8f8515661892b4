"""Figures of ``neurofit insilico``: MEIs on a grid ordered along the cortical sheet, tuning panels of
example neurons, the cortical map of preferred orientation and, on simulated data, in-silico numbers against
the planted ones (trained and untrained)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import NullFormatter

from neurofit.analysis.insilico.experiment import Analysis
from neurofit.analysis.insilico.truth import Truth
from neurofit.analysis.insilico.tuning import Tuning
from neurofit.io import save_figure
from neurofit.models.interactions.attention import spatial_order

#: Most MEIs drawn on the grid (spread evenly along the cortical order).
GRID_NEURONS = 48


def cortical_order(positions_um: np.ndarray) -> np.ndarray:
    """Neuron order along a Hilbert curve through the cortical (x, y) positions (N, 3) um."""
    return spatial_order(torch.as_tensor(np.asarray(positions_um, dtype=np.float32))).numpy()


def _show(ax: plt.Axes, image: np.ndarray, title: str | None = None) -> None:
    limit = float(np.abs(image).max()) or 1.0
    ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def mei_grid(analysis: Analysis, mean_luminance: float, positions_um: np.ndarray, unit_id: np.ndarray,
             correlation: np.ndarray | None, path: Path) -> None:
    """The best MEI (contrast) of up to ``GRID_NEURONS`` neurons in cortical order, titled with the unit id
    and, with a truth, the MEI's correlation with the planted filter."""
    order = cortical_order(positions_um)
    shown = order[np.unique(np.linspace(0, len(order) - 1, min(GRID_NEURONS, len(order))).round().astype(int))]
    cols = 8
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.1), squeeze=False)
    best = analysis.meis.best() - mean_luminance
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    for ax, k in zip(axes.ravel(), shown, strict=False):
        title = f"{unit_id[k]}" + ("" if correlation is None else f"  r={correlation[k]:.2f}")
        _show(ax, best[k], title)
    fig.suptitle("MEIs (contrast), neurons ordered along the cortical sheet (Hilbert curve)", fontsize=9)
    save_figure(fig, path)


def tuning_panels(analysis: Analysis, table: dict[str, np.ndarray], unit_id: np.ndarray, examples: np.ndarray,
                  mean_luminance: float, path: Path) -> None:
    """Per example neuron (rows): MEI, noise STA, orientation tuning (full field at the preferred spatial
    frequency, and windowed), spatial-frequency tuning and size tuning, blank-subtracted F0."""
    tuning = analysis.tuning
    fig, axes = plt.subplots(len(examples), 5, figsize=(14, 2.2 * len(examples)), squeeze=False)
    degrees = np.degrees(tuning.grid_orientation_rad)
    for row, k in zip(axes, examples, strict=True):
        blank = tuning.blank[k]
        _show(row[0], analysis.meis.best()[k] - mean_luminance, f"unit {unit_id[k]}: MEI")
        _show(row[1], analysis.noise.sta[k], "noise STA")
        full = tuning.fullfield_f0[k] - blank  # (O, F, T)
        o, f, t = np.unravel_index(full.argmax(), full.shape)
        row[2].plot(degrees, full[:, f, t], "o-", ms=3, label="full field")
        row[2].plot(degrees, tuning.windowed_f0[k] - blank, "s-", ms=3, label="windowed")
        row[2].set(xlabel="orientation (deg)", ylabel="F0 - blank",
                   title=f"F1/F0 {table['f1_f0'][k]:.2f} (full field {table['fullfield_f1_f0'][k]:.2f})")
        row[2].legend(fontsize=6, frameon=False)
        row[3].semilogx(tuning.grid_sf_cpp, full[o, :, t], "o-", ms=3)
        row[3].set(xlabel="spatial frequency (cycles/px)", title=f"preferred {table['preferred_sf_cpp'][k]:.3f}")
        row[4].semilogx(tuning.grid_size_px, tuning.size_f0[k] - blank, "o-", ms=3)
        row[4].set(xlabel="window diameter (px)", title=f"SSI {table['surround_suppression_index'][k]:.2f}")
        for ax in row[2:]:
            ax.axhline(0, color="0.7", lw=0.5)
            ax.tick_params(labelsize=6)
            ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    save_figure(fig, path)


def orientation_map(positions_um: np.ndarray, table: dict[str, np.ndarray], truth: Truth | None,
                    path: Path) -> None:
    """Preferred orientation (windowed gratings) on the cortical sheet, marker size by selectivity; beside
    it the planted orientations, when known."""
    panels = [("in silico", table["preferred_orientation_rad"])]
    if truth is not None:
        panels.append(("planted", truth.orientation_rad))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    size = 8 + 40 * np.nan_to_num(table["orientation_selectivity"])
    for ax, (label, values) in zip(axes[0], panels, strict=True):
        dots = ax.scatter(positions_um[:, 0], positions_um[:, 1], c=np.degrees(values), cmap="hsv", vmin=0,
                          vmax=180, s=size if label == "in silico" else 20, edgecolors="none")
        ax.set(xlabel="cortical x (um)", ylabel="cortical y (um)", title=f"preferred orientation, {label}",
               aspect="equal")
    fig.colorbar(dots, ax=axes[0].tolist(), label="orientation (deg)", shrink=0.8)
    save_figure(fig, path)


def truth_panels(tables: dict[str, dict[str, np.ndarray]], truth: Truth, planted: Tuning | None,
                 path: Path) -> None:
    """In-silico against planted, each model in its own colour: MEI-filter correlation, orientation error,
    F1/F0 by planted cell type, spatial frequency, and the suppression index against the planted model's
    (without one: against the planted normalisation strength)."""
    fig, axes = plt.subplots(1, 5, figsize=(20, 3.8))
    colours = {"trained": "C0", "untrained": "C7"}
    reference, reference_label = ((planted.ssi, "planted model's suppression index") if planted is not None
                                  else (truth.pool_strength, "planted normalisation strength 1/(1+sigma^n)"))
    for label, table in tables.items():
        c = colours.get(label, "C1")
        axes[0].hist(table["mei_filter_correlation"], bins=np.linspace(0, 1, 26), alpha=0.6, color=c,
                     label=label)
        axes[1].hist(table["orientation_error_deg"], bins=np.linspace(0, 90, 19), alpha=0.6, color=c,
                     label=label)
        for simple, marker in ((True, "o"), (False, "x")):
            ratio = table["f1_f0"][truth.simple == simple]
            axes[2].scatter(np.full(len(ratio), 0 if simple else 1) + (0.15 if label == "untrained" else -0.15)
                            + 0.05 * np.random.default_rng(0).standard_normal(len(ratio)), ratio, s=6, color=c,
                            marker=marker, label=f"{label}, {'simple' if simple else 'complex'}")
        axes[3].scatter(truth.sf_cpp, table["preferred_sf_cpp"], s=6, color=c, label=label)
        axes[4].scatter(reference, table["surround_suppression_index"], s=6, color=c, label=label)
    axes[0].set(xlabel="MEI vs planted filter (best phase r)", ylabel="neurons")
    axes[1].set(xlabel="orientation error (deg)")
    axes[2].axhline(1, color="k", lw=0.5)
    axes[2].set(xticks=[0, 1], xticklabels=["planted simple", "planted complex"], ylabel="F1/F0", yscale="log",
                ylim=(1e-2, 1e2))
    lims = [min(truth.sf_cpp.min(), 0.02), max(truth.sf_cpp.max(), 0.4)]
    axes[3].plot(lims, lims, "k", lw=0.5)
    axes[3].set(xscale="log", yscale="log", xlabel="planted SF (cycles/px)", ylabel="in-silico SF")
    axes[4].set(xlabel=reference_label, ylabel="suppression index")
    for ax in axes:
        ax.legend(fontsize=6, frameon=False)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    save_figure(fig, path)
