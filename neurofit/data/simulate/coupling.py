"""Planted lateral coupling of the V1 twin: which structure (``V1Params.coupling_structure``) and its summary
for the truth group.

Two structures, each a matrix J (N, N), row i receiving from column j, zero diagonal, scaled so that the
largest summed absolute input of any neuron is ``coupling_strength`` (< 1: r <- relu(u + J r) contracts):

* ``distance``: dense, excitation within ~ ``coupling_length_um``, a weaker and broader inhibitory surround,
  log-normal jitter per synapse. Any decreasing function of cortical distance ranks its pairs well.
* ``tuning``: sparse and positive, like-to-like (Ko et al. 2011, mouse V1 L2/3): a pair is connected with a
  probability that grows with the similarity of the two neurons' preferred orientations and does not depend on
  cortical distance (orientation preference is salt-and-pepper in mouse V1, so it is independent of position
  here too). Distance alone carries no information about it.
"""

from __future__ import annotations

import numpy as np

from neurofit.data.simulate.v1_params import V1Params

#: Log-normal jitter (sd of the log weight) of every planted synapse.
_WEIGHT_JITTER = 0.3


def draw_coupling(rng: np.random.Generator, structure_rng: np.random.Generator, distance_um: np.ndarray,
                  orientation_rad: np.ndarray, p: V1Params) -> np.ndarray:
    """The planted coupling J (N, N) of ``p.coupling_structure``.

    ``rng`` is the population's stream and is used exactly as before the structures existed (one (N, N)
    normal draw for the jitter), so the other neuron parameters are the same whatever the structure;
    ``structure_rng`` draws what only the ``tuning`` structure needs (which pairs are connected).
    distance_um: (N, N) cortical distances; orientation_rad: (N,) preferred orientations.
    """
    if p.coupling_structure == "distance":
        return distance_coupling(rng, distance_um, p)
    jitter = np.exp(_WEIGHT_JITTER * rng.standard_normal(distance_um.shape))
    return _scaled(_like_to_like(structure_rng, orientation_rad, p) * jitter, p.coupling_strength)


def distance_coupling(rng: np.random.Generator, distance_um: np.ndarray, p: V1Params) -> np.ndarray:
    """The ``distance`` structure for (N, N) distances: excitation near, weaker inhibition farther, with
    log-normal jitter per synapse (one (N, N) normal draw from ``rng``)."""
    profile = (np.exp(-0.5 * (distance_um / p.coupling_length_um) ** 2)
               - p.inhibition_ratio * np.exp(-0.5 * (distance_um / p.inhibition_length_um) ** 2))
    return _scaled(profile * np.exp(_WEIGHT_JITTER * rng.standard_normal(distance_um.shape)), p.coupling_strength)


def _scaled(weights: np.ndarray, strength: float) -> np.ndarray:
    """Zero diagonal, and the largest summed absolute input of any neuron equal to ``strength``."""
    np.fill_diagonal(weights, 0.0)
    norm = np.abs(weights).sum(1).max()
    return weights * (strength / norm) if norm > 0 else weights


def _like_to_like(rng: np.random.Generator, orientation_rad: np.ndarray, p: V1Params) -> np.ndarray:
    """0/1 connections (N, N): P(i <- j) proportional to exp(kappa cos 2(theta_i - theta_j)), scaled so that
    the mean over pairs is ``coupling_density`` (capped at 1)."""
    n = len(orientation_rad)
    similarity = np.cos(2 * (orientation_rad[:, None] - orientation_rad[None, :]))
    affinity = np.exp(p.coupling_tuning_kappa * similarity)
    off = ~np.eye(n, dtype=bool)
    prob = np.minimum(1.0, p.coupling_density * affinity / affinity[off].mean()) if n > 1 else affinity * 0
    return (rng.random((n, n)) < prob).astype(np.float64)


def coupling_summary(coupling: np.ndarray, p: V1Params) -> dict:
    """What was planted, for the truth's ``coupling_structure`` attribute: structure, sign, density (fraction
    of off-diagonal pairs with J != 0), what it depends on, and how trial-to-trial fluctuations meet it."""
    n = coupling.shape[0]
    off = coupling[~np.eye(n, dtype=bool)]
    sign = "positive" if (off >= 0).all() else "negative" if (off <= 0).all() else "mixed"
    depends = {"distance": "cortical distance (excitatory centre, inhibitory surround)",
               "tuning": "orientation-tuning similarity (like-to-like), independent of cortical distance"}
    if p.fluctuation_cv == 0:
        fluctuations = "none (coupling acts on noise-free drives only)"
    elif p.fluctuation_through_coupling:
        fluctuations = "through coupling (private fluctuations of the drive propagate to coupled neurons)"
    else:
        fluctuations = "private (after the coupling; they do not propagate)"
    return {"structure": p.coupling_structure, "sign": sign, "density": float((off != 0).mean()) if n > 1 else 0.0,
            "depends_on": depends[p.coupling_structure], "strength": p.coupling_strength,
            "fluctuation_cv": p.fluctuation_cv, "fluctuations": fluctuations}
