"""Losses on normalised responses."""

from __future__ import annotations

import torch

_EPS = 1e-8


def poisson_loss(rate: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Poisson negative log-likelihood (without the target-only term): rate - target * log(rate).

    rate, target: (B, [T,] N) non-negative; mask: (B, [T]) with 1 where responses were recorded (padded
    frames, burn-in frames and trials without responses are 0). NaN targets under a 0 mask are ignored."""
    if mask is None:
        return (rate - target * torch.log(rate + _EPS)).mean()
    m = mask.to(rate.dtype).unsqueeze(-1)
    target = torch.where(m > 0, target, torch.zeros_like(target))
    nll = (rate - target * torch.log(rate + _EPS)) * m
    return nll.sum() / (m.sum() * rate.shape[-1]).clamp_min(1.0)
