"""Ridge regression with the penalty chosen by generalised cross-validation (GCV), batched over feature sets and
targets.

Readouts on a trained core start from it: per neuron on the features it reads (``ridge_weights``), and, to find
where on the screen a neuron reads best, per screen position for all neurons at once (``rf_mapping``'s
position search). Both work in the eigenbasis of each feature set's covariance, so every penalty of the grid
costs only a rescaling.
"""

from __future__ import annotations

import torch

#: Ridge penalties tried, in units of the mean eigenvalue of a feature set's covariance.
RIDGE_GRID = torch.logspace(-4, 1, 11)


def spectrum(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (B, C) (clamped at 0) and eigenvectors (B, C, C) of x^T x for centred features x (B, T, C),
    in float64."""
    eig, vec = torch.linalg.eigh((x.transpose(1, 2) @ x).double())
    return eig.clamp_min(0), vec


def gcv_errors(eig: torch.Tensor, proj: torch.Tensor, yss: torch.Tensor, n_samples: int,
               grid: torch.Tensor = RIDGE_GRID) -> tuple[torch.Tensor, torch.Tensor]:
    """GCV error of the ridge fit of every target on every feature set, for every penalty of ``grid``.

    Args:
        eig: (B, C) eigenvalues of each feature set's x^T x (centred features).
        proj: (B, C, M) the eigenvectors' projections of x^T y for M centred targets y.
        yss: (B, M) or (1, M) sums of squares of the centred targets.
        n_samples: T, the samples behind x^T x (one degree of freedom goes to the intercept).
    Returns:
        the GCV errors RSS / (T - dof - 1)^2, (K, B, M), and the penalties, (K, B, 1).
    """
    eig, proj = eig.double(), proj.double()
    lam = grid.double()[:, None, None] * eig.mean(1)[None, :, None]  # (K, B, 1)
    # Each direction's share of the fit, (u_j^T y)^2 = proj_j^2 / eig_j; directions without variance hold none.
    energy = torch.where(eig[..., None] > 0, proj**2 / eig[..., None].clamp_min(1e-300), 0.0)  # (B, C, M)
    shrink = (lam[..., None] / (eig[None, :, :, None] + lam[..., None])) ** 2  # (K, B, C, 1)
    rss = yss.double() - energy.sum(1) + (shrink * energy).sum(2)  # (K, B, M)
    dof = (eig[None] / (eig[None] + lam)).sum(-1, keepdim=True)  # (K, B, 1)
    return rss.clamp_min(0) / (n_samples - dof - 1).clamp_min(1) ** 2, lam


def ridge_weights(features: torch.Tensor, target: torch.Tensor,
                  grid: torch.Tensor = RIDGE_GRID) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-neuron ridge regression of ``target`` (T, N) on its own ``features`` (T, N, C), with an unpenalised
    intercept; each neuron's penalty is the one of ``grid`` (x its mean feature-covariance eigenvalue) with the
    lowest GCV error. Returns the weights (N, C), the intercepts (N,) and the chosen relative penalties (N,)."""
    x = features.double().transpose(0, 1)  # (N, T, C)
    y = target.double().T  # (N, T)
    x_mean, y_mean = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    xc, yc = x - x_mean, y - y_mean
    eig, vec = spectrum(xc)
    proj = vec.transpose(1, 2) @ (xc.transpose(1, 2) @ yc[..., None])  # (N, C, 1)
    errors, lam = gcv_errors(eig, proj, (yc**2).sum(1, keepdim=True), x.shape[1], grid)
    best = errors[..., 0].argmin(0)  # (N,)
    neurons = torch.arange(len(best))
    coef = vec @ (proj[..., 0] / (eig + lam[best, neurons]))[..., None]  # (N, C, 1)
    weights = coef[..., 0]
    intercept = y_mean[:, 0] - (x_mean[:, 0] * weights).sum(-1)
    return weights.float(), intercept.float(), grid[best]
