"""Config files: YAML that composes with ``extends:`` and takes dotted command-line overrides
(``--set training.lr=0.003``), merged into one nested mapping that remembers which file or override set
each value (so a bad value is reported against the place it was written)."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neurofit.errors import ConfigError
from neurofit.io import atomic_write_text

Sources = dict[tuple[str, ...], str]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-4`` is a number (YAML 1.1, and so plain PyYAML, reads
    it as a string because it has no dot)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """``text`` parsed as YAML (safe types only, YAML 1.2 exponent floats); raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def deep_merge(base: dict, update: dict, sources: Sources, source: str, path: tuple[str, ...] = ()) -> dict:
    """Recursively merge ``update`` into a copy of ``base``, recording ``source`` for every key it sets:
    dicts merge, everything else replaces, and a component dict whose ``name`` changes replaces the old one
    whole (its options belong to the old name)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        old = out.get(key)
        here = path + (str(key),)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("name", old.get("name")) == old.get(
                "name"):
            out[key] = deep_merge(old, value, sources, source, here)
        else:
            for stale in [p for p in sources if p[:len(here)] == here]:
                del sources[stale]
            out[key] = copy.deepcopy(value)
            sources[here] = source
    return out


def yaml_error(path: Path | str, err: yaml.YAMLError) -> ConfigError:
    """One line for a YAML syntax error: the file, line and column, and the parser's problem."""
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return ConfigError(f"{where}: not valid YAML ({problem})")


def read_yaml(path: Path) -> dict:
    """A config file as a mapping (``ConfigError`` naming the file for a missing file or bad YAML)."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = load_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise yaml_error(path, err) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def resolve_file(path: Path, sources: Sources, seen: tuple[Path, ...] = ()) -> dict:
    """A config file with its ``extends`` chain (paths relative to the file) merged in, parents first."""
    if path in seen:
        raise ConfigError(f"{path}: 'extends' cycle through {[str(p) for p in seen]}")
    data = read_yaml(path)
    parents = data.pop("extends", None) or []
    if not isinstance(parents, (str, list)):
        raise ConfigError(f"{path}: extends: must be a file name or a list of them")
    merged: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        # the parent's own resolution records where each of its values came from
        parent_data = resolve_file((path.parent / str(parent)).resolve(), sources, seen + (path,))
        merged = deep_merge(merged, parent_data, {}, "")
    return deep_merge(merged, data, sources, str(path))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. training.lr=0.003")
    key, raw = text.split("=", 1)
    try:
        value = load_yaml(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text}: the value is not valid YAML "
                          f"({getattr(err, 'problem', None) or err})") from None
    keys = key.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set {text}: empty key")
    return keys, value


@dataclass(frozen=True)
class Given:
    """A config value set by a command's own option, with the option as the user wrote it (``--freeze
    core``), which an error about the value names."""

    value: Any
    text: str


def apply_overrides(data: dict, overrides: list[str] | Mapping[str, Any], sources: Sources) -> dict:
    """``data`` with each override set (sections created as needed): ``KEY=VALUE`` texts from ``--set``, or a
    mapping ``{"section.key": value}`` from a command's own options (a ``Given`` value names its option)."""
    data = copy.deepcopy(data)
    items = [parse_override(t) + (f"--set {t}",) for t in overrides] if not isinstance(overrides, Mapping) else \
        [(k.split("."), v.value, v.text) if isinstance(v, Given) else (k.split("."), v, f"option {k}={v!r}")
         for k, v in overrides.items()]
    for keys, value, text in items:
        node = data
        for depth, key in enumerate(keys[:-1]):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{text}: {'.'.join(keys[:depth + 1])} is not a section")
        node[keys[-1]] = value
        here = tuple(keys)
        for stale in [p for p in sources if p[:len(here)] == here]:
            del sources[stale]
        sources[here] = text
    return data


def load_data(path: str | os.PathLike | None, overrides: list[str] | Mapping[str, Any] | None = None,
              options: Mapping[str, Any] | None = None) -> tuple[dict, Sources, str]:
    """The merged mapping of a config file (or of nothing but overrides when ``path`` is None) with
    ``overrides`` and then a command's ``options`` applied, where each value came from, and the name to
    report the config by."""
    sources: Sources = {}
    origin = "<defaults>" if path is None else str(path)
    data = {} if path is None else resolve_file(Path(path).resolve(), sources)
    data = apply_overrides(data, overrides or [], sources)
    return apply_overrides(data, options or {}, sources), sources, origin


def save_yaml(data: dict, path: str | os.PathLike) -> None:
    """Write a resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
