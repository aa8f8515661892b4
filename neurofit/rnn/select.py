"""Choose one setting of a fit by held-out pVar: the strength of the prior on inter-region weights
(``rls.P0_inter``), the number of inferred input channels (``model.inferred_inputs``) or any other entry.

The last ``holdout`` of every trial is held out, or the last ``holdout_trials`` trials whole (as in the necessity
test). For every candidate value and
each of ``inits`` random initialisations (model seeds), a model is fitted to the rest and run freely over the
held-out part, restarted from the data's state every ``window`` samples. The chosen value is the first one,
in the order given, whose mean held-out pVar is within ``threshold`` times the noise of the best one's (the
standard deviation of the best value's held-out pVar over the initialisations): list the simplest candidate
first (the strongest prior, the fewest channels), and it is kept unless the data ask for more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from neurofit.config.files import apply_overrides
from neurofit.errors import ConfigError
from neurofit.rnn.config import FitConfig, config_from_dict
from neurofit.rnn.data import RNNData
from neurofit.rnn.fit import fit
from neurofit.rnn.necessity import check_options, held_out_pvar, split_holdout


def with_value(cfg: FitConfig, key: str, value: Any) -> FitConfig:
    """``cfg`` with the dotted entry ``key`` set to ``value``, checked as a config file's entry would be
    (``ConfigError`` naming the key for an unknown key or a bad value)."""
    return config_from_dict(apply_overrides(cfg.to_dict(), {key: value}, {}), f"--key {key}")


def check_threshold(threshold: float) -> None:
    """``ConfigError`` unless the tolerance is positive."""
    if not threshold > 0:
        raise ConfigError(f"--threshold must be positive, got {threshold:g}")


def select(data: RNNData, cfg: FitConfig, key: str, values: list[Any], *, inits: int = 3, holdout: float = 0.2,
           holdout_trials: int = 0, window: int = 50, threshold: float = 2.0, device: str = "cpu",
           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Held-out pVar of every candidate value of ``key`` and the chosen one.

    Args:
        data: normalised activity; cfg: the fit's configuration.
        key: dotted config entry, e.g. ``rls.P0_inter``; values: candidates, simplest first.
        inits: initialisations per value (at least 2); holdout, holdout_trials, window: as in the necessity
            test.
        threshold: tolerance in units of the best value's spread.
        device: ``cpu`` or ``cuda``; log: progress printer.
    Returns:
        ``{"key", "values", "holdout", "holdout_trials", "window", "inits", "threshold", "pvar": [[per init] per
        value], "pvar_mean": [..], "pvar_spread": [..], "best", "chosen"}`` (spreads: standard deviations).
    """
    check_options(inits, 1, holdout, window, holdout_trials)
    check_threshold(threshold)
    candidates = [with_value(cfg, key, value) for value in values]
    train, test = split_holdout(data, holdout, cfg.model.tau, window, holdout_trials)
    scores = np.empty((len(values), inits))
    for v, candidate in enumerate(candidates):
        for k in range(inits):
            seeded = dataclasses.replace(candidate, model=dataclasses.replace(candidate.model,
                                                                             seed=cfg.model.seed + k))
            model = fit(train, seeded, device).model
            scores[v, k] = held_out_pvar(model, test, seeded)
        if log is not None:
            log(f"{key} = {values[v]}: held-out pVar {scores[v].mean():.4f} +- {scores[v].std(ddof=1):.4f}")
    mean, spread = scores.mean(axis=1), scores.std(axis=1, ddof=1)
    best = int(mean.argmax())
    chosen = next(v for v in range(len(values)) if mean[v] >= mean[best] - threshold * spread[best])
    return {"key": key, "values": list(values), "holdout": holdout, "holdout_trials": holdout_trials,
            "window": window, "inits": inits,
            "threshold": threshold, "pvar": scores.tolist(), "pvar_mean": mean.tolist(),
            "pvar_spread": spread.tolist(), "best": values[best], "chosen": values[chosen]}
