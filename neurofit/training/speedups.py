"""The speed switches of training, ``training.channels_last`` and ``training.compile``: code paths made for
GPUs that run (more slowly, but the same) on CPU, so they are tested without one.

Both act on the core, where the convolutions are, and only for training: the weights, the state dict and the
checkpoints are those of the plain model, so an evaluation or analysis never compiles anything.
"""

from __future__ import annotations

import torch
from torch import nn

from neurofit.config.schema import TrainingConfig

#: Channels-last memory format by tensor rank: images (B, C, H, W) and videos (B, C, T, H, W).
FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def _inputs_channels_last(_: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous(memory_format=FORMATS[a.dim()]) if isinstance(a, torch.Tensor) and a.dim() in FORMATS
                 else a for a in args)


def to_channels_last(module: nn.Module) -> nn.Module:
    """Every 2D and 3D convolution in ``module`` channels-last: its weight stored so, and its input converted
    on each call (a forward pre-hook; a no-op once the activations are channels-last, which convolutions, batch
    norm and pointwise layers then keep). Convolutions run in the NHWC kernels that tensor cores and oneDNN
    are fastest in. Converting the core's input alone would not do: a one-channel image, and the weights of
    depthwise and 1 x 1 convolutions, are as much channels-first as channels-last, so torch keeps NCHW.
    Returns ``module``."""
    with torch.no_grad():
        for conv in module.modules():
            if isinstance(conv, (nn.Conv2d, nn.Conv3d)):
                conv.weight.data = conv.weight.data.contiguous(memory_format=FORMATS[conv.weight.dim()])
                conv.register_forward_pre_hook(_inputs_channels_last)
    return module


def apply_speedups(core: nn.Module, training: TrainingConfig) -> nn.Module:
    """``training.channels_last`` and ``training.compile`` (with ``compile_mode``) applied to ``core`` in
    place (``nn.Module.compile`` keeps its parameter names, so checkpoints do not change). Returns ``core``."""
    if training.channels_last:
        to_channels_last(core)
    if training.compile:
        core.compile(mode=training.compile_mode)
    return core
