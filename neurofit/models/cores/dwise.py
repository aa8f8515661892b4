"""Depthwise inverted-residual cores after DwiseNeuro (SENSORIUM 2023 winner, github.com/lRomul/sensorium,
``DepthwiseCore`` in ``src/models/dwiseneuro.py``): a stem, then a stack of inverted-residual blocks with SE, SiLU
and drop path (``neurofit.models.cores.inverted_residual``).

- ``dwise``: static images (B, C_in, H, W) -> (B, C, H', W').
- ``dwise_video``: videos (B, C_in, T, H, W) -> (B, T, C, H', W'), causal (2+1)D blocks, feed-forward; the state
  between chunks is every block's temporal context.

Taken from DwiseNeuro: the block stack after a stem, drop path rising linearly with depth (block i of n drops
with ``drop_path * i / n``, so the first never does), spatial 3 x 3 and temporal 5-frame depthwise kernels as
defaults. Changed: DwiseNeuro's stem is a 1 x 1 (pointwise) convolution over 5 stacked input channels and its
blocks downsample 8x, widen 64 -> 256 and add positional encodings because it pools space away before a
per-mouse linear readout. Here the stem is one k x k convolution with batch norm and ELU (``ConvCore``'s first
layer, the filters the Laplace smoothness penalty of ``regularizer()`` keeps smooth), strided by
``input_stride`` at most, and the blocks keep its width and resolution, so the per-neuron Gaussian readout
samples one retinotopic feature map. Each block widens the receptive field by ``kernel - 1`` feature-map pixels
and ``temporal_kernel - 1`` frames: n video blocks see ``n * (temporal_kernel - 1) + 1`` frames.

H' = ceil(H / input_stride) ("same" padding, as ``ConvCore``); readout positions are in normalised screen
coordinates, so a strided core needs no change to the readout.
"""

from __future__ import annotations

import torch
from torch import nn

from neurofit.models.cores.conv import ConvCore
from neurofit.models.cores.frontend import frames_channels_last
from neurofit.models.cores.inverted_residual import CausalInvertedResidual, InvertedResidual
from neurofit.models.cores.video import CoreState, VideoCore


def _stem(in_channels: int, channels: int, input_kernel: int, input_stride: int) -> ConvCore:
    """k x k convolution, batch norm, ELU: (N, in_channels, H, W) -> (N, channels, H / stride, W / stride)."""
    return ConvCore(in_channels, channels, layers=1, input_kernel=input_kernel, input_stride=input_stride)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in channels-last layout, that of the fast CPU depthwise kernels (the stem's one-channel input
    leaves its output in the default layout)."""
    return x.contiguous(memory_format=torch.channels_last)


def _drop_rates(drop_path: float, blocks: int) -> list[float]:
    """Per-block drop-path rates, rising linearly from 0 with depth (deeper blocks are more redundant)."""
    return [drop_path * i / blocks for i in range(blocks)]


class DwiseCore(nn.Module):
    """Static core: stem, then ``blocks`` inverted-residual blocks of the stem's width.

    Args:
        in_channels: image channels (1 for grey images).
        channels: width of the stem and blocks (= ``out_channels``).
        blocks: number of inverted-residual blocks.
        input_kernel: stem kernel (pixels).
        kernel: blocks' depthwise kernel (pixels).
        expansion: blocks' expansion ratio.
        se_ratio: SE bottleneck as a fraction of ``channels`` (0: no SE).
        drop_path: drop-path rate the deepest block approaches (see the module docstring).
        input_stride: stem stride; 2 runs every block at half resolution, about 4x cheaper.
    Input (B, in_channels, H, W); output (B, channels, ceil(H / input_stride), ceil(W / input_stride)).
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, blocks: int = 4, input_kernel: int = 9,
                 kernel: int = 3, expansion: int = 4, se_ratio: float = 0.25, drop_path: float = 0.0,
                 input_stride: int = 1) -> None:
        super().__init__()
        self.stem = _stem(in_channels, channels, input_kernel, input_stride)
        self.blocks = nn.Sequential(*(InvertedResidual(channels, kernel, expansion, se_ratio, rate)
                                      for rate in _drop_rates(drop_path, blocks)))
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(_channels_last(self.stem(x)))

    def regularizer(self) -> torch.Tensor:
        """Laplace smoothness of the stem's filters (``conv.laplace_penalty``)."""
        return self.stem.regularizer()


class DwiseVideoCore(VideoCore):
    """Video core: the stem on every frame, then ``blocks`` causal (2+1)D inverted-residual blocks.

    Args:
        in_channels, channels, blocks, input_kernel, kernel, expansion, se_ratio, drop_path, input_stride: as
            ``DwiseCore`` (SE per frame, drop path per video and chunk).
        temporal_kernel: frames each block's temporal depthwise convolution sees.
    Input (B, in_channels, T, H, W); output (B, T, channels, ceil(H / input_stride), ceil(W / input_stride)).
    State: the blocks' temporal contexts, (B, expansion * channels, temporal_kernel - 1, H', W') each.
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, blocks: int = 4, input_kernel: int = 9,
                 kernel: int = 3, temporal_kernel: int = 5, expansion: int = 4, se_ratio: float = 0.25,
                 drop_path: float = 0.0, input_stride: int = 1) -> None:
        super().__init__()
        self.stem = _stem(in_channels, channels, input_kernel, input_stride)
        self.blocks = nn.ModuleList(
            CausalInvertedResidual(channels, kernel, temporal_kernel, expansion, se_ratio, rate)
            for rate in _drop_rates(drop_path, blocks))
        self.out_channels = channels

    def forward_chunk(self, x: torch.Tensor, state: CoreState = None) -> tuple[torch.Tensor, CoreState]:
        batch = x.shape[0]
        frames = _channels_last(self.stem(frames_channels_last(x)))  # a spatial stem: causal without state
        contexts = []
        for i, block in enumerate(self.blocks):
            frames, context = block(frames, batch, None if state is None else state[i])
            contexts.append(context)
        return frames.unflatten(0, (batch, -1)), tuple(contexts)

    def regularizer(self) -> torch.Tensor:
        """Laplace smoothness of the stem's filters (``conv.laplace_penalty``)."""
        return self.stem.regularizer()
