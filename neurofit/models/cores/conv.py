"""Static convolutional cores: images (B, C_in, H, W) -> feature maps (B, C, H, W)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LAPLACE = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])


def laplace_penalty(weight: torch.Tensor) -> torch.Tensor:
    """Smoothness penalty on filters (..., k, k): sum of squared Laplacian responses over every 2D slice,
    normalised by the filters' squared norm, so it penalises roughness rather than filter size."""
    k = _LAPLACE.to(weight)[None, None]
    lap = F.conv2d(weight.reshape(-1, 1, *weight.shape[-2:]), k, padding=1)
    return lap.pow(2).sum() / (weight.pow(2).sum() + 1e-8)


class ConvCore(nn.Module):
    """Stacked 2D convolutions with batch norm and ELU (the SENSORIUM baseline core, "same" padding so
    feature maps keep the image size and readout positions map 1:1 to the screen).

    Args:
        in_channels: image channels (1 for grey images).
        channels: feature channels per layer.
        layers: number of conv layers.
        input_kernel: first-layer kernel size (pixels).
        hidden_kernel: later-layer kernel size.
        depthwise: later layers as depthwise-separable convolutions (fewer parameters, same receptive field).
        skip: concatenate the outputs of the last ``skip`` layers as features (0 = last layer only).
        input_stride: stride of the first layer; 2 halves the feature maps' resolution, which cuts the cost
            of every later layer 4x (readout positions are in screen units, so readouts are unaffected).
    Input (B, in_channels, H, W); output (B, out_channels, H / input_stride, W / input_stride).
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, layers: int = 3, input_kernel: int = 9,
                 hidden_kernel: int = 7, depthwise: bool = True, skip: int = 0, input_stride: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(layers):
            k = input_kernel if i == 0 else hidden_kernel
            c_in = in_channels if i == 0 else channels
            if i > 0 and depthwise:
                conv: nn.Module = nn.Sequential(
                    nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False),
                    nn.Conv2d(c_in, channels, 1, bias=False),
                )
            else:
                stride = input_stride if i == 0 else 1
                conv = nn.Conv2d(c_in, channels, k, padding=k // 2, bias=False, stride=stride)
            self.layers.append(nn.Sequential(conv, nn.BatchNorm2d(channels), nn.ELU()))
        self.skip = skip
        self.out_channels = channels * max(1, skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return torch.cat(outs[-self.skip:], dim=1) if self.skip > 1 else x

    def regularizer(self) -> torch.Tensor:
        """Laplace smoothness penalty on the first-layer filters (sum of squared Laplacian responses,
        normalised by the filters' norm), which keeps first-layer filters smooth on limited data."""
        return laplace_penalty(self.layers[0][0].weight)


class IdentityCore(nn.Module):
    """No core: the image itself is the feature map. With a factorized readout this is the classic
    linear-nonlinear (LN) model, a floor for comparisons. Input and output (B, C, H, W)."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def regularizer(self) -> torch.Tensor:
        return torch.zeros(())
