"""Gradient descent through time (AdamW) for the data-constrained RNN.

The trials are cut into windows of ``window`` samples (half-overlapping); each window starts from the
data's state, runs freely and is scored by the mean squared error of its rates. Mini-batches of windows
make the work parallel, so it suits a GPU. Masks, Dale's law and frozen units are kept by projecting
after every step; per-block learning rates scale the gradient; ``bptt.group_penalty`` shrinks every
inter-region block towards zero after every step (group lasso, proximal form).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from neurofit.rnn.config import BPTTConfig
from neurofit.rnn.history import FitHistory
from neurofit.rnn.model import DataConstrainedRNN, FitData, free_run


def windows(fd: FitData, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Half-overlapping windows of every trial.

    Returns:
        initial states (W, N, 1), target rates (W, N, length) and exogenous inputs (W, length, E) or None.
    """
    n_samples = fd.h.shape[-1]
    length = min(length, n_samples)
    stride = max(1, length // 2)
    h = fd.start.unfold(-1, length, stride)  # (K, N, n_windows, length)
    rates = fd.rates.unfold(-1, length, stride)
    n = h.shape[1]
    h0 = h[..., :1].permute(0, 2, 1, 3).reshape(-1, n, 1)
    targets = rates.permute(0, 2, 1, 3).reshape(-1, n, length)
    exog = None
    if fd.exog is not None:
        e = fd.exog.unfold(1, length, stride)  # (K, n_windows, E, length)
        exog = e.permute(0, 1, 3, 2).reshape(-1, length, e.shape[2])
    return h0, targets, exog


@torch.no_grad()
def inter_region_blocks(model: DataConstrainedRNN) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(target rows (N_a, 1), source columns (N_b,)) of J for every directed pair of regions a != b."""
    units = [torch.nonzero(model.region_index == a).flatten() for a in range(len(model.spec["region_names"]))]
    return [(rows[:, None], cols) for a, rows in enumerate(units) for b, cols in enumerate(units) if a != b]


def shrink_blocks_(model: DataConstrainedRNN, amount: float,
                   blocks: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
    """Proximal map of amount * sum_{a != b} ||J_ab||_F in place: every inter-region block of J scaled by
    max(0, 1 - amount / ||J_ab||_F). ``blocks``: ``inter_region_blocks(model)``, computed once by a caller
    that shrinks every step."""
    J = model.weight.data[:, : model.n_units]
    for rows, cols in blocks if blocks is not None else inter_region_blocks(model):
        block = J[rows, cols]
        J[rows, cols] = block * (1 - amount / block.norm().clamp(min=amount)).clamp(min=0)


def fit_bptt(model: DataConstrainedRNN, fd: FitData, cfg: BPTTConfig,
             log: Callable[[str], None] | None = None) -> tuple[FitHistory, torch.Tensor]:
    """Train ``model`` in place with AdamW through time.

    Args:
        model: the RNN on the device and dtype of ``fd``.
        fd: data tensors.
        cfg: epochs, window, batch size, optimiser settings.
        log: called with a progress line at each evaluation.
    Returns:
        The history (training loss and free-run pVar every ``eval_every`` epochs and at the end) and the
        final free run's rates (trial, N, time).
    """
    history = FitHistory("bptt")
    h0, targets, exog = windows(fd, cfg.window)
    n_windows, length = targets.shape[0], targets.shape[-1]
    opt = torch.optim.AdamW([model.weight], lr=cfg.lr, weight_decay=cfg.weight_decay)
    hook = model.weight.register_hook(lambda g: g * model.lr_scale) if model.lr_scale is not None else None
    gen = torch.Generator().manual_seed(model.cfg.seed)
    start = time.perf_counter()
    rates = fd.rates  # replaced by the last epoch's free run
    blocks = inter_region_blocks(model) if cfg.group_penalty else None
    step = 0
    for epoch in range(cfg.epochs):
        order = torch.randperm(n_windows, generator=gen).to(fd.h.device)
        total = torch.zeros((), device=fd.h.device, dtype=torch.float64)  # summed on the device: no sync per step
        for batch in order.split(cfg.batch_size):
            noise = model.make_noise(len(batch), length, model.cfg.seed + step, fd.h.device, fd.h.dtype)
            pred = model.simulate(h0[batch], None if exog is None else exog[batch], length, noise=noise)
            loss = (pred - targets[batch]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.group_penalty:
                shrink_blocks_(model, cfg.lr * cfg.group_penalty, blocks)
            model.project_()
            total += loss.detach() * len(batch)
            step += 1
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            rates, run_pvar, chi2 = free_run(model, fd, noise_seed=model.cfg.seed)
            mean_loss = float(total) / n_windows
            history.add(epoch + 1, run_pvar, chi2, time.perf_counter() - start, mean_loss)
            if log is not None:
                log(f"epoch {epoch + 1}: loss {mean_loss:.4g} pVar {run_pvar:.4f}")
    if hook is not None:
        hook.remove()
    return history, rates
