"""Fit a data-constrained RNN to multi-region activity with the configured method."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from neurofit.errors import ConfigError
from neurofit.rnn.bptt import fit_bptt
from neurofit.rnn.config import FitConfig
from neurofit.rnn.data import RNNData
from neurofit.rnn.history import FitHistory
from neurofit.rnn.model import DataConstrainedRNN, FitData, build_model, fit_data
from neurofit.rnn.ridge import fit_ridge, solve_ridge
from neurofit.rnn.rls import fit_rls


@dataclass
class FitOutcome:
    """A fitted model with its learning curve.

    Attributes:
        model: the trained RNN (on the fitting device).
        history: the learning curve.
        rates: (trial, N, time) the final free run's rates.
        data: the tensors it was fitted to.
        wall_s: total seconds, including setup and any ridge start.
    """

    model: DataConstrainedRNN
    history: FitHistory
    rates: torch.Tensor
    data: FitData
    wall_s: float


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda`` (``ConfigError`` when CUDA is asked for but absent)."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ConfigError(f"device must be 'cpu' or 'cuda', got {name!r}")
    return torch.device(name)


def fit(data: RNNData, cfg: FitConfig, device: str = "cpu",
        log: Callable[[str], None] | None = None) -> FitOutcome:
    """Build the model for ``data`` and train it with ``cfg.method`` on ``device``.

    Args:
        data: normalised activity (``load_rnn_data``).
        cfg: the full configuration.
        device: ``cpu`` or ``cuda``.
        log: progress printer.
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    dtype = torch.float64 if cfg.method == "rls" and cfg.rls.dtype == "float64" else torch.float32
    torch.manual_seed(cfg.model.seed)
    model = build_model(data, cfg.model, cfg.constraints).to(device=dev, dtype=dtype)
    fd = fit_data(model, data, cfg.data.space, dev, dtype)
    init = {"rls": cfg.rls.init, "bptt": cfg.bptt.init}.get(cfg.method, "random")
    if init == "ridge":
        solve_ridge(model, fd, cfg.ridge)
    if cfg.method == "rls":
        history, rates = fit_rls(model, fd, cfg.rls, log)
    elif cfg.method == "bptt":
        history, rates = fit_bptt(model, fd, cfg.bptt, log)
    else:
        history, rates = fit_ridge(model, fd, cfg.ridge)
    return FitOutcome(model, history, rates, fd, time.perf_counter() - start)
