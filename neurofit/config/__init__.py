"""Experiment configs: YAML files in ``configs/`` that compose with ``extends:`` and take dotted
command-line overrides (``--set training.lr=0.003``), loaded into one typed object (``ExperimentConfig``,
schema in ``neurofit.config.schema``) that goes from the command line to the model. Every key, type and
range is checked at load time, before anything is written; the resolved config saved in every run is
complete and loads back identically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurofit.config.files import Given, deep_merge, load_data, save_yaml
from neurofit.config.schema import (
    Component,
    CoreSpec,
    DataConfig,
    EnsembleSpec,
    EvaluationConfig,
    ExperimentConfig,
    InteractionSpec,
    ModelConfig,
    ModulatorSpec,
    ReadoutSpec,
    RegularizationConfig,
    RidgeSpec,
    ShifterSpec,
    TrainingConfig,
)
from neurofit.config.typed import Context, Sources, convert, from_data, to_data
from neurofit.errors import ConfigError

#: The model section's schema for each config type.
MODEL_SCHEMAS = {"encoder": ModelConfig, "ridge": RidgeSpec, "ensemble": EnsembleSpec}


def experiment_from_data(data: dict[str, Any], origin: str, sources: Sources | None = None,
                         name: str = "experiment") -> ExperimentConfig:
    """An ExperimentConfig from merged YAML data (defaults fill whatever it leaves out)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a config must be a mapping of sections, got {type(data).__name__}")
    kind = data.get("type", "encoder")
    if kind not in MODEL_SCHEMAS:
        raise ConfigError(f"{origin}: type: must be one of {list(MODEL_SCHEMAS)}, got {kind!r}")
    schema = MODEL_SCHEMAS[kind]
    defaults = ExperimentConfig(name=name, model=schema.default() if hasattr(schema, "default") else schema())
    merged = deep_merge(defaults.to_data(), data, {}, "")
    model_data = merged.pop("model")
    cfg = from_data(ExperimentConfig, merged, origin, sources)
    cfg.model = convert(schema, model_data, origin, ("model",), sources)
    return cfg


def model_from_data(data: dict[str, Any], origin: str = "<model>") -> ModelConfig:
    """An encoder's ModelConfig from a ``model`` mapping (components as names or ``{name: ..., **options}``),
    for building an Encoder in code without a config file."""
    return convert(ModelConfig, data, origin, ("model",))


def load_config(path: str | os.PathLike, overrides: list[str] | None = None,
                options: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Load a config file with its ``extends`` chain, ``KEY=VALUE`` overrides and a command's own options
    (``{"training.freeze": Given("core", "--freeze core")}``) into an ExperimentConfig. Raises
    ``ConfigError`` naming the file (or override or option), the key and the problem."""
    data, sources, origin = load_data(path, overrides, options)
    return experiment_from_data(data, origin, sources, name=Path(path).stem)


def save_config(cfg: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write the complete resolved config as YAML, atomically."""
    save_yaml(cfg.to_data(), path)


__all__ = ["Component", "ConfigError", "Context", "CoreSpec", "DataConfig", "EnsembleSpec", "EvaluationConfig",
           "ExperimentConfig", "Given",
           "InteractionSpec", "ModelConfig", "ModulatorSpec", "ReadoutSpec", "RegularizationConfig", "RidgeSpec",
           "ShifterSpec", "TrainingConfig", "experiment_from_data", "load_config", "model_from_data",
           "save_config", "to_data"]
