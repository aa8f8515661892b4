"""Batch norm over the global batch under DDP, on any device.

With per-process statistics, W processes with batch B each normalise every layer with B samples instead of
W x B, so DDP trains a different model from one process with the same global batch. Lightning's
``sync_batchnorm=True`` installs ``torch.nn.SyncBatchNorm``, which refuses CPU tensors, so two processes on one
CPU (gloo) could not use it; ``GlobalBatchNorm`` does the same arithmetic on CPU and GPU alike, in torch's
fused batch-norm kernels and with one collective per layer each way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def distributed_world_size() -> int:
    """Processes in the default process group (1 when none is initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _combine(local_mean: torch.Tensor, local_var: torch.Tensor, local_count: int) -> tuple[torch.Tensor, ...]:
    """The mean, biased variance (C,) and sample count of all processes' inputs from each process's own, in one
    all-gather. The variances combine exactly (Chan et al.: each process's variance about its own mean plus the
    spread of the means), with no E[x^2] - E[x]^2 cancellation."""
    c = local_mean.numel()
    mine = torch.cat([local_mean, local_var, local_mean.new_tensor([local_count])])
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine)
    stats = torch.stack(parts)  # (world, 2C + 1)
    means, variances, counts = stats[:, :c], stats[:, c:2 * c], stats[:, 2 * c:]
    count = counts.sum()
    mean = (counts * means).sum(0) / count
    var = (counts * (variances + (means - mean).square())).sum(0) / count
    return mean, var, count


class _GlobalBatchNormFunction(torch.autograd.Function):
    """Batch norm of x (B, C, ...) with the statistics of every process's x.

    Forward: this process's mean and variance (torch's fused kernel), combined across processes (``_combine``),
    then the fused normalisation with them. Backward: torch's fused batch-norm backward with the global
    statistics gives dx as if this process's batch were all, and this process's sums of dy and dy * x_hat (the
    bias and weight gradients); one all-reduce of those sums and a per-channel correction make dx the gradient
    through the global statistics (what ``torch.nn.SyncBatchNorm`` computes on GPUs)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        _, local_mean, local_invstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        local_count = x.numel() // x.shape[1]
        mean, var, count = _combine(local_mean, local_invstd.pow(-2) - eps, local_count)
        ctx.save_for_backward(x, weight, mean, torch.rsqrt(var + eps))
        ctx.eps, ctx.counts = eps, (local_count, count)
        ctx.mark_non_differentiable(mean, var, count)
        return torch.batch_norm(x, weight, bias, mean, var, False, 0.0, eps, True), mean, var, count

    @staticmethod
    def backward(ctx, dy: torch.Tensor, *_):
        x, weight, mean, invstd = ctx.saved_tensors
        local_count, count = ctx.counts
        dx, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, None, None, mean, invstd, True, ctx.eps, [True, True, True])
        sums = torch.cat([grad_bias, grad_weight])
        dist.all_reduce(sums)
        total_bias, total_weight = sums.chunk(2)
        # dx used this process's means of dy and dy * x_hat; the global ones replace them: dx += A + x * B
        scale = weight * invstd
        b = scale * invstd * (grad_weight / local_count - total_weight / count)
        a = scale * (grad_bias / local_count - total_bias / count) - mean * b
        shape = [1, -1] + [1] * (x.dim() - 2)
        dx = torch.addcmul(dx + a.view(shape), x, b.view(shape)).to(x.dtype)
        return dx, grad_weight, grad_bias, None


def _adopt(target: _BatchNorm, source: _BatchNorm) -> _BatchNorm:
    """``target`` with ``source``'s parameters and buffers (the same tensors: the optimiser, DDP and the
    state dict see no change)."""
    if source.affine:
        target.weight, target.bias = source.weight, source.bias
    if source.track_running_stats:
        target.running_mean, target.running_var = source.running_mean, source.running_var
        target.num_batches_tracked = source.num_batches_tracked
    return target


class GlobalBatchNorm(_BatchNorm):
    """A batch norm layer (``BatchNorm1d/2d/3d``) whose training statistics are those of all processes' inputs
    together; with one process, or outside training, it is the layer it replaced.

    Statistics are float32 under mixed precision (torch's kernels accumulate them so). Running statistics are
    updated as torch does (unbiased variance, ``momentum``, or a cumulative average when it is None). Input
    (B, C, ...) -> output of the same shape and dtype.
    """

    def __init__(self, local: _BatchNorm) -> None:
        super().__init__(local.num_features, local.eps, local.momentum, local.affine, local.track_running_stats)
        self.local_type = type(local)
        _adopt(self, local)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        self.local_type._check_input_dim(self, x)

    def to_local(self) -> _BatchNorm:
        """The layer of the original type holding this one's parameters and buffers."""
        local = self.local_type(self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats)
        return _adopt(local, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or distributed_world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        # Without affine parameters the layer is the affine one with weight 1 and bias 0.
        weight = self.weight if self.affine else x.new_ones(self.num_features, dtype=torch.float32)
        bias = self.bias if self.affine else x.new_zeros(self.num_features, dtype=torch.float32)
        y, mean, var, count = _GlobalBatchNormFunction.apply(x, weight, bias, self.eps)
        if self.track_running_stats:
            self._update_running(mean, var, count)
        return y

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp_min(1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)  # bf16-true keeps bf16 buffers
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def _replace(module: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """Replace, depth first, every child that ``convert`` maps to a new module; returns ``module``."""
    for name, child in module.named_children():
        new = convert(child)
        if new is None:
            _replace(child, convert)
        else:
            setattr(module, name, new)
    return module


class GlobalBatchNormSync(LayerSync):
    """Lightning plug-in (``Trainer(plugins=[...])``): DDP strategies apply it before wrapping the model, so
    every batch norm layer trains on the statistics of the global batch, and revert it when fitting ends."""

    def apply(self, model: nn.Module) -> nn.Module:
        return _replace(model, lambda m: GlobalBatchNorm(m) if isinstance(m, _BatchNorm)
                        and not isinstance(m, GlobalBatchNorm) else None)

    def revert(self, model: nn.Module) -> nn.Module:
        return _replace(model, lambda m: m.to_local() if isinstance(m, GlobalBatchNorm) else None)
