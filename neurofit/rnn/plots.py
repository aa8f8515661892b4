"""Figures of a data-constrained RNN run: learning curve, data vs model rasters, CURBD current grid and
J block norms. Each function writes one PNG and returns its path."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from neurofit.io import save_figure
from neurofit.rnn.history import FitHistory


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_fit_curve(history: FitHistory, path: str | os.PathLike) -> Path:
    """pVar and chi2 per run/epoch (and the bptt loss where recorded)."""
    panels = 3 if history.loss else 2
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3))
    axes[0].plot(history.step, history.pvar, marker=".")
    axes[0].set(xlabel="run" if history.method == "rls" else "epoch", ylabel="pVar", title=history.method)
    axes[1].semilogy(history.step, np.maximum(history.chi2, 1e-12), marker=".")
    axes[1].set(xlabel=axes[0].get_xlabel(), ylabel="chi2")
    if history.loss:
        axes[2].semilogy(history.step, history.loss, marker=".")
        axes[2].set(xlabel="epoch", ylabel="training loss")
    return _save(fig, path)


def plot_rasters(data: np.ndarray, model: np.ndarray, regions: np.ndarray, names: list[str], dt: float,
                 path: str | os.PathLike) -> Path:
    """Data and model rates of the first trial, one row per region.

    Args:
        data, model: (trial, N, time) rates; regions: (N,) labels; names: region order; dt: seconds.
    """
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.2 * len(names)), squeeze=False)
    duration = data.shape[-1] * dt
    for row, name in enumerate(names):
        idx = regions == name
        lim = float(np.abs(data[0, idx]).max()) or 1.0
        for col, (label, values) in enumerate((("data", data), ("model", model))):
            ax = axes[row, col]
            ax.imshow(values[0, idx], aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                      extent=(0.0, duration, int(idx.sum()), 0))
            ax.set(title=f"{name}: {label}", ylabel="unit", xlabel="time (s)")
    return _save(fig, path)


def plot_current_grid(currents: xr.Dataset, path: str | os.PathLike) -> Path:
    """M x M(+inputs) grid: mean current into each target region from each source over time (first trial),
    excitatory, inhibitory and total."""
    targets, sources = list(currents["target_region"].values), list(currents["source"].values)
    fig, axes = plt.subplots(len(targets), len(sources), figsize=(2.6 * len(sources), 2.0 * len(targets)),
                             squeeze=False, sharex=True)
    time = currents["time"].values
    for a, target in enumerate(targets):
        for b, source in enumerate(sources):
            cur = currents["current"].sel(target_region=target, source=source).isel(trial=0)
            ax = axes[a, b]
            ax.plot(time, cur.sel(sign="excitatory"), color="tab:red", lw=0.8, label="exc")
            ax.plot(time, cur.sel(sign="inhibitory"), color="tab:blue", lw=0.8, label="inh")
            ax.plot(time, cur.sum("sign"), color="k", lw=1.0, label="total")
            ax.set_title(f"{source} -> {target}", fontsize=8)
    axes[0, 0].legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    return _save(fig, path)


def plot_block_norms(currents: xr.Dataset, path: str | os.PathLike) -> Path:
    """Heat map of ||J_ab||_F, target regions in rows, source regions in columns."""
    norms = currents["block_norm"]
    fig, ax = plt.subplots(figsize=(1.2 * norms.shape[1] + 2, 1.0 * norms.shape[0] + 1.5))
    im = ax.imshow(norms.values, cmap="viridis")
    ax.set_xticks(range(norms.shape[1]), list(norms["source_region"].values))
    ax.set_yticks(range(norms.shape[0]), list(norms["target_region"].values))
    ax.set(xlabel="source region", ylabel="target region", title="||J block||_F")
    for (i, j), value in np.ndenumerate(norms.values):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def plot_necessity(currents: xr.Dataset, path: str | os.PathLike) -> Path:
    """The M x M grid of the necessity test: target regions in rows, source regions in columns; each
    inter-region cell coloured by its evidence (the paired t: held-out pVar loss / noise; the critical t is
    marked in the colour bar) and labelled with its verdict, the loss +- noise and the fitted rms current +- its
    spread over initialisations."""
    evidence = (currents["loss_mean"] / currents["loss_noise"]).values
    names = list(currents["target_region"].values)
    threshold = float(currents.attrs["necessity_threshold"])
    fig, ax = plt.subplots(figsize=(2.2 * len(names) + 2, 1.8 * len(names) + 1.5))
    bound = max(2 * threshold, float(np.nanmax(np.abs(evidence))))
    im = ax.imshow(np.ma.masked_invalid(evidence), cmap="PuOr_r", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="source region", ylabel="target region", title="necessity of inter-region blocks")
    for (a, b), value in np.ndenumerate(evidence):
        if a == b:
            ax.text(b, a, "within\nregion", ha="center", va="center", fontsize=7, color="0.5")
            continue
        cell = {k: float(currents[k].values[a, b]) for k in ("loss_mean", "loss_noise", "current_rms_mean",
                                                              "current_rms_spread")}
        label = (f"{currents['verdict'].values[a, b]}\nloss {cell['loss_mean']:+.4f} +- {cell['loss_noise']:.4f}"
                 f"\nrms {cell['current_rms_mean']:.3g} +- {cell['current_rms_spread']:.2g}")
        ax.text(b, a, label,
                ha="center", va="center", fontsize=6, fontweight="bold" if value > threshold else "normal")
    bar = fig.colorbar(im, ax=ax, label="paired t: held-out pVar loss / noise")
    bar.ax.axhline(threshold, color="k", lw=1.5)
    return _save(fig, path)
