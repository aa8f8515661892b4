"""Video cores: videos (B, C_in, T, H, W) -> per-frame feature maps (B, T, C, H, W), causal in time.

Every core keeps H x W, so the per-frame Gaussian readouts sample retinotopic positions as on static images.

- ``gru``: (2+1)D front end, then a convolutional GRU over frames.
- ``ctrnn``: (2+1)D front end, then the shared CTRNN (``neurofit.models.cores.ctrnn``) run as a column at
  every pixel of the feature map (weights shared across positions, like a 1 x 1 convolution). Each position
  keeps its own state, so the readout still finds retinotopic features; spatial context comes from the
  front end. Output channels are the rates of the CTRNN's read-out units.
- ``conv3d``: a feed-forward stack of causal 3D convolutions, the comparison without recurrence.

State: ``forward_chunk(x, state)`` runs a chunk of frames from a state and returns the state after its last
frame (front-end temporal contexts plus recurrent state), so consecutive chunks reproduce a whole-video run
in eval mode (batch norm in training mode normalises each chunk with its own statistics). The Encoder calls
``forward(x)``, which starts from zeros, or inside ``carry_state()`` from the previous call's end state:
that is how truncated BPTT (``EncoderModule``) cuts long trials into chunks.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from neurofit.models import constraints
from neurofit.models.cores.ctrnn import CTRNN, MultiArea, song_yang_penalty
from neurofit.models.cores.frontend import CausalConvStack, frames_channels_last

#: A core's state between chunks: nested tuples of tensors, None before the first frame.
CoreState = Any


def detach_state(state: CoreState) -> CoreState:
    """The same nested state with every tensor detached from the graph (the truncation of TBPTT)."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple):
        return tuple(detach_state(s) for s in state)
    return state


class VideoCore(nn.Module, abc.ABC):
    """Base of the video cores: (B, C_in, T, H, W) -> (B, T, out_channels, H, W), with an optional carried
    state across calls (see the module docstring)."""

    out_channels: int

    def __init__(self) -> None:
        super().__init__()
        self._carrying = False
        self._state: CoreState = None

    @abc.abstractmethod
    def forward_chunk(self, x: torch.Tensor, state: CoreState = None) -> tuple[torch.Tensor, CoreState]:
        """Run frames (B, C_in, T, H, W) from ``state`` (None: nothing before the first frame); returns
        features (B, T, C, H, W) and the state after the last frame."""

    @abc.abstractmethod
    def regularizer(self) -> torch.Tensor:
        """Scalar penalty added (times ``training.regularization.core``) to the loss."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, T, C, H, W), from zeros or, inside ``carry_state``, from the last state."""
        features, state = self.forward_chunk(x, self._state)
        if self._carrying:
            self._state = state
        return features

    @contextmanager
    def carry_state(self) -> Iterator[None]:
        """Within the block each ``forward`` continues from where the previous one ended (the first starts
        from zeros); the state is dropped on exit."""
        self._carrying, self._state = True, None
        try:
            yield
        finally:
            self._carrying, self._state = False, None

    def detach_state(self) -> None:
        """Cut the gradient path into the carried state (call after each chunk's backward pass)."""
        self._state = detach_state(self._state)


def with_frontend(out: torch.Tensor, features: torch.Tensor, skip: bool) -> torch.Tensor:
    """The recurrent output (B, T, C_rec, H, W), with ``skip`` followed by the front end's features
    (B, C_front, T, H, W) as extra channels: (B, T, C_rec + C_front, H, W). The readout then sees the fast
    feed-forward features next to the recurrent state, as neuralpredictors' stacked cores feed every layer."""
    return torch.cat([out, features.transpose(1, 2)], dim=2) if skip else out


