"""Gaussian readout: each neuron reads the core's feature vector at one learned screen position."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurofit.models.readouts.base import ReadoutOutput, normalized_coordinates

#: Grid position (|x|, |y|) beyond which ``position_penalty`` pulls a neuron back. For cortical positions the
#: bound applies before the tanh, at EDGE = atanh(0.95), where tanh still passes 10% of the gradient: far past
#: it tanh saturates, and a neuron whose cortical map drifted there never came back (116 neurons of one mouse
#: in a 3D-conv video fit). Learned positions are clamped to the screen, with no gradient outside it.
BOUND = 0.95
EDGE = math.atanh(BOUND)


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
        scatter: with ``position="cortical"``, add a learned per-neuron offset (N, 2) to the predicted position.
            Receptive fields scatter around the retinotopic map by a pixel or two, which a smooth function of
            cortical position cannot express; the offset starts at zero, so the map stays the prior.
        image_shape: (H, W) of the stimulus, pixels (needed to start positions from RF centres in pixels).
        position_init: None, or "rf_map": before training, start positions at RF centres estimated from the
            training data (``init_positions``, called by the training code).
        feature_init: None, or "ridge": on a core transferred from another run (``training.init_from``) and
            static images, start the feature weights and bias at a ridge regression of the training responses
            on the core's features at the started positions (``neurofit.training.readout_init``); ignored on a
            fresh core, whose features mean nothing yet.
        edge_penalty: weight of ``position_penalty``, which keeps positions where their gradient lives
            (pre-tanh cortical positions within +-EDGE, learned ones within +-BOUND); 0 disables it.
    Forward: features (B, C, H, W), shift (B, 2) or None (grid units) -> ReadoutOutput((B, N), (B, N, C)).
    """

    def __init__(self, n_neurons: int, in_channels: int, coords_um: torch.Tensor | None = None,
                 position: str = "cortical", init_sigma: float = 0.1, hidden: int = 32,
                 affine_init: float = 0.5, scatter: bool = True, image_shape: tuple[int, int] | None = None,
                 position_init: str | None = "rf_map", feature_init: str | None = None,
                 edge_penalty: float = 1.0) -> None:
        super().__init__()
        if not edge_penalty >= 0:
            raise ValueError(f"edge_penalty must be >= 0, got {edge_penalty!r}")
        self.edge_penalty = float(edge_penalty)
        if position_init not in (None, "rf_map"):
            raise ValueError(f"position_init must be null or 'rf_map', got {position_init!r}")
        if position_init and image_shape is None:
            raise ValueError("position_init='rf_map' needs the stimulus image_shape")
        self.position_init, self.image_shape = position_init, image_shape
        if feature_init not in (None, "ridge"):
            raise ValueError(f"feature_init must be null or 'ridge', got {feature_init!r}")
        self.feature_init = feature_init
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
            self.scatter = nn.Parameter(torch.zeros(n_neurons, 2)) if scatter else None
        else:
            self.mu = nn.Parameter(torch.empty(n_neurons, 2).uniform_(-0.5, 0.5))
        self.log_sigma = nn.Parameter(torch.full((n_neurons, 2), float(torch.log(torch.tensor(init_sigma)))))
        self.embedding = nn.Parameter(torch.randn(n_neurons, in_channels) / in_channels**0.5)
        self.bias = nn.Parameter(torch.zeros(n_neurons))

    def _raw_positions(self) -> torch.Tensor:
        """Positions (N, 2) before bounding: pre-tanh for cortical positions, grid units for learned ones."""
        if self.position == "cortical":
            mu = self._map_raw()
            return mu if self.scatter is None else mu + self.scatter
        return self.mu

    def _map_raw(self) -> torch.Tensor:
        """Pre-tanh positions (N, 2) of the cortical map alone (affine + MLP term, no scatter)."""
        return self.affine(self.coords) + self.position_net(self.coords)

    def map_positions(self) -> torch.Tensor | None:
        """Positions (N, 2), grid units, that the cortical map alone gives (no per-neuron scatter); None for
        learned positions, which have no map."""
        return torch.tanh(self._map_raw()) if self.position == "cortical" else None

    def positions(self) -> torch.Tensor:
        """Mean readout positions (N, 2), grid units (x, y) in [-1, 1]."""
        raw = self._raw_positions()
        return torch.tanh(raw) if self.position == "cortical" else raw.clamp(-1, 1)

    def position_penalty(self) -> torch.Tensor:
        """``edge_penalty`` x sum over neurons of the squared excess of the raw positions over their bound
        (EDGE pre-tanh, or BOUND for learned positions): zero inside, and a gradient that pulls a saturated
        neuron back from any distance, so a drifted cortical map recovers."""
        raw = self._raw_positions()
        bound = EDGE if self.position == "cortical" else BOUND
        return self.edge_penalty * F.relu(raw.abs() - bound).pow(2).sum()

    @torch.no_grad()
    def init_positions(self, centres_px: torch.Tensor, strength: torch.Tensor, outlier_sd: float = 2.5) -> None:
        """Start the positions at estimated RF centres (see ``rf_mapping.estimate_rf_centres``).

        Learned positions are set to the centres. Cortical positions get the affine map that best predicts
        the centres from cortical coordinates (least squares weighted by ``strength``, refitted once without
        outliers), a zero MLP term, and, with ``scatter``, each neuron's residual from the map where it is
        within ``outlier_sd`` robust standard deviations (larger residuals are more likely estimation errors
        than real scatter, so those neurons start on the map).

        Args:
            centres_px: (N, 2) (x, y) pixels. strength: (N,) >= 0 reliability of each estimate (0: unknown).
        """
        h, w = self.image_shape
        device = self.log_sigma.device
        centres_px, strength = centres_px.to(device), strength.to(device)
        size = torch.tensor([w - 1.0, h - 1.0], device=device)
        grid = (centres_px.float() / size * 2 - 1).clamp(-0.95, 0.95)
        if self.position != "cortical":
            self.mu.copy_(grid)
            return
        target = torch.atanh(grid)  # positions pass through tanh
        x = torch.cat([self.coords, torch.ones(len(grid), 1, device=device)], 1)
        weight = strength.float().clamp_min(0)
        if not bool((weight > 0).any()):
            return
        keep = weight > 0
        for _ in range(2):
            sw = (weight * keep).sqrt()[:, None]
            # numpy's LAPACK, in float64: torch's CPU lstsq (MKL) returned different bits for the same inputs
            # in different processes, and a training run amplifies that into a different fit.
            a, b = (x * sw).double().cpu().numpy(), (target * sw).double().cpu().numpy()
            beta = torch.from_numpy(np.linalg.lstsq(a, b, rcond=None)[0]).to(x)  # (4, 2)
            residual = target - x @ beta
            scale = 1.4826 * residual[weight > 0].abs().median(0).values.clamp_min(1e-6)
            keep = (weight > 0) & (residual.abs() <= outlier_sd * scale).all(1)
        self.affine.weight.copy_(beta[:3].T)
        self.affine.bias.copy_(beta[3])
        last = self.position_net[-1]
        last.weight.zero_()
        last.bias.zero_()
        if self.scatter is not None:
            self.scatter.copy_(torch.where(keep[:, None], residual, torch.zeros_like(residual)))

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> ReadoutOutput:
        b = x.shape[0]
        mu = self.positions().unsqueeze(0).expand(b, -1, -1)
        if self.training:
            mu = mu + torch.randn_like(mu) * self.log_sigma.exp()
        if shift is not None:
            mu = mu + shift[:, None, :]
        # Finite and inside the screen whatever the inputs: the CPU backward of grid_sample segfaults on NaN
        # grid points (torch 2.13).
        grid = torch.nan_to_num(mu, nan=0.0).clamp(-1, 1).unsqueeze(2)  # (B, N, 1, 2)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
        features = sampled.squeeze(-1).transpose(1, 2)  # (B, N, C)
        drive = (features * self.embedding).sum(-1) + self.bias
        return ReadoutOutput(drive, features)

    def regularizer(self) -> torch.Tensor:
        """L1 on the feature weights: each neuron should read few feature channels."""
        return self.embedding.abs().mean()
