"""CURBD's three-region generative model (``threeRegionSim`` of rajanlab/CURBD, Perich et al. 2020), as
published in its Python port ``curbd.py``.

Three tanh networks A (chaotic, g 1.8), B (g 1.5, driven by a sequence) and C (g 1.5, driven by a fixed point),
each Euler-stepped at the sampling step (dt 10 ms, tau 100 ms) for T = 10 s plus a 2 s lead: 1,201 samples.
Regions are linked one-to-one: for each ordered pair, ``fracInterReg`` (5%) of the target's units i receive
``ampInterReg`` (0.02) times the rate of unit i of the source. The sequence (a bump sweeping over B's units
in the first half, then held) enters ``fracExternal`` (50%) of B's units one-to-one with weight ``ampInB``
(1); the fixed point (two constant patterns, switching after 6 s) enters half of C's units with ``ampInC``
(-1). Each region's rates are divided by their peak, as the reference returns them.

Random draws follow the reference in order (numpy's legacy ``RandomState(seed)``: J and initial state of A,
B, C, then the link permutations A->B, A->C, B->A, B->C, C->A, C->B, sequence->B, fixed point->C), so a seed
reproduces ``np.random.seed(seed); threeRegionSim()``. Beyond the reference (whose regions must be equal):
``n_units`` is the total, split as evenly as possible; each region's J is scaled by its own size (the
reference scales C by gb / sqrt(Na), the same number when sizes and gains are equal); the drivers are built
for each driven region's size; later trials start from new random states. The MATLAB original differs in
``ampInterReg`` (0.2, see ``amp_inter_region``) and in the first sample of two hold periods.
"""

from __future__ import annotations

import math

import numpy as np

from neurofit.data.simulate.regions import RegionsSimulation, integrate, split_units
from neurofit.errors import ConfigError

#: threeRegionSim's parameters (curbd.py defaults).
CURBD_DEFAULTS = {"g": (1.8, 1.5, 1.5), "tau": 0.1, "frac_inter_region": 0.05, "amp_inter_region": 0.02,
                  "frac_external": 0.5, "amp_in_b": 1.0, "amp_in_c": -1.0, "dt": 0.01, "duration_s": 10.0,
                  "lead_s": 2.0, "bump_std": 0.2}
NAMES = ("A", "B", "C")
#: Link order of the reference's draws: (source, target).
LINKS = (("A", "B"), ("A", "C"), ("B", "A"), ("B", "C"), ("C", "A"), ("C", "B"))


