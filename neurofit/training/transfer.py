"""Core transfer (``neurofit fit --init-from RUN``): start a new run's core from a fitted run's checkpoint.

The core comes from ``RUN/checkpoints/best.ckpt``: the weights validation scored there, i.e. the moving average
when RUN trained with ``training.ema_decay``, else the trained weights (batch-norm running statistics
included). Readouts, output scales and interaction layers are always new (the readouts start at RF-mapped
positions as in any fresh run). Shifters and behaviour modulators are copied only for a recording of the same
name in both runs whose parameters have the same shapes (a new session of a mouse RUN was fitted on); any other
recording's start fresh. Every check runs before the run directory is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurofit.config import ExperimentConfig, experiment_from_data, load_config
from neurofit.data.spec import RecordingSpec
from neurofit.errors import ConfigError, DataError
from neurofit.rundir import RunDir

#: Per-recording parts of an encoder that are copied by recording name when their shapes fit.
PER_RECORDING = ("shifters", "modulators")


@dataclass
class Source:
    """What a new run takes from RUN's best checkpoint: the config and specs saved in it, the encoder state
    validation scored (``state``, keys as in ``Encoder.state_dict``), which weights those are ("moving average"
    or "trained") and the checkpoint's epoch."""

    config: ExperimentConfig
    specs: list[RecordingSpec]
    state: dict[str, torch.Tensor]
    weights: str
    epoch: int | None


def _source(path: Path) -> Source:
    """RUN's best checkpoint, read and checked (``DataError`` naming what is missing or damaged)."""
    run = RunDir(path)
    if not run.file("config.yaml").is_file():
        raise DataError(f"--init-from {path}: not a run directory (no config.yaml)")
    if (kind := load_config(run.file("config.yaml")).type) != "encoder":
        raise DataError(f"--init-from {path}: a {kind} run has no core to start from")
    ckpt = run.read_checkpoint("best")
    where = run.file("checkpoints/best.ckpt")
    try:
        cfg = experiment_from_data(ckpt["hyper_parameters"]["config"], str(where))
        specs = [RecordingSpec.from_dict(s) for s in ckpt["hyper_parameters"]["specs"]]
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: holds no usable config or recording specs ({err})") from None
    prefix, weights = ("ema.module.", "moving average") if cfg.training.ema_decay else ("encoder.", "trained")
    return Source(cfg, specs, _part(ckpt["state_dict"], prefix), weights, ckpt.get("epoch"))


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _check_fits(path: Path, source: Source, cfg: ExperimentConfig, specs: list[RecordingSpec]) -> None:
    """The new recordings are the kind of stimulus RUN's core was trained on, and the config asks for the same
    core (``DataError`` / ``ConfigError`` naming RUN and what differs)."""
    data = cfg.data.path
    source_video = {s.video for s in source.specs}
    source_shapes = {tuple(s.image_shape) for s in source.specs}
    for spec in specs:
        if spec.video not in source_video:
            have, want = ("videos", "static images") if spec.video else ("static images", "videos")
            raise DataError(f"--init-from {path}: its core was trained on {want}; recording '{data}:{spec.name}' "
                            f"holds {have}")
        if tuple(spec.image_shape) not in source_shapes:
            trained = ", ".join(f"{h} x {w}" for h, w in sorted(source_shapes))
            h, w = spec.image_shape
            raise DataError(f"--init-from {path}: its core was trained on {trained} px stimuli; recording "
                            f"'{data}:{spec.name}' has {h} x {w}")
    old, new = source.config.model.core, cfg.model.core
    if old.name != new.name:
        raise ConfigError(f"--init-from {path}: its core is {old.name!r}, model.core of the config is "
                          f"{new.name!r} (use the run's core settings, model.core in {path / 'config.yaml'})")
    differ = [f"{k} {new.options.get(k)!r} (run: {old.options.get(k)!r})"
              for k in sorted(set(old.options) | set(new.options)) if old.options.get(k) != new.options.get(k)]
    if differ:
        raise ConfigError(f"--init-from {path}: model.core of the config differs from the run's {old.name!r} "
                          f"core: {', '.join(differ)} (use model.core of {path / 'config.yaml'})")


def transfer_core(encoder: torch.nn.Module, cfg: ExperimentConfig, specs: list[RecordingSpec]) -> dict[str, Any]:
    """Copy the core of run ``cfg.training.init_from`` into ``encoder`` (and the shifters and modulators of
    same-name recordings whose shapes fit), after checking that it fits ``specs`` and ``cfg.model.core``.
    Returns the record kept in ``train_info.json``: ``run``, ``checkpoint``, ``epoch`` (of that checkpoint),
    ``weights``, ``freeze``, ``core_lr_scale`` and ``copied`` (the encoder parts taken from the run)."""
    path = Path(cfg.training.init_from)
    source = _source(path)
    _check_fits(path, source, cfg, specs)
    try:
        encoder.core.load_state_dict(_part(source.state, "core."))
    except RuntimeError as err:  # the config matched, so the weights themselves are off
        raise DataError(f"{path / 'checkpoints' / 'best.ckpt'}: its core weights do not fit the core its config "
                        f"describes ({str(err).splitlines()[0]})") from None
    copied = ["core"]
    for group in PER_RECORDING:
        for name, module in getattr(encoder, group).items():
            saved = _part(source.state, f"{group}.{name}.")
            own = module.state_dict()
            if saved.keys() == own.keys() and all(saved[k].shape == own[k].shape for k in own):
                module.load_state_dict(saved)
                copied.append(f"{group}.{name}")
    return {"run": str(path), "checkpoint": "checkpoints/best.ckpt", "epoch": source.epoch,
            "weights": source.weights, "freeze": cfg.training.freeze, "core_lr_scale": cfg.training.core_lr_scale,
            "copied": copied}