class ConvGRUCell(nn.Module):
    """Convolutional GRU: z = s(Wz x + Uz h), r = s(Wr x + Ur h), n = tanh(Wn x + Un (r h)),
    h' = (1 - z) h + z n, with "same"-padded k x k convolutions so every position keeps its own state.

    Args:
        in_channels: input feature channels.
        hidden_channels: state channels.
        kernel: spatial kernel of the input and recurrent convolutions (pixels).
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.input_conv = nn.Conv2d(in_channels, 3 * hidden_channels, kernel, padding=kernel // 2)
        self.gate_conv = nn.Conv2d(hidden_channels, 2 * hidden_channels, kernel, padding=kernel // 2, bias=False)
        self.candidate_conv = nn.Conv2d(hidden_channels, hidden_channels, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, C, T, H, W) and state (B, C_h, H, W) (zeros when None) -> states after every frame
        (B, T, C_h, H, W) and the last state."""
        b, c, t, height, width = x.shape
        # The input terms do not depend on the state: one batched convolution over all frames.
        drive = self.input_conv(frames_channels_last(x))  # channels-last: 1.5x faster on CPU
        drive = drive.reshape(b, t, 3 * self.hidden_channels, height, width)
        if h is None:
            h = x.new_zeros(b, self.hidden_channels, height, width)
        states = []
        # unbind, not drive[:, i]: the backward of each indexing op writes a zero tensor the size of all of
        # ``drive`` (quadratic in T; it was half the training step at 60 frames), unbind's backward one stack.
        for frame in drive.unbind(1):
            xz, xr, xn = frame.chunk(3, dim=1)
            hz, hr = self.gate_conv(h).chunk(2, dim=1)
            z, r = torch.sigmoid(xz + hz), torch.sigmoid(xr + hr)
            n = torch.tanh(xn + self.candidate_conv(r * h))
            h = h + z * (n - h)
            states.append(h)
        return torch.stack(states, dim=1), h


class GRUCore(VideoCore):
    """(2+1)D causal front end, then a convolutional GRU over frames.

    Args:
        in_channels: stimulus channels (1).
        frontend: options of ``CausalConvStack`` (channels, layers, input_kernel, hidden_kernel,
            temporal_kernel); always factorized (2+1)D.
        hidden_channels: GRU state channels.
        kernel: GRU spatial kernel (pixels).
        skip: the readout also sees the front end's features (``with_frontend``).
    Input (B, in_channels, T, H, W); output (B, T, hidden_channels (+ front-end channels with skip), H, W).
    """

    def __init__(self, in_channels: int = 1, frontend: dict | None = None, hidden_channels: int = 16,
                 kernel: int = 3, skip: bool = False) -> None:
        super().__init__()
        self.frontend = CausalConvStack(in_channels, **(frontend or {}), factorized=True)
        self.gru = ConvGRUCell(self.frontend.out_channels, hidden_channels, kernel)
        self.skip = skip
        self.out_channels = hidden_channels + (self.frontend.out_channels if skip else 0)

    def forward_chunk(self, x: torch.Tensor, state: CoreState = None) -> tuple[torch.Tensor, CoreState]:
        front_state, h = state if state is not None else (None, None)
        features, front_state = self.frontend(x, front_state)
        out, h = self.gru(features, h)
        return with_frontend(out, features, self.skip), (front_state, h)

    def regularizer(self) -> torch.Tensor:
        """Laplace smoothness of the front end's first spatial filters."""
        return self.frontend.regularizer()


