"""Multi-region RNN ground truth for the data-constrained RNN: coupled tanh rate networks with known
currents, in two presets.

- ``default``: each region a chaotic tanh network; regions coupled by known, random sparse projections (some
  region pairs have none, so a fit can be checked for false currents); a travelling-bump driver over
  ``n_seq`` channels into the second region and a fixed-point driver into the third, both recorded as the
  Recording's ``inputs``.
- ``curbd``: CURBD's own three-region simulation (``threeRegionSim``, Perich et al.), built in
  ``regions_curbd.py``: one-to-one inter-region links on 5% of units, a sequence into B and a fixed point into
  C that are kept out of the Recording unless asked for.

Both share the dynamics, Euler-stepped at the sampling step (the convention ``neurofit.rnn`` fits)::

    h[t+1] = h[t] + dt / tau * (-h[t] + J tanh(h[t]) + W_in u[t])

and the truth saved with the recording: J, W_in, the outside inputs u, the rates and the currents into every
unit split by source (each region and each group of outside inputs), so recovery of inter-region currents is
measurable.
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
PRESETS = ("default", "curbd")


@dataclass
class RegionsSimulation:
    """Arrays of one simulated multi-region recording.

    Attributes:
        rates: (trial, frame, neuron) recorded rates: tanh(h) / ``rate_scale``.
        inputs: (trial, frame, input_channel) outside drivers u.
        regions: (neuron,) region label of each unit (contiguous blocks).
        input_channels: (input_channel,) channel names.
        input_sources: (input_channel,) the source group of each channel (``input``, ``sequence``, ...).
        J: (neuron, neuron) recurrent weights [post, pre].
        W_in: (neuron, input_channel) input weights.
        currents: (trial, frame, neuron, source) drive into each unit by source; sources are the region names
            then the input groups; their sum is the full drive J tanh(h) + W_in u.
        sources: (source,) names of the last axis of ``currents``.
        dt: sampling step in seconds; tau: unit time constant in seconds.
        projections: (source, target) region pairs that are connected.
        rate_scale: (neuron,) divisor applied to tanh(h) (CURBD normalises each region by its peak; 1 else).
        record_inputs: whether the Recording carries ``inputs`` (the truth always does).
        preset: the preset that made it.
    """

    rates: np.ndarray
    inputs: np.ndarray
    regions: np.ndarray
    input_channels: tuple[str, ...]
    input_sources: np.ndarray
    J: np.ndarray
    W_in: np.ndarray
    currents: np.ndarray
    sources: tuple[str, ...]
    dt: float
    tau: float
    projections: tuple[tuple[str, str], ...]
    rate_scale: np.ndarray
    record_inputs: bool = True
    preset: str = "default"


def region_slices(regions: np.ndarray) -> dict[str, slice]:
    """Each region's units as a slice (regions are contiguous blocks, in order of first appearance)."""
    names = list(dict.fromkeys(regions.tolist()))
    out = {}
    for name in names:
        idx = np.flatnonzero(regions == name)
        out[name] = slice(int(idx[0]), int(idx[-1]) + 1)
    return out


