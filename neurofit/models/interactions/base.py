"""What every interaction layer shares: the interface, the identity layer and the stack that orders layers
around the encoder's output nonlinearity.

An interaction maps one recording's readout output to a new output in which neurons influence each other.
Layers that act on the *drive* (any real value, before the output nonlinearity) run first; layers that act on
the *rate* (non-negative, after it) run after it. ``InteractionStack`` keeps both groups, so the encoder calls
``before_output`` on the drive and ``after_output`` on the rate whatever layers a config lists.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

#: Where a layer acts. ``context`` layers read the other neurons' recorded activity and return a correction
#: to the drive; they run only when the encoder is given recorded responses (``ContextAttention``).
ACTS_ON = ("drive", "rate", "context")


class Interaction(nn.Module):
    """Maps the readout output of one recording to its interacting version.

    Args:
        n_neurons: N, neurons of the recording.
        embedding_dim: D of the per-neuron embedding passed to ``forward``.
        feature_dim: C of the core features sampled at each neuron's readout position.
        positions_um: (N, 3) cortical coordinates in micrometres, or None where unknown; kept as the buffer
            ``positions_um`` (None stays None).

    Class attribute ``acts_on``: ``"drive"`` (input and output are the drive before the output
    nonlinearity, any real value) or ``"rate"`` (input and output are non-negative rates after it).

    Forward: x (B, N) or (B, T, N); features (B, N, C) or (B, T, N, C); embedding (N, D) -> same shape as x.
    """

    acts_on: ClassVar[str] = "drive"

    def __init__(self, n_neurons: int, embedding_dim: int, feature_dim: int,
                 positions_um: torch.Tensor | None = None) -> None:
        super().__init__()
        if positions_um is not None and tuple(positions_um.shape) != (n_neurons, 3):
            raise ValueError(f"positions_um must be ({n_neurons}, 3), got {tuple(positions_um.shape)}")
        self.n_neurons = n_neurons
        self.embedding_dim = embedding_dim
        self.feature_dim = feature_dim
        self.register_buffer("positions_um", None if positions_um is None else positions_um.float().clone())

    def regularizer(self) -> torch.Tensor:
        """Penalty added to the training loss (scalar); layers without one return 0."""
        return torch.zeros(())


class NoInteraction(Interaction):
    """The plain model: returns the drive unchanged (config name ``none``)."""

    def forward(self, x: torch.Tensor, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return x


class InteractionStack(nn.Module):
    """Interaction layers of one recording in config order, split by where they act.

    ``before_output(drive, features, embedding)`` applies the drive layers in order,
    ``after_output(rate, features, embedding)`` the rate layers in order; shapes as in ``Interaction``;
    ``context(residual, embedding)`` the correction the context layers add to the drive.
    """

    def __init__(self, stages: list[Interaction]) -> None:
        super().__init__()
        for stage in stages:
            if stage.acts_on not in ACTS_ON:
                raise ValueError(f"{type(stage).__name__}.acts_on must be one of {ACTS_ON}")
        self.stages = nn.ModuleList(stages)

    def _run_stages(self, where: str, x: torch.Tensor, features: torch.Tensor,
                    embedding: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            if stage.acts_on == where:
                x = stage(x, features, embedding)
        return x

    def before_output(self, drive: torch.Tensor, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Drive (B, [T,] N) -> drive after the drive-acting layers."""
        return self._run_stages("drive", drive, features, embedding)

    def after_output(self, rate: torch.Tensor, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Rate (B, [T,] N) >= 0 -> rate after the rate-acting layers."""
        return self._run_stages("rate", rate, features, embedding)

    @property
    def has_context(self) -> bool:
        """Whether any layer conditions on recorded activity (``acts_on == "context"``)."""
        return any(stage.acts_on == "context" for stage in self.stages)

    def context(self, residual: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """Summed drive correction (B, [T,] N) of the context layers from the recorded residuals (B, [T,] N)."""
        return sum((s(residual, embedding) for s in self.stages if s.acts_on == "context"),
                   torch.zeros_like(residual))

    def find(self, kind: type[Interaction]) -> Interaction | None:
        """The first stage of class ``kind`` (for analysis: attention maps, pools), or None."""
        return next((s for s in self.stages if isinstance(s, kind)), None)

    def regularizer(self) -> torch.Tensor:
        """Sum of the stages' penalties (scalar)."""
        return sum((s.regularizer() for s in self.stages), torch.zeros(()))


def flatten_leading(x: torch.Tensor, trailing: int) -> tuple[torch.Tensor, torch.Size]:
    """Collapse all but the last ``trailing`` dims into one batch dim; returns the view and the leading
    shape to restore with ``x.reshape(*lead, ...)``."""
    lead = x.shape[: x.dim() - trailing]
    return x.reshape(-1, *x.shape[x.dim() - trailing:]), lead
