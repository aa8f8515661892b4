"""Factorized readout: a spatial mask times feature weights per neuron (Klindt et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn

from neurofit.models.readouts.base import ReadoutOutput


class FactorizedReadout(nn.Module):
    """drive_n = sum_{c,h,w} x[c,h,w] * mask_n[h,w] * embedding_n[c] + bias_n.

    With an identity core and one input channel this is a per-neuron linear filter on pixels: the LN
    baseline. Args: n_neurons N, in_channels C, height/width of the feature map.
    Forward: (B, C, H, W), shift ignored -> ReadoutOutput((B, N), (B, N, C)).
    """

    def __init__(self, n_neurons: int, in_channels: int, height: int, width: int) -> None:
        super().__init__()
        self.mask = nn.Parameter(torch.randn(n_neurons, height * width) * 0.01)
        self.embedding = nn.Parameter(torch.ones(n_neurons, in_channels) / in_channels)
        self.bias = nn.Parameter(torch.zeros(n_neurons))

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> ReadoutOutput:
        features = torch.einsum("bcp,np->bnc", x.flatten(2), self.mask)  # (B, N, C)
        drive = (features * self.embedding).sum(-1) + self.bias
        return ReadoutOutput(drive, features)

    def regularizer(self) -> torch.Tensor:
        """L1 on the spatial masks (sparse, local filters)."""
        return self.mask.abs().mean()
