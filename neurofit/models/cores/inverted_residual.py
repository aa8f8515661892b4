"""Inverted-residual blocks (MobileNetV2 / EfficientNet "MBConv") with squeeze-and-excitation and drop path, the
blocks of the ``dwise`` cores (``neurofit.models.cores.dwise``).

Taken from DwiseNeuro, R. Baikulov's SENSORIUM 2023 winner (github.com/lRomul/sensorium, ``InvertedResidual3d``,
``SqueezeExcite3d`` and ``drop_path`` in ``src/models/dwiseneuro.py``; README section "Core"):

- narrow -> wide -> narrow: a 1 x 1 expansion by ``expansion``, a depthwise k x k spatial convolution, for video
  a depthwise temporal convolution after it (the (2+1)D factorisation of a depthwise 3D one), squeeze-and-
  excitation on the wide features, and a 1 x 1 linear projection back;
- batch norm after every convolution, SiLU after the expansion and the depthwise convolutions, none after the
  projection;
- a parameter-free shortcut with its own batch norm, plus the branch through drop path (stochastic depth: the
  whole branch of a sample is dropped with probability ``drop_path`` and the kept ones scaled by 1 / (1 - p),
  in training only);
- squeeze-and-excitation as mean pooling, a 1 x 1 reduction with bias, SiLU, a 1 x 1 expansion, sigmoid gate.

Changed here:

- causal time: DwiseNeuro pads its temporal convolution on both sides and its SE pools over time as well as
  space. Here the temporal convolution sees the current and earlier frames only, its input for the last
  ``temporal_kernel - 1`` frames carried as state (as ``frontend.CausalConvBlock`` does), and SE pools each frame
  over space only, so no output depends on later frames and consecutive chunks reproduce the whole video.
- no stride or width change inside a block (DwiseNeuro strides and widens some blocks, which needs interpolated,
  channel-tiled shortcuts): the Gaussian readout samples one retinotopic map whose resolution the stem sets, so
  the shortcut is the identity.
- ``se_ratio`` sizes the SE bottleneck as a fraction of the block's (narrow) width, as EfficientNet does;
  DwiseNeuro's 1/32 of its 6-7x expanded width is about 0.2 of the block's width.

Video blocks work on the frames of B videos as one batch of images (B * T, C, H, W) in time order, so every
convolution but the temporal one is a 2D one (the fast CPU kernels, see ``frontend.FrameConv3d``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def drop_path(x: torch.Tensor, rate: float, training: bool, samples: int | None = None) -> torch.Tensor:
    """Stochastic depth: zero the residual branch ``x`` (N, ...) of a random ``rate`` of the samples and scale the
    rest by 1 / (1 - rate), so its expectation is unchanged; identity outside training. The N rows are
    ``samples`` consecutive groups (the frames of a video), each dropped as a whole; by default one row each."""
    if not training or rate == 0.0:
        return x
    samples = samples or x.shape[0]
    keep = 1.0 - rate
    mask = x.new_empty(samples, *(1,) * x.dim()).bernoulli_(keep).div_(keep)
    return (x.unflatten(0, (samples, -1)) * mask).flatten(0, 1)


def _channels_last_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) unchanged, its gradient made channels-last in the backward pass. CPU batch norm's
    backward ran 10x slower (700 vs 70 ms on 200 x 128 x 18 x 32) when the gradient's layout differed from its
    input's, and gradients that come back through reshapes (the readout's sampling, a video block's view of its
    frames as videos) are in the default layout."""
    if x.requires_grad:
        x.register_hook(lambda grad: grad.contiguous(memory_format=torch.channels_last))
    return x


