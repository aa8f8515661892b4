"""What every readout returns and shares."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ReadoutOutput(NamedTuple):
    """drive: (B, N) linear prediction before the output nonlinearity; features: (B, N, C) core features
    at each neuron's readout location (what interaction layers look at)."""

    drive: torch.Tensor
    features: torch.Tensor


def normalized_coordinates(coords_um: torch.Tensor) -> torch.Tensor:
    """Z-score cortical coordinates (N, 3) per axis within a recording; axes without spread (e.g. one
    imaging plane) become 0 rather than NaN."""
    std = coords_um.std(dim=0, keepdim=True)
    return (coords_um - coords_um.mean(dim=0, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
