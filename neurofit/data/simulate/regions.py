"""Multi-region RNN ground truth for the data-constrained RNN (after CURBD's three-region simulation).

Each region is a chaotic tanh rate network; regions are coupled by known, sparse projections (some region
pairs have none, so a fit can be checked for false currents). Two external drivers enter through known
weights: a sequence-like travelling bump over ``n_seq`` input channels into the second region, and a
fixed-point input (a constant pattern that switches once) into the third. The dynamics, Euler-stepped at
the sampling step (the same convention ``neurofit.rnn`` fits)::

    h[t+1] = h[t] + dt / tau * (-h[t] + J tanh(h[t]) + W_in u[t])

The truth saved with the recording holds J, W_in, the noise-free rates and the currents into every unit
split by source (each region and the external input), so recovery of inter-region currents is measurable.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from neurofit.data.recording import make_recording
from neurofit.data.store import attrs_json, write_store
from neurofit.errors import ConfigError

REGION_NAMES = ("A", "B", "C", "D", "E", "F")
#: Default projections (source, target). B->A and C->B are absent on purpose.
DEFAULT_PROJECTIONS = (("A", "B"), ("B", "C"), ("C", "A"), ("A", "C"))


@dataclass
class RegionsSimulation:
    """Arrays of one simulated multi-region recording.

    Attributes:
        rates: (trial, frame, neuron) tanh rates.
        inputs: (trial, frame, input_channel) external drivers.
        regions: (neuron,) region label of each unit.
        input_channels: (input_channel,) channel names (``seq_*`` then ``fp_*``).
        J: (neuron, neuron) recurrent weights [post, pre].
        W_in: (neuron, input_channel) input weights.
        currents: (trial, frame, neuron, source) drive into each unit by source; sources are the region
            names then ``"input"``; their sum is the full drive J r + W_in u.
        sources: (source,) names of the last axis of ``currents``.
        dt: sampling step in seconds; tau: unit time constant in seconds.
        projections: (source, target) region pairs that are connected.
    """

    rates: np.ndarray
    inputs: np.ndarray
    regions: np.ndarray
    input_channels: tuple[str, ...]
    J: np.ndarray
    W_in: np.ndarray
    currents: np.ndarray
    sources: tuple[str, ...]
    dt: float
    tau: float
    projections: tuple[tuple[str, str], ...]


def simulate_regions(seed: int = 0, *, n_regions: int = 3, n_units: int = 300, n_samples: int = 1200,
                     n_trials: int = 1, dt: float = 0.01, tau: float = 0.1, g: tuple[float, ...] = (1.8, 1.5, 1.5),
                     projections: tuple[tuple[str, str], ...] = DEFAULT_PROJECTIONS, density: float = 0.1,
                     inter_gain: float = 0.5, n_seq: int = 10, n_fp: int = 2, input_gain: float = 1.0,
                     input_fraction: float = 0.5, burn_in: int = 200) -> RegionsSimulation:
    """Simulate coupled tanh-RNN regions with known projections and external drivers.

    Args:
        seed: random seed (same seed, same data).
        n_regions: number of regions (2 to 6); n_units: total units, split evenly.
        n_samples: samples per trial; n_trials: trials, each from its own random initial state.
        dt, tau: sampling step and time constant in seconds.
        g: gain of the recurrent weights inside each region (cycled if shorter than ``n_regions``).
        projections: connected (source, target) region pairs; ``density`` of their entries are non-zero,
            with standard deviation ``inter_gain / sqrt(density * n_source)``.
        n_seq: channels of the travelling-bump driver into the second region; n_fp: channels of the
            fixed-point driver into the third; ``input_fraction`` of those regions' units receive them.
        input_gain: scale of the input weights.
        burn_in: samples simulated and discarded before each trial so it starts on the attractor.
    Returns:
        A ``RegionsSimulation``.
    """
    if not 2 <= n_regions <= len(REGION_NAMES):
        raise ConfigError(f"n_regions must be 2..{len(REGION_NAMES)}, got {n_regions}")
    names = REGION_NAMES[:n_regions]
    unknown = sorted({r for pair in projections for r in pair} - set(names))
    if unknown:
        raise ConfigError(f"projections name region(s) {unknown} outside {list(names)}")
    rng = np.random.default_rng(seed)
    sizes = np.full(n_regions, n_units // n_regions)
    sizes[: n_units % n_regions] += 1
    regions = np.repeat(np.array(names), sizes)
    index = {name: np.flatnonzero(regions == name) for name in names}

    J = np.zeros((n_units, n_units))
    for k, name in enumerate(names):
        idx = index[name]
        J[np.ix_(idx, idx)] = g[k % len(g)] * rng.standard_normal((len(idx), len(idx))) / math.sqrt(len(idx))
    for source, target in projections:
        post, pre = index[target], index[source]
        mask = rng.random((len(post), len(pre))) < density
        scale = inter_gain / math.sqrt(density * len(pre))
        J[np.ix_(post, pre)] = mask * scale * rng.standard_normal((len(post), len(pre)))

    total = n_samples + burn_in
    inputs, channels = _drivers(total, n_seq, n_fp, burn_in)
    W_in = np.zeros((n_units, n_seq + n_fp))
    drivers = ((index[names[1 % n_regions]], np.arange(n_seq)),
               (index[names[2 % n_regions]], np.arange(n_seq, n_seq + n_fp)))
    for target, cols in drivers:
        receivers = rng.choice(target, size=int(round(input_fraction * len(target))), replace=False)
        W_in[np.ix_(receivers, cols)] = input_gain * rng.standard_normal((len(receivers), len(cols)))

    rates = np.empty((n_trials, n_samples, n_units))
    currents = np.empty((n_trials, n_samples, n_units, n_regions + 1))
    alpha = dt / tau
    for trial in range(n_trials):
        h = rng.uniform(-1.0, 1.0, n_units)
        for t in range(total):
            r = np.tanh(h)
            drive_in = W_in @ inputs[t]
            if t >= burn_in:
                rates[trial, t - burn_in] = r
                for k, name in enumerate(names):
                    currents[trial, t - burn_in, :, k] = J[:, index[name]] @ r[index[name]]
                currents[trial, t - burn_in, :, -1] = drive_in
            h = h + alpha * (-h + J @ r + drive_in)
    u = np.broadcast_to(inputs[burn_in:], (n_trials, n_samples, inputs.shape[1])).copy()
    return RegionsSimulation(rates=rates, inputs=u, regions=regions, input_channels=channels, J=J, W_in=W_in,
                             currents=currents, sources=(*names, "input"), dt=dt, tau=tau,
                             projections=tuple(tuple(p) for p in projections))


def _drivers(total: int, n_seq: int, n_fp: int, burn_in: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """(total, n_seq + n_fp) driver time courses and their names.

    The sequence channels are Gaussian bumps that peak one after another across the recorded part (a
    travelling bump); the fixed-point channels hold one random pattern for the first 60% of it and
    another afterwards."""
    t = np.arange(total, dtype=float) - burn_in
    span = total - burn_in
    centres = (np.arange(n_seq) + 0.5) * span / n_seq
    width = span / n_seq
    seq = np.exp(-((t[:, None] - centres[None, :]) ** 2) / (2 * width**2))
    patterns = np.random.default_rng(12345).uniform(-1.0, 1.0, (2, n_fp))
    fp = np.where((t < 0.6 * span)[:, None], patterns[0], patterns[1])
    names = tuple(f"seq_{i}" for i in range(n_seq)) + tuple(f"fp_{i}" for i in range(n_fp))
    return np.concatenate([seq, fp], axis=1), names


def regions_recording(sim: RegionsSimulation, name: str = "regions") -> tuple[xr.Dataset, xr.Dataset]:
    """The Recording (responses, inputs, ``region`` coordinate) and its truth dataset."""
    n_trials, _, n_units = sim.rates.shape
    order = {r: i for i, r in enumerate(dict.fromkeys(sim.regions.tolist()))}
    x_um = np.array([order[r] * 1000.0 for r in sim.regions]) + np.linspace(0.0, 500.0, n_units)
    ds = make_recording(
        None, sim.rates, name=name, source="neurofit.simulate.regions",
        unit_id=np.arange(n_units), x_um=x_um, y_um=np.zeros(n_units), z_um=np.zeros(n_units),
        tier=np.full(n_trials, "train"), stimulus_id=np.arange(n_trials), inputs=sim.inputs,
        input_channels=sim.input_channels, frame_rate_hz=1.0 / sim.dt, neuron_coords={"region": sim.regions})
    truth = xr.Dataset(
        {
            "rates": (("trial", "frame", "neuron"), sim.rates.astype(np.float32)),
            "currents": (("trial", "frame", "neuron", "source"), sim.currents.astype(np.float32)),
            "J": (("neuron", "source_neuron"), sim.J),
            "W_in": (("neuron", "input_channel"), sim.W_in),
        },
        coords={"source": list(sim.sources), "input_channel": list(sim.input_channels),
                "region": ("neuron", sim.regions)},
        attrs={"tau_s": sim.tau, "dt_s": sim.dt, "projections": attrs_json([list(p) for p in sim.projections])},
    )
    return ds, truth


def simulate_regions_store(out: str | os.PathLike, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Simulate the default three-region dataset (300 units, 1,200 samples) and write it to a store.

    The store holds one recording ``regions`` with its truth group (J, W_in, noise-free rates, currents by
    source). Returns the store path.
    """
    ds, truth = regions_recording(simulate_regions(seed))
    return write_store(out, {"regions": ds}, {"regions": truth}, overwrite=overwrite)