class CTRNNCore(VideoCore):
    """(2+1)D causal front end, then a CTRNN column at every position of the feature map (shared weights).

    The CTRNN options are those of ``neurofit.models.cores.ctrnn.CTRNNCell``; time is in any unit shared by
    ``dt`` and ``tau`` (the configs use milliseconds, one frame = 33.3 ms at 30 Hz).

    Args:
        in_channels: stimulus channels (1).
        frontend: options of ``CausalConvStack`` (always factorized (2+1)D).
        hidden_size: CTRNN units per position.
        dt: integration step = one frame.
        tau: time constant, scalar or per unit (hidden_size,).
        activation: rate nonlinearity (``ctrnn.ACTIVATIONS``).
        preact_noise, postact_noise: noise on the state / rates, training mode only.
        e_fraction: Dale's law with this excitatory fraction (0.8 = 4:1); None for unconstrained signs.
        g: spectral radius of the initial recurrent weights.
        density: probability of each recurrent connection (sparsity mask).
        plastic_density: probability that a connection is trainable; the rest stay at their initial value.
        multi_area: options of ``ctrnn.MultiArea`` (sizes must sum to hidden_size); only its read-out
            areas' units become output channels.
        rate_l2, weight_l2, weight_l1: Song-Yang regulariser coefficients (``song_yang_penalty``), added to
            the front end's smoothness penalty in ``regularizer()``.
        seed: seed of the masks and initial weights.
        skip: the readout also sees the front end's features (``with_frontend``).
    Input (B, in_channels, T, H, W); output (B, T, n_readout_units (+ front-end channels with skip), H, W).
    """

    def __init__(self, in_channels: int = 1, frontend: dict | None = None, hidden_size: int = 32,
                 dt: float = 1.0, tau: float | Sequence[float] = 3.0, activation: str = "relu",
                 preact_noise: float = 0.0, postact_noise: float = 0.0, e_fraction: float | None = 0.8,
                 g: float = 1.0, density: float = 1.0, plastic_density: float = 1.0,
                 multi_area: dict | None = None, rate_l2: float = 0.0, weight_l2: float = 0.0,
                 weight_l1: float = 0.0, seed: int = 0, skip: bool = False) -> None:
        super().__init__()
        self.frontend = CausalConvStack(in_channels, **(frontend or {}), factorized=True)
        gen = torch.Generator().manual_seed(seed)
        shape = (hidden_size, hidden_size)
        self.rnn = CTRNN(self.frontend.out_channels, hidden_size,
                         multi_area=MultiArea(**multi_area) if multi_area else None, generator=gen,
                         dt=dt, tau=tau, activation=activation, preact_noise=preact_noise,
                         postact_noise=postact_noise, e_fraction=e_fraction, g=g,
                         recurrent_mask=constraints.random_mask(shape, density, gen),
                         plasticity_mask=constraints.random_mask(shape, plastic_density, gen))
        self.penalties = {"rate_l2": rate_l2, "weight_l2": weight_l2, "weight_l1": weight_l1}
        self.skip = skip
        self.out_channels = len(self.rnn.readout_index) + (self.frontend.out_channels if skip else 0)
        self._rates: torch.Tensor | None = None

    def forward_chunk(self, x: torch.Tensor, state: CoreState = None) -> tuple[torch.Tensor, CoreState]:
        front_state, h = state if state is not None else (None, None)
        features, front_state = self.frontend(x, front_state)
        b, c, t, height, width = features.shape
        columns = features.permute(0, 3, 4, 2, 1).reshape(b * height * width, t, c)
        rates, h = self.rnn(columns, h)
        if self.training and torch.is_grad_enabled():
            # Kept for the firing-rate term of regularizer(), which the training step calls after forward.
            self._rates = rates
        out = self.rnn.readout(rates).reshape(b, height, width, t, -1).permute(0, 3, 4, 1, 2)
        return with_frontend(out, features, self.skip), (front_state, h)

    def regularizer(self) -> torch.Tensor:
        """Front-end smoothness plus the Song-Yang penalty (rates of the last training forward pass, and the
        effective weights)."""
        rates = self._rates if self._rates is not None else self.rnn.cell.weight_hh.new_zeros(1, 1, 1)
        self._rates = None
        return self.frontend.regularizer() + song_yang_penalty(rates, self.rnn.cell, **self.penalties)


class Conv3dCore(VideoCore):
    """Feed-forward causal 3D convolutions (no recurrence): the comparison for the recurrent cores. Options
    are those of ``CausalConvStack``; ``factorized=False`` (default) uses full (kt, k, k) kernels.
    Input (B, in_channels, T, H, W); output (B, T, channels, H, W)."""

    def __init__(self, in_channels: int = 1, channels: int = 16, layers: int = 3, input_kernel: int = 9,
                 hidden_kernel: int = 3, temporal_kernel: int = 5, factorized: bool = False, input_stride: int = 1,
                 depthwise: bool = False) -> None:
        super().__init__()
        self.stack = CausalConvStack(in_channels, channels, layers, input_kernel, hidden_kernel, temporal_kernel,
                                     factorized, input_stride, depthwise)
        self.out_channels = channels

    def forward_chunk(self, x: torch.Tensor, state: CoreState = None) -> tuple[torch.Tensor, CoreState]:
        out, state = self.stack(x, state)
        return out.transpose(1, 2), state

    def regularizer(self) -> torch.Tensor:
        """Laplace smoothness of the first layer's spatial filters."""
        return self.stack.regularizer()
