"""Fit a data-constrained RNN to multi-region activity with the configured method."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from neurofit.errors import ConfigError
from neurofit.rnn.bptt import fit_bptt
from neurofit.rnn.config import FitConfig
from neurofit.rnn.data import RNNData
from neurofit.rnn.history import FitHistory
from neurofit.rnn.model import DataConstrainedRNN, FitData, build_model, fit_data, free_run
from neurofit.rnn.ridge import fit_ridge, solve_ridge
from neurofit.rnn.rls import Evaluator, fit_rls


@dataclass
class FitOutcome:
    """A fitted model with its learning curve.

    Attributes:
        model: the trained RNN (on the fitting device).
        history: the learning curve.
        rates: (trial, N, time) the final free run's rates.
        data: the tensors it was fitted to.
        wall_s: total seconds, including setup and any ridge start.
        evaluate: a free run of the fitted model as its method runs one (noise seed -> rates, pVar, chi2).
    """

    model: DataConstrainedRNN
    history: FitHistory
    rates: torch.Tensor
    data: FitData
    wall_s: float
    evaluate: Evaluator


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda`` (``ConfigError`` when CUDA is asked for but absent)."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ConfigError(f"device must be 'cpu' or 'cuda', got {name!r}")
    return torch.device(name)


def check_config(data: RNNData, cfg: FitConfig) -> None:
    """``ConfigError`` naming the config entry (and the data) for constraints that name a region without
    units, a ``block_lr`` key that is not ``TARGET<-SOURCE``, and options that do not go together."""
    c = cfg.constraints
    allowed = c.allowed or {}
    named = {("constraints", "allowed"): set(allowed) | {s for v in allowed.values() for s in v},
             ("constraints", "region_signs"): set(c.region_signs), ("constraints", "block_lr"): set()}
    for key in c.block_lr:
        target, sep, source = key.partition("<-")
        if not sep:
            raise cfg.fail(("constraints", "block_lr", key), "keys must be 'TARGET<-SOURCE'")
        named[("constraints", "block_lr")] |= {target, source}
    for path, regions in named.items():
        unknown = sorted(regions - set(data.region_names))
        if unknown:
            raise cfg.fail(path, f"region(s) {unknown} have no units in {data.source} (its regions: "
                                 f"{list(data.region_names)})")
    if data.reset_points and cfg.method == "bptt":
        raise cfg.fail(("method",), f"{data.source} has reset points, which bptt's windows do not honour; use "
                                    "rls or ridge")
    weight_rules = c.allowed is not None or c.dale or c.density < 1 or bool(c.block_lr)
    if cfg.rls.defer_updates > 1 and (cfg.rls.loop != "curbd" or weight_rules or cfg.rls.P0_inter is not None):
        raise cfg.fail(("rls", "defer_updates"), "held updates need rls.loop curbd and no constraints.allowed, "
                                                 "dale, density < 1, block_lr or rls.P0_inter")


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
    check_config(data, cfg)
    dtype = torch.float64 if cfg.method == "rls" and cfg.rls.dtype == "float64" else torch.float32
    torch.manual_seed(cfg.model.seed)
    model = build_model(data, cfg.model, cfg.constraints).to(device=dev, dtype=dtype)
    fd = fit_data(model, data, cfg.data.space, dev, dtype)
    init = {"rls": cfg.rls.init, "bptt": cfg.bptt.init}.get(cfg.method, "random")
    if init == "ridge":
        solve_ridge(model, fd, cfg.ridge)
    evaluate: Evaluator = partial(free_run, model, fd)
    if cfg.method == "rls":
        history, rates, evaluate = fit_rls(model, fd, cfg.rls, log)
    elif cfg.method == "bptt":
        history, rates = fit_bptt(model, fd, cfg.bptt, log)
    else:
        history, rates = fit_ridge(model, fd, cfg.ridge)
    return FitOutcome(model, history, rates, fd, time.perf_counter() - start, evaluate)
