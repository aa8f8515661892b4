"""A small version of CURBD's three-region simulation (``--preset curbd``) and a loader for the numpy port of
the reference's training loop (``scripts/curbd_reference.py``), shared by the RNN tests."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

from neurofit.data.simulate.regions import RegionsSimulation
from neurofit.data.simulate.regions_curbd import simulate_curbd

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@functools.cache
def small_curbd(n_trials: int = 1, record_inputs: bool = False) -> RegionsSimulation:
    """threeRegionSim with 3 x 20 units (one link per region pair, 10 sequence and 10 fixed-point inputs),
    3 s plus a 0.5 s lead: 351 samples at 10 ms."""
    return simulate_curbd(0, n_units=60, n_trials=n_trials, duration_s=3.0, lead_s=0.5,
                          record_inputs=record_inputs)


def write_npz(sim: RegionsSimulation, path: Path, **extra: np.ndarray) -> Path:
    """The simulation's rates as an npz for ``neurofit rnn fit``: (neuron, time) for one trial, else
    (trial, neuron, time)."""
    rates = sim.rates.transpose(0, 2, 1)
    np.savez(path, rates=rates[0] if len(rates) == 1 else rates, regions=sim.regions, dt=sim.dt, **extra)
    return path


@functools.cache
def reference_module() -> ModuleType:
    """``scripts/curbd_reference.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location("curbd_reference", SCRIPTS / "curbd_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
