"""Behavioural modulation of a recording's responses: gain from behaviour, RF shift from eye position."""

from __future__ import annotations

import torch
from torch import nn


class BehaviorModulator(nn.Module):
    """Multiplicative per-neuron gain from behaviour (running speed, pupil): gain = exp(MLP(behavior)),
    initialised at exactly 1 so the unmodulated model is the starting point.
    Input behaviour (B, C_b) (normalised); output gain (B, N)."""

    def __init__(self, n_channels: int, n_neurons: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_channels, hidden), nn.ELU(), nn.Linear(hidden, n_neurons))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, behavior: torch.Tensor) -> torch.Tensor:
        return self.net(behavior).exp()


class Shifter(nn.Module):
    """Eye position -> shift of every readout position on the screen (grid units), the same for all neurons
    of a recording: shift = tanh(MLP(pupil_center)), initialised at 0. Input (B, 2); output (B, 2)."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2), nn.Tanh())
        nn.init.zeros_(self.net[-2].weight)
        nn.init.zeros_(self.net[-2].bias)

    def forward(self, pupil_center: torch.Tensor) -> torch.Tensor:
        return self.net(pupil_center)
