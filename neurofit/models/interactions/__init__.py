"""Interaction layers by config name: ``none``, ``attention``, ``normalization``, ``context_attention``.

A model config lists them under ``model.interactions`` (each a name or ``{name: ..., **options}``);
``build_interactions`` turns that list into one ``InteractionStack`` per recording, and ``build_interaction``
builds one layer, or a stack from a name like ``"attention+normalization"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from neurofit.errors import ConfigError
from neurofit.models.interactions.attention import NeuronAttention
from neurofit.models.interactions.base import Interaction, InteractionStack, NoInteraction
from neurofit.models.interactions.context import ContextAttention
from neurofit.models.interactions.normalization import DivisiveNormalization

if TYPE_CHECKING:
    from neurofit.config.schema import InteractionSpec

INTERACTIONS: dict[str, type[Interaction]] = {
    "none": NoInteraction,
    "attention": NeuronAttention,
    "normalization": DivisiveNormalization,
    "context_attention": ContextAttention,
}


def _build_one(name: str, dims: dict[str, Any], options: dict[str, Any]) -> Interaction:
    if name not in INTERACTIONS:
        raise ConfigError(f"model.interactions: unknown interaction {name!r} (choose from {sorted(INTERACTIONS)})")
    try:
        return INTERACTIONS[name](**dims, **options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.interactions ({name}): {err}") from None


def build_interaction(name: str, *, n_neurons: int, embedding_dim: int, feature_dim: int,
                      positions_um: torch.Tensor | None = None, **options: Any) -> Interaction | InteractionStack:
    """One interaction layer by name with its options, or a stack for names joined by ``+`` (applied in
    that order within their phase), whose options are then given per layer: ``attention={...}``.

    Raises ConfigError for unknown names or options.
    """
    dims = {"n_neurons": n_neurons, "embedding_dim": embedding_dim, "feature_dim": feature_dim,
            "positions_um": positions_um}
    names = name.split("+")
    if len(names) == 1:
        return _build_one(name, dims, options)
    unknown = set(options) - set(names)
    if unknown:
        raise ConfigError(f"model.interactions ({name}): options must be given per layer, got {sorted(unknown)}")
    return InteractionStack([_build_one(n, dims, dict(options.get(n) or {})) for n in names])


def build_interactions(configs: list[InteractionSpec], *, n_neurons: int, embedding_dim: int,
                       feature_dim: int, positions_um: torch.Tensor | None = None) -> InteractionStack:
    """The ``model.interactions`` list of the typed config -> one InteractionStack."""
    dims = {"n_neurons": n_neurons, "embedding_dim": embedding_dim, "feature_dim": feature_dim,
            "positions_um": positions_um}
    return InteractionStack([_build_one(cfg.name, dims, dict(cfg.options)) for cfg in configs])


__all__ = ["INTERACTIONS", "ContextAttention", "DivisiveNormalization", "Interaction", "InteractionStack",
           "NeuronAttention", "NoInteraction", "build_interaction", "build_interactions"]
