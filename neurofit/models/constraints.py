"""Connectivity constraints shared by the CTRNN core and the data-constrained multi-region RNN.

Conventions: a recurrent weight matrix ``W`` has shape (post, pre): row i holds the inputs *to* unit i,
column j the outputs *of* unit j. A sign vector (pre,) holds +1 for excitatory and -1 for inhibitory
units (Dale's law: every outgoing weight of a unit has that unit's sign). Masks are boolean tensors of
the weight's shape; False means "no connection" (the weight is held at zero).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from neurofit.errors import ConfigError


def dale_signs(n: int, e_fraction: float = 0.8, generator: torch.Generator | None = None,
               shuffle: bool = False) -> torch.Tensor:
    """Signs (n,) with round(e_fraction * n) excitatory (+1) units, the rest inhibitory (-1).

    Args:
        n: number of units.
        e_fraction: fraction of excitatory units (0.8 is the usual 4:1 E:I ratio).
        generator: random generator used when ``shuffle`` is True.
        shuffle: place E and I units at random positions instead of E first, then I.
    """
    if not 0.0 <= e_fraction <= 1.0:
        raise ConfigError(f"e_fraction must be in [0, 1], got {e_fraction}")
    n_e = int(round(e_fraction * n))
    signs = torch.cat([torch.ones(n_e), -torch.ones(n - n_e)])
    if shuffle:
        signs = signs[torch.randperm(n, generator=generator)]
    return signs


def unit_signs(groups: Sequence[str], e_fraction: float = 0.8, group_signs: Mapping[str, int] | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-unit Dale signs (n,) for units labelled by group (region or area).

    Groups named in ``group_signs`` get that sign for all units (e.g. striatum -1: its projection neurons
    are GABAergic); every other group gets a random E:I split with ``e_fraction`` excitatory units.
    """
    group_signs = dict(group_signs or {})
    bad = {k: v for k, v in group_signs.items() if v not in (1, -1)}
    if bad:
        raise ConfigError(f"group signs must be +1 or -1, got {bad}")
    labels = list(groups)
    signs = torch.empty(len(labels))
    for name in dict.fromkeys(labels):
        idx = torch.tensor([i for i, g in enumerate(labels) if g == name])
        if name in group_signs:
            signs[idx] = float(group_signs[name])
        else:
            signs[idx] = dale_signs(len(idx), e_fraction, generator, shuffle=True)
    return signs


def apply_dale(weight: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """Sign-constrained weights |W| * sign[pre]: the reparameterisation used with gradient training."""
    return weight.abs() * signs[None, :]


def project_dale(weight: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """Zero every weight whose sign disagrees with its presynaptic unit's sign (in place; returns ``weight``).

    The projection used after unconstrained updates (recursive least squares, ridge, projected gradient)."""
    return weight.masked_fill_(weight * signs[None, :] < 0, 0.0)


def random_mask(shape: tuple[int, int], density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean mask (shape) with each entry True with probability ``density``."""
    if not 0.0 <= density <= 1.0:
        raise ConfigError(f"density must be in [0, 1], got {density}")
    if density == 1.0:
        return torch.ones(shape, dtype=torch.bool)
    return torch.rand(shape, generator=generator) < density


def group_index(groups: Sequence[str], names: Sequence[str]) -> torch.Tensor:
    """Index (n,) of each unit's group in ``names``; ``ConfigError`` for a label not in ``names``."""
    lookup = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(groups) - set(lookup))
    if unknown:
        raise ConfigError(f"unknown group(s) {unknown}; known: {list(names)}")
    return torch.tensor([lookup[g] for g in groups], dtype=torch.long)


def block_table(names: Sequence[str], spec: Mapping[str, Sequence[str]] | None, fill: bool = True) -> torch.Tensor:
    """(M, M) boolean table ``allowed[target, source]`` from ``{target: [sources...]}``.

    ``spec=None`` allows every pair (``fill``). A target missing from ``spec`` receives only from itself.
    """
    m = len(names)
    if spec is None:
        return torch.full((m, m), fill, dtype=torch.bool)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({t for t in spec if t not in index} | {s for v in spec.values() for s in v if s not in index})
    if unknown:
        raise ConfigError(f"projection table names unknown region(s) {unknown}; known: {list(names)}")
    table = torch.eye(m, dtype=torch.bool)
    for target, sources in spec.items():
        for source in sources:
            table[index[target], index[source]] = True
    return table


def expand_blocks(table: torch.Tensor, post_groups: torch.Tensor, pre_groups: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Expand an (M, M) table of per-block values to a unit-level (post, pre) matrix.

    Args:
        table: (M, M) values (bool, or float such as a per-block learning rate), indexed [target, source].
        post_groups: (post,) group index of each target unit.
        pre_groups: (pre,) group index of each source unit; defaults to ``post_groups``.
    """
    pre_groups = post_groups if pre_groups is None else pre_groups
    return table[post_groups[:, None], pre_groups[None, :]]


def multi_area_mask(sizes: Sequence[int], within_density: float | Sequence[float],
                    between_density: float | torch.Tensor, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """Recurrent mask for areas laid out as consecutive blocks.

    Args:
        sizes: units per area, (A,).
        within_density: connection probability inside each area (scalar or (A,)).
        between_density: probability for connections between areas, scalar or (A, A) [target, source]
            (0 forbids a projection; the diagonal of a matrix is ignored).
        generator: random generator.
    Returns:
        (n, n) boolean mask, n = sum(sizes).
    """
    n_areas = len(sizes)
    within = torch.as_tensor(within_density, dtype=torch.float32).expand(n_areas)
    density = torch.as_tensor(between_density, dtype=torch.float32).expand(n_areas, n_areas).clone()
    density[range(n_areas), range(n_areas)] = within
    groups = torch.repeat_interleave(torch.arange(n_areas), torch.as_tensor(sizes))
    prob = expand_blocks(density, groups)
    return torch.rand(prob.shape, generator=generator) < prob


def spectral_radius(weight: torch.Tensor) -> float:
    """Largest absolute eigenvalue of a square matrix."""
    return float(torch.linalg.eigvals(weight.detach().double()).abs().max())

