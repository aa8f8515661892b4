"""Causal convolutional front ends for videos: stacks of (2+1)D or full 3D convolutions over (B, C, T, H, W).

Time is causal: temporal kernels see the current and earlier frames only (left padding). The padding is a
*context* of the last ``temporal_kernel - 1`` frames of each layer's input, carried as state, so a video cut
into consecutive chunks gives the same output as the whole video (zeros before the first frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurofit.models.cores.conv import laplace_penalty

#: Per-layer temporal contexts, (B, C_layer, temporal_kernel - 1, H, W) each.
StackState = tuple[torch.Tensor, ...]


def frames_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Video (B, C, T, H, W) -> its frames as a batch of images (B * T, C, H, W) in channels-last layout (the
    layout of the fast CPU 2D convolution kernels), in one copy."""
    b, c, t, height, width = x.shape
    return x.permute(0, 2, 3, 4, 1).reshape(b * t, height, width, c).permute(0, 3, 1, 2)


class FrameConv3d(nn.Conv3d):
    """A 3D convolution computed as 2D convolutions of the frames, one per temporal tap, summed with each
    tap's delay (no temporal padding or stride: causality comes from the carried context).

    Same parameters and output as ``nn.Conv3d``; CPU backends have far faster 2D kernels, above all for
    depthwise convolutions in channels-last layout (forward + backward on 400 frames of 16 x 18 x 32: a 7 x 7
    depthwise layer 250 ms as 3D, 47 ms as 2D; a (5, 7, 7) depthwise one 2.7x faster by taps).
    Input (B, C, T, H, W); output (B, C_out, T - kt + 1, H', W').
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.stride[0] != 1 or self.padding[0] != 0 or self.dilation[0] != 1:
            raise ValueError("FrameConv3d needs temporal stride 1, padding 0 and dilation 1")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[0], x.shape[2]
        taps = self.kernel_size[0]
        steps = t - taps + 1
        frames = frames_channels_last(x)
        out = None
        for tap in range(taps):
            y = F.conv2d(frames, self.weight[:, :, tap], self.bias if tap == 0 else None, self.stride[1:],
                         self.padding[1:], self.dilation[1:], self.groups)
            y = y.reshape(b, t, *y.shape[1:])[:, tap:tap + steps]
            out = y if out is None else out + y
        return out.transpose(1, 2)


def _conv(in_channels: int, out_channels: int, kernel: tuple[int, int, int], stride: int,
          depthwise: bool) -> nn.Module:
    """A bias-free 3D convolution with "same" spatial padding, stride (1, s, s); ``depthwise``: a per-channel
    convolution followed by a 1 x 1 x 1 mixing one (depthwise-separable, about k^2 times fewer weights).
    Purely spatial and depthwise kernels run as 2D convolutions of frames (``FrameConv3d``)."""
    pad = (0, kernel[1] // 2, kernel[2] // 2)
    if not depthwise:
        conv = FrameConv3d if kernel[0] == 1 else nn.Conv3d
        return conv(in_channels, out_channels, kernel, stride=(1, stride, stride), padding=pad, bias=False)
    return nn.Sequential(
        FrameConv3d(in_channels, in_channels, kernel, stride=(1, stride, stride), padding=pad,
                    groups=in_channels, bias=False),
        nn.Conv3d(in_channels, out_channels, 1, bias=False))


class CausalConvBlock(nn.Module):
    """One causal block: convolution(s), batch norm, ELU. Spatial padding keeps H x W ("same"), divided by
    ``stride``.

    Args:
        in_channels, out_channels: feature channels in and out.
        spatial_kernel: spatial kernel size (pixels).
        temporal_kernel: temporal kernel size (frames); 1 = frame by frame.
        factorized: (2+1)D, a spatial (1, k, k) convolution then a temporal (kt, 1, 1) one; otherwise one full
            (kt, k, k) 3D convolution.
        stride: spatial stride; 2 halves the feature maps' resolution (readout positions are in screen units,
            so readouts are unaffected) and cuts the cost of every later layer about 4x.
        depthwise: the spatial filtering convolution depthwise-separable (see ``_conv``).
    Input (B, in_channels, T, H, W); output (B, out_channels, T, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, spatial_kernel: int, temporal_kernel: int,
                 factorized: bool = True, stride: int = 1, depthwise: bool = False) -> None:
        super().__init__()
        if factorized:
            self.spatial: nn.Module = _conv(in_channels, out_channels, (1, spatial_kernel, spatial_kernel), stride,
                                            depthwise)
            self.temporal = nn.Conv3d(out_channels, out_channels, (temporal_kernel, 1, 1), bias=False)
        else:
            self.spatial = nn.Identity()
            self.temporal = _conv(in_channels, out_channels, (temporal_kernel, spatial_kernel, spatial_kernel),
                                  stride, depthwise)
        self.norm = nn.BatchNorm3d(out_channels)
        self.context = temporal_kernel - 1

    @property
    def spatial_weight(self) -> torch.Tensor:
        """The weights that filter the image plane, (..., k, k)."""
        conv = self.temporal if isinstance(self.spatial, nn.Identity) else self.spatial
        return conv[0].weight if isinstance(conv, nn.Sequential) else conv.weight

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run on a chunk of frames.

        Args:
            x: (B, C_in, T, H, W).
            context: the temporal conv's input for the ``temporal_kernel - 1`` frames before this chunk,
                (B, C, kt - 1, H, W); zeros (nothing before the video) when None.
        Returns:
            output (B, C_out, T, H, W) and the context for the next chunk.
        """
        x = self.spatial(x)
        if context is None:
            context = x.new_zeros(x.shape[0], x.shape[1], self.context, *x.shape[3:])
        padded = torch.cat([context, x], dim=2)
        next_context = padded[:, :, padded.shape[2] - self.context:]
        return F.elu(self.norm(self.temporal(padded))), next_context


class CausalConvStack(nn.Module):
    """Stacked causal blocks: the (2+1)D front end of the recurrent cores, and with ``factorized=False`` the
    feed-forward 3D-conv core.

    Args:
        in_channels: stimulus channels (1 for grey videos).
        channels: feature channels per layer.
        layers: number of blocks.
        input_kernel: first-layer spatial kernel (pixels).
        hidden_kernel: later-layer spatial kernel.
        temporal_kernel: temporal kernel of every layer (frames); the stack sees
            ``layers * (temporal_kernel - 1) + 1`` frames.
        factorized: (2+1)D blocks (spatial then temporal) instead of full 3D convolutions.
        input_stride: spatial stride of the first block (2: every later layer runs at half resolution).
        depthwise: later blocks' spatial filtering depthwise-separable (the first block sees one channel).
    Input (B, in_channels, T, H, W); output (B, channels, T, H / input_stride, W / input_stride).
    """

    def __init__(self, in_channels: int = 1, channels: int = 16, layers: int = 2, input_kernel: int = 9,
                 hidden_kernel: int = 7, temporal_kernel: int = 5, factorized: bool = True, input_stride: int = 1,
                 depthwise: bool = False) -> None:
        super().__init__()
        if input_stride < 1:
            raise ValueError(f"input_stride must be >= 1, got {input_stride}")
        self.blocks = nn.ModuleList(
            CausalConvBlock(in_channels if i == 0 else channels, channels,
                            input_kernel if i == 0 else hidden_kernel, temporal_kernel, factorized,
                            stride=input_stride if i == 0 else 1, depthwise=depthwise and i > 0)
            for i in range(layers))
        self.out_channels = channels

    def forward(self, x: torch.Tensor, state: StackState | None = None) -> tuple[torch.Tensor, StackState]:
        """(B, C_in, T, H, W) and the previous chunk's contexts (None at the start) -> (B, C, T, H, W) and
        the contexts for the next chunk."""
        contexts = []
        for i, block in enumerate(self.blocks):
            x, ctx = block(x, None if state is None else state[i])
            contexts.append(ctx)
        return x, tuple(contexts)

    def regularizer(self) -> torch.Tensor:
        """Laplace smoothness of the first layer's spatial filters (see ``laplace_penalty``)."""
        return laplace_penalty(self.blocks[0].spatial_weight)
