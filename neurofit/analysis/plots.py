"""Figures for a fitted run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from neurofit.io import save_figure

if TYPE_CHECKING:
    from neurofit.evaluation import TierPrediction
    from neurofit.metrics import NeuronScores


def evaluation_figure(predictions: dict[str, TierPrediction], scores: dict[str, NeuronScores],
                      path: str | os.PathLike) -> Path:
    """Per recording: predicted vs recorded trial-averaged responses of the best-predicted neurons, and
    the per-neuron single-trial correlation against the oracle (the repeat-reliability ceiling)."""
    from neurofit.metrics import group_means

    n = len(predictions)
    fig, axes = plt.subplots(n, 2, figsize=(11, 4 * n), squeeze=False, constrained_layout=True)
    for row, (name, p) in enumerate(predictions.items()):
        s = scores[name]
        best = np.argsort(s.single_trial_correlation)[::-1][:3]
        ax = axes[row, 0]
        mean_resp, mean_pred = group_means(p.resp, p.group), group_means(p.pred, p.group)
        order = np.arange(min(60, len(mean_resp)))
        for k, i in enumerate(best):
            ax.plot(order, mean_resp[order, i] + 3 * k * mean_resp[:, i].std(), color=f"C{k}", lw=1.2,
                    label=f"neuron {i} recorded")
            ax.plot(order, mean_pred[order, i] + 3 * k * mean_resp[:, i].std(), color=f"C{k}", lw=1.2, ls="--")
        ax.set(title=f"{name}: trial-averaged responses (solid) vs prediction (dashed)",
               xlabel="test stimulus", ylabel="response (offset per neuron)")
        ax = axes[row, 1]
        ax.scatter(s.oracle_correlation, s.single_trial_correlation, s=6, alpha=0.6)
        lim = [min(0, np.nanmin(s.single_trial_correlation)), max(1e-3, np.nanmax(s.oracle_correlation))]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set(title=f"{name}: mean r = {np.mean(s.single_trial_correlation):.3f}",
               xlabel="oracle correlation", ylabel="model single-trial correlation")
        inset = ax.inset_axes([0.62, 0.08, 0.35, 0.3])
        inset.hist(s.single_trial_correlation, bins=30, color="C0")
        inset.set_title("per-neuron r", fontsize=8)
        inset.tick_params(labelsize=6)
    return save_figure(fig, path)