def simulate_curbd(seed: int = 0, *, n_units: int = 300, n_trials: int = 1,
                   amp_inter_region: float = CURBD_DEFAULTS["amp_inter_region"],
                   duration_s: float = CURBD_DEFAULTS["duration_s"], lead_s: float = CURBD_DEFAULTS["lead_s"],
                   record_inputs: bool = False) -> RegionsSimulation:
    """Simulate threeRegionSim.

    Args:
        seed: seed of the legacy ``RandomState`` the reference draws from.
        n_units: total units (the reference: 3 x 100); n_trials: trials, the first from the reference's initial
            state, later ones from new uniform(-1, 1) states (network and drivers fixed).
        amp_inter_region: ``ampInterReg``, weight of every inter-region link.
        duration_s, lead_s: ``T`` and ``leadTime`` in seconds (the drivers need ``duration_s`` >= 3).
        record_inputs: give the Recording the outside inputs (the reference's fit is not given them).
    Returns:
        A ``RegionsSimulation`` with sources A, B, C, ``sequence``, ``fixed_point``.
    """
    p = CURBD_DEFAULTS
    if duration_s < 3.0:  # the fixed point copies the bump at sample 300
        raise ConfigError(f"threeRegionSim needs a duration of at least 3 s, got {duration_s:g} s")
    dt, tau = p["dt"], p["tau"]
    rs = np.random.RandomState(seed)
    regions = split_units(n_units, NAMES)
    index = {name: np.flatnonzero(regions == name) for name in NAMES}
    J = np.zeros((n_units, n_units))
    h0 = np.empty(n_units)
    for name, g in zip(NAMES, p["g"]):
        idx = index[name]
        J[np.ix_(idx, idx)] = g / math.sqrt(len(idx)) * rs.randn(len(idx), len(idx))
        h0[idx] = 2 * rs.rand(len(idx), 1)[:, 0] - 1
    for source, target in LINKS:
        post, pre = index[target], index[source]
        n = min(len(post), len(pre))
        chosen = rs.permutation(n)[: int(p["frac_inter_region"] * n)]
        J[post[chosen], pre[chosen]] = amp_inter_region

    t_data = np.arange(0, duration_s + dt, dt)
    lead = math.ceil(lead_s / dt)
    n_samples = len(t_data) + len(np.arange(t_data[-1] + dt, duration_s + lead_s, dt))
    seq, fp = _drivers(len(index["B"]), len(index["C"]), t_data, p["bump_std"])
    drivers = [np.concatenate([np.repeat(d[:, 1:2], lead, axis=1), d], axis=1)[:, :n_samples] for d in (seq, fp)]
    inputs = np.concatenate(drivers).T  # (frame, channel): sequence channels, then fixed-point channels
    W_in = np.zeros((n_units, inputs.shape[1]))
    for k, (name, amp) in enumerate((("B", p["amp_in_b"]), ("C", p["amp_in_c"]))):
        idx = index[name]
        chosen = rs.permutation(len(idx))[: int(p["frac_external"] * len(idx))]
        W_in[idx[chosen], k * len(index["B"]) + chosen] = amp
    sources = np.repeat(["sequence", "fixed_point"], [len(index["B"]), len(index["C"])])
    channels = tuple(f"seq_{i}" for i in range(len(index["B"]))) + tuple(f"fp_{i}" for i in range(len(index["C"])))

    starts = [h0] + [2 * rs.rand(n_units) - 1 for _ in range(n_trials - 1)]
    runs = [integrate(J, W_in, inputs, start, regions, sources, dt, tau) for start in starts]
    raw = np.stack([r for r, _ in runs])  # (trial, frame, neuron)
    scale = np.empty(n_units)
    for idx in index.values():  # the reference divides each region's rates by their peak
        scale[idx] = raw[..., idx].max()
    return RegionsSimulation(
        rates=raw / scale, inputs=np.broadcast_to(inputs, (n_trials, *inputs.shape)).copy(), regions=regions,
        input_channels=channels, input_sources=sources, J=J, W_in=W_in, currents=np.stack([c for _, c in runs]),
        sources=(*NAMES, "sequence", "fixed_point"), dt=dt, tau=tau,
        projections=tuple((s, t) for s, t in LINKS if amp_inter_region != 0), rate_scale=scale,
        record_inputs=record_inputs, preset="curbd")


def _drivers(n_b: int, n_c: int, t_data: np.ndarray, bump_std: float) -> tuple[np.ndarray, np.ndarray]:
    """The sequence (n_b, time) and fixed-point (n_c, time) drivers before the lead, in [0, 1].

    The sequence: unit i's bump exp(-(i - sig - n t / (t_end / 2))^2 / (2 sig^2)) with sig = bump_std * n,
    held from 100 samples before the middle on; the fixed point: the bump's values at samples 10 and 300,
    switching 100 samples after the middle. Both pass through log((x + 0.01) / (1 - x + 0.01)), then are
    shifted and scaled to [0, 1]."""
    def bump(n: int) -> np.ndarray:
        sig = bump_std * n
        x = np.exp(-((np.arange(n)[:, None] - sig - n * t_data / (t_data[-1] / 2)) ** 2) / (2 * sig**2))
        hold = math.ceil(len(t_data) / 2) - 100
        x[:, hold:] = x[:, hold:hold + 1]
        return x

    def squash(x: np.ndarray) -> np.ndarray:
        h = np.log((x + 0.01) / (1 - x + 0.01))
        h = h - h.min()
        return h / h.max()

    switch = math.ceil(len(t_data) / 2) + 100
    x_c = bump(n_c)
    fp = np.where(np.arange(len(t_data)) < switch, x_c[:, 10:11], x_c[:, 300:301])
    return squash(bump(n_b)), squash(fp)