class SqueezeExcite(nn.Module):
    """Channel gates from each image's spatial mean: x * sigmoid(W2 silu(W1 mean_hw(x) + b1) + b2).

    Args:
        channels: feature channels C.
        squeeze: bottleneck width.
    Input and output (N, C, H, W); frames of a video are gated each by their own mean, which keeps it causal.
    """

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(F.silu(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


def _conv_bn(in_channels: int, out_channels: int, kernel: int | tuple[int, int], groups: int = 1,
             padding: int = 0) -> nn.Sequential:
    """Bias-free 2D convolution followed by batch norm."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=padding, groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels))


class InvertedResidual(nn.Module):
    """Static block: 1 x 1 expansion, depthwise k x k, SE, 1 x 1 projection, plus the normalised shortcut.

    Args:
        channels: block width C (in and out).
        kernel: depthwise spatial kernel (pixels, odd).
        expansion: the wide features have ``expansion * channels`` channels.
        se_ratio: SE bottleneck width as a fraction of ``channels``; 0 for no SE.
        drop_path: probability of dropping a sample's branch in training, in [0, 1).
    Input and output (N, C, H, W).
    """

    def __init__(self, channels: int, kernel: int = 3, expansion: int = 4, se_ratio: float = 0.25,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        if expansion < 1 or se_ratio < 0:
            raise ValueError(f"need expansion >= 1 and se_ratio >= 0, got {expansion} and {se_ratio}")
        wide = channels * expansion
        self.expand = _conv_bn(channels, wide, 1)
        self.spatial = _conv_bn(wide, wide, kernel, groups=wide, padding=kernel // 2)
        self.se = SqueezeExcite(wide, max(1, round(se_ratio * channels))) if se_ratio > 0 else nn.Identity()
        self.project = _conv_bn(wide, channels, 1)
        self.shortcut = nn.BatchNorm2d(channels)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(x, F.silu(self.spatial(F.silu(self.expand(x)))))

    def merge(self, x: torch.Tensor, wide: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        """Block output from its input x (N, C, H, W) and the filtered wide features (N, expansion * C, H, W):
        normalised shortcut plus SE, projection and drop path (per group of N / ``samples`` rows)."""
        branch = self.project(self.se(wide))
        return _channels_last_grad(self.shortcut(x) + drop_path(branch, self.drop_path, self.training, samples))


class CausalInvertedResidual(InvertedResidual):
    """(2+1)D video block: ``InvertedResidual`` with a causal depthwise temporal convolution (batch norm, SiLU)
    after the spatial one; its input for the ``temporal_kernel - 1`` frames before a chunk is the carried state.

    Args:
        channels, kernel, expansion, se_ratio, drop_path: as ``InvertedResidual`` (SE per frame, drop path per
            video).
        temporal_kernel: frames the temporal convolution sees (the current one and ``temporal_kernel - 1``
            before it).
    Input: the frames of B videos (B * T, C, H, W), video by video in time order; output the same shape.
    """

    def __init__(self, channels: int, kernel: int = 3, temporal_kernel: int = 5, expansion: int = 4,
                 se_ratio: float = 0.25, drop_path: float = 0.0) -> None:
        super().__init__(channels, kernel, expansion, se_ratio, drop_path)
        wide = channels * expansion
        # Run as a (kt, 1) 2D convolution over (time, pixels) of each video: in channels-last layout that is a
        # view of the frames, and forward + backward ran 3x faster than a depthwise (kt, 1, 1) Conv3d and 4x
        # faster than FrameConv3d's per-tap convolutions (CPU, one thread).
        self.temporal = _conv_bn(wide, wide, (temporal_kernel, 1), groups=wide)
        self.context = temporal_kernel - 1

    def forward(self, frames: torch.Tensor, batch: int,
                context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run on a chunk of frames.

        Args:
            frames: (B * T, C, H, W).
            batch: number of videos B.
            context: the temporal convolution's input for the ``temporal_kernel - 1`` frames before the chunk,
                (B, expansion * C, temporal_kernel - 1, H, W); zeros (nothing before the video) when None.
        Returns:
            output frames (B * T, C, H, W) and the context for the next chunk.
        """
        # The gradient reaches ``wide`` through the video view below, which leaves it in the default layout.
        wide = _channels_last_grad(F.silu(self.spatial(F.silu(self.expand(frames)))))
        video = wide.unflatten(0, (batch, -1)).transpose(1, 2)  # (B, C', T, H, W), a view
        if context is None:
            context = video.new_zeros(*video.shape[:2], self.context, *video.shape[3:])
            context = context.contiguous(memory_format=torch.channels_last_3d)  # the layout of ``video``
        padded = torch.cat([context, video], dim=2)
        height, width = video.shape[3:]
        out = F.silu(self.temporal(padded.flatten(3)))  # (B, C', T, H * W)
        out = out.unflatten(3, (height, width)).transpose(1, 2).flatten(0, 1)
        return self.merge(frames, out, batch), padded[:, :, padded.shape[2] - self.context:]