def integrate(J: np.ndarray, W_in: np.ndarray, inputs: np.ndarray, h0: np.ndarray, regions: np.ndarray,
              input_sources: np.ndarray, dt: float, tau: float, burn_in: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Euler-step one trial and record its rates and per-source currents.

    Args:
        J: (N, N); W_in: (N, C); inputs: (burn_in + T, C) outside drivers; h0: (N,) initial currents;
        regions: (N,) labels; input_sources: (C,) group of each input channel; dt, tau: seconds;
        burn_in: leading steps simulated but not recorded.
    Returns:
        rates (T, N) tanh rates and currents (T, N, regions + input groups).
    """
    blocks = list(region_slices(regions).values())
    # Each input group's columns and weights, taken once: a boolean index inside the loop copies W_in each step.
    groups = [np.flatnonzero(input_sources == g) for g in dict.fromkeys(input_sources.tolist())]
    group_weights = [W_in[:, cols] for cols in groups]
    n_samples = inputs.shape[0] - burn_in
    rates = np.empty((n_samples, len(h0)))
    currents = np.empty((n_samples, len(h0), len(blocks) + len(groups)))
    now = np.empty((len(h0), len(blocks) + len(groups)))  # this step's currents; their sum is the drive
    alpha = dt / tau
    h = h0
    for t in range(inputs.shape[0]):
        r = np.tanh(h)
        for k, block in enumerate(blocks):
            now[:, k] = J[:, block] @ r[block]
        for k, (cols, weights) in enumerate(zip(groups, group_weights)):
            now[:, len(blocks) + k] = weights @ inputs[t, cols]
        if t >= burn_in:
            rates[t - burn_in], currents[t - burn_in] = r, now
        h = h + alpha * (-h + now.sum(axis=1))
    return rates, currents


def simulate_regions(seed: int = 0, *, n_regions: int = 3, n_units: int = 300, n_samples: int = 1200,
                     n_trials: int = 1, dt: float = 0.01, tau: float = 0.1, g: tuple[float, ...] = (1.8, 1.5, 1.5),
                     projections: tuple[tuple[str, str], ...] = DEFAULT_PROJECTIONS, density: float = 0.1,
                     inter_gain: float = 0.5, n_seq: int = 10, n_fp: int = 2, input_gain: float = 1.0,
                     input_fraction: float = 0.5, burn_in: int = 200) -> RegionsSimulation:
    """The ``default`` preset: coupled tanh-RNN regions with random sparse projections and external drivers.

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
    regions = split_units(n_units, names)
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

    inputs, channels = _drivers(n_samples + burn_in, n_seq, n_fp, burn_in)
    W_in = np.zeros((n_units, n_seq + n_fp))
    drivers = ((index[names[1 % n_regions]], np.arange(n_seq)),
               (index[names[2 % n_regions]], np.arange(n_seq, n_seq + n_fp)))
    for target, cols in drivers:
        receivers = rng.choice(target, size=int(round(input_fraction * len(target))), replace=False)
        W_in[np.ix_(receivers, cols)] = input_gain * rng.standard_normal((len(receivers), len(cols)))

    sources = np.full(n_seq + n_fp, "input")
    runs = [integrate(J, W_in, inputs, rng.uniform(-1.0, 1.0, n_units), regions, sources, dt, tau, burn_in)
            for _ in range(n_trials)]
    u = np.broadcast_to(inputs[burn_in:], (n_trials, n_samples, inputs.shape[1])).copy()
    return RegionsSimulation(rates=np.stack([r for r, _ in runs]), inputs=u, regions=regions,
                             input_channels=channels, input_sources=sources, J=J, W_in=W_in,
                             currents=np.stack([c for _, c in runs]),
                             sources=(*names, "input"), dt=dt, tau=tau,
                             projections=tuple(tuple(p) for p in projections), rate_scale=np.ones(n_units))


def split_units(n_units: int, names: tuple[str, ...]) -> np.ndarray:
    """(n_units,) region labels: contiguous blocks as equal as possible (the first ones one larger)."""
    sizes = np.full(len(names), n_units // len(names))
    sizes[: n_units % len(names)] += 1
    return np.repeat(np.array(names), sizes)


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
    """The Recording (responses, ``region`` coordinate, and ``inputs`` when ``sim.record_inputs``) and its
    truth dataset (rates, currents by source, J, W_in, the outside inputs, the rate scale)."""
    n_trials, _, n_units = sim.rates.shape
    order = {r: i for i, r in enumerate(dict.fromkeys(sim.regions.tolist()))}
    x_um = np.array([order[r] * 1000.0 for r in sim.regions]) + np.linspace(0.0, 500.0, n_units)
    given = {"inputs": sim.inputs, "input_channels": sim.input_channels} if sim.record_inputs else {}
    ds = make_recording(
        None, sim.rates, name=name, source=f"neurofit.simulate.regions.{sim.preset}",
        unit_id=np.arange(n_units), x_um=x_um, y_um=np.zeros(n_units), z_um=np.zeros(n_units),
        tier=np.full(n_trials, "train"), stimulus_id=np.arange(n_trials), frame_rate_hz=1.0 / sim.dt,
        neuron_coords={"region": sim.regions}, **given)
    truth = xr.Dataset(
        {
            "rates": (("trial", "frame", "neuron"), sim.rates.astype(np.float32)),
            "currents": (("trial", "frame", "neuron", "source"), sim.currents.astype(np.float32)),
            "inputs": (("trial", "frame", "input_channel"), sim.inputs.astype(np.float32)),
            "J": (("neuron", "source_neuron"), sim.J),
            "W_in": (("neuron", "input_channel"), sim.W_in),
            "rate_scale": (("neuron",), sim.rate_scale),
        },
        coords={"source": list(sim.sources), "input_channel": list(sim.input_channels),
                "input_source": ("input_channel", sim.input_sources), "region": ("neuron", sim.regions)},
        attrs={"tau_s": sim.tau, "dt_s": sim.dt, "projections": attrs_json([list(p) for p in sim.projections]),
               "preset": sim.preset, "inputs_recorded": int(sim.record_inputs),
               "description": "rates = tanh(h) / rate_scale as recorded; currents in units of h (drive into "
                              "each unit by source region or input group; they sum to J tanh(h) + W_in u)"},
    )
    return ds, truth


def simulate_regions_store(out: str | os.PathLike, *, preset: str = "default", seed: int = 0,
                           units: int = 300, trials: int = 1, amp_inter_region: float | None = None,
                           record_inputs: bool = False, overwrite: bool = False) -> Path:
    """Simulate a preset and write it to a store with one recording ``regions`` and its truth group.

    Args:
        preset: ``default`` (1,200 samples, inputs recorded) or ``curbd`` (CURBD's ``threeRegionSim``, 1,201
            samples; its outside inputs only in the truth unless ``record_inputs``).
        units: total units, split evenly over three regions; trials: trials (new initial states).
        amp_inter_region: CURBD's ``ampInterReg`` (curbd preset only; default 0.02).
    Returns:
        The store path.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown regions preset {preset!r} (choose from {list(PRESETS)})")
    if units < 3 or trials < 1:
        raise ConfigError(f"--units must be at least 3 (one per region) and --trials at least 1, got {units} and "
                          f"{trials}")
    if preset == "curbd":
        from neurofit.data.simulate.regions_curbd import CURBD_DEFAULTS, simulate_curbd

        amp = CURBD_DEFAULTS["amp_inter_region"] if amp_inter_region is None else amp_inter_region
        sim = simulate_curbd(seed, n_units=units, n_trials=trials, amp_inter_region=amp,
                             record_inputs=record_inputs)
    else:
        if amp_inter_region is not None or record_inputs:
            raise ConfigError("--amp-inter-region and --record-inputs apply to --preset curbd (the default "
                              "preset records its inputs and sets its projections itself)")
        sim = simulate_regions(seed, n_units=units, n_trials=trials)
    ds, truth = regions_recording(sim)
    return write_store(out, {"regions": ds}, {"regions": truth}, overwrite=overwrite)
