"""Gaussian readout: each neuron reads the core's feature vector at one learned screen position."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurofit.models.readouts.base import ReadoutOutput, normalized_coordinates


class GaussianReadout(nn.Module):
    """Per-neuron position ``mu`` (in grid units, [-1, 1]^2) and feature weights (the neuron's embedding).

    During training the sampling position is drawn from N(mu, sigma^2) (Lurz et al. 2021), which spreads the
    gradient over the feature map early on; at evaluation the mean is used. Positions are either free
    parameters or predicted from cortical coordinates by a small network (``position="cortical"``), which
    ties retinotopy to anatomy and generalises to held-out neurons.

    Args:
        n_neurons: N. in_channels: C of the core's feature map.
        coords_um: (N, 3) cortical coordinates in micrometres (needed for ``position="cortical"``).
        position: "learned" or "cortical".
        init_sigma: initial std of the sampling position, grid units.
        hidden: hidden width of the position network.
        affine_init: initial gain of the affine cortex -> screen term (z-scored coordinates to grid units);
            0 starts from the network alone.
    Forward: features (B, C, H, W), shift (B, 2) or None (grid units) -> ReadoutOutput((B, N), (B, N, C)).
    """

    def __init__(self, n_neurons: int, in_channels: int, coords_um: torch.Tensor | None = None,
                 position: str = "cortical", init_sigma: float = 0.2, hidden: int = 32,
                 affine_init: float = 0.0) -> None:
        super().__init__()
        self.n_neurons = n_neurons
        self.position = position
        if position == "cortical":
            if coords_um is None:
                raise ValueError("position='cortical' needs neuron coordinates")
            self.register_buffer("coords", normalized_coordinates(coords_um.float()))
            self.position_net = nn.Sequential(
                nn.Linear(3, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, 2))
            # Retinotopy is close to affine: an affine term, initialised to spread the neurons' positions over
            # the screen as they are spread over cortex, starts every neuron at a distinct location (the MLP
            # alone starts them all near the centre, which costs the first epochs).
            self.affine = nn.Linear(3, 2)
            with torch.no_grad():
                self.affine.weight.copy_(torch.tensor([[affine_init, 0.0, 0.0], [0.0, affine_init, 0.0]]))
                self.affine.bias.zero_()
        else:
            self.mu = nn.Parameter(torch.empty(n_neurons, 2).uniform_(-0.5, 0.5))
        self.log_sigma = nn.Parameter(torch.full((n_neurons, 2), float(torch.log(torch.tensor(init_sigma)))))
        self.embedding = nn.Parameter(torch.randn(n_neurons, in_channels) / in_channels**0.5)
        self.bias = nn.Parameter(torch.zeros(n_neurons))

    def positions(self) -> torch.Tensor:
        """Mean readout positions (N, 2), grid units (x, y) in [-1, 1]."""
        if self.position == "cortical":
            return torch.tanh(self.affine(self.coords) + self.position_net(self.coords))
        return self.mu.clamp(-1, 1)

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> ReadoutOutput:
        b = x.shape[0]
        mu = self.positions().unsqueeze(0).expand(b, -1, -1)
        if self.training:
            mu = mu + torch.randn_like(mu) * self.log_sigma.exp()
        if shift is not None:
            mu = mu + shift[:, None, :]
        grid = mu.clamp(-1, 1).unsqueeze(2)  # (B, N, 1, 2)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
        features = sampled.squeeze(-1).transpose(1, 2)  # (B, N, C)
        drive = (features * self.embedding).sum(-1) + self.bias
        return ReadoutOutput(drive, features)

    def regularizer(self) -> torch.Tensor:
        """L1 on the feature weights: each neuron should read few feature channels."""
        return self.embedding.abs().mean()
