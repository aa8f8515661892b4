"""Experiment configs: YAML files in ``configs/`` that compose with ``extends:`` and take dotted
command-line overrides (``--set training.lr=0.003``). The resolved config is saved in every run dir and
is enough to reproduce the run."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from neurofit.errors import ConfigError
from neurofit.io import atomic_write_text

SECTIONS = {"name", "description", "type", "extends", "data", "model", "training", "evaluation"}
MODEL_TYPES = ("encoder", "ridge")


def deep_merge(base: dict, update: dict) -> dict:
    """Recursively merge ``update`` into a copy of ``base``: dicts merge, everything else replaces, and a
    component dict whose ``name`` changes replaces the old one whole (its options belong to the old name)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("name", old.get("name")) == old.get(
                "name"):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    unknown = sorted(set(data) - SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown} (allowed: {sorted(SECTIONS)})")
    return data


def _resolve(path: Path, seen: tuple[Path, ...]) -> dict:
    if path in seen:
        raise ConfigError(f"{path}: 'extends' cycle through {[str(p) for p in seen]}")
    data = _read_yaml(path)
    parents = data.pop("extends", None) or []
    merged: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged = deep_merge(merged, _resolve((path.parent / parent).resolve(), seen + (path,)))
    return deep_merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. training.lr=0.003")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key.strip().split("."), value


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> dict:
    """Load a config, apply ``extends`` chains and dotted overrides, and check its type.

    Returns the resolved config dict with sections ``name``, ``type`` ("encoder" or "ridge"), ``data``,
    ``model``, ``training``, ``evaluation``."""
    path = Path(path).resolve()
    cfg = _resolve(path, ())
    for text in overrides or []:
        keys, value = parse_override(text)
        if keys[0] not in SECTIONS:
            raise ConfigError(f"override {text!r}: unknown section {keys[0]!r}")
        node = cfg
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section")
        node[keys[-1]] = value
    cfg.setdefault("name", path.stem)
    cfg.setdefault("type", "encoder")
    for section in ("data", "model", "training", "evaluation"):
        cfg.setdefault(section, {})
    if cfg["type"] not in MODEL_TYPES:
        raise ConfigError(f"{path}: unknown type {cfg['type']!r} (choose from {list(MODEL_TYPES)})")
    return cfg


def save_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write a resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False))
