"""Shared fixtures: tiny recordings and stores built in the real Recording layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from neurofit.data import make_recording, write_store


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    """Run the suite's small torch models on one intra-op thread: at these sizes a second thread only adds
    synchronisation stalls (measured up to 250x slower on a loaded 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_recording(name: str = "m0", n_neurons: int = 12, n_train: int = 40, n_val: int = 10,
                   n_test_images: int = 4, repeats: int = 3, video_frames: int = 0, seed: int = 0):
    """A small valid Recording (and truth) whose responses are a noisy function of the stimulus."""
    rng = np.random.default_rng(seed)
    n_trials = n_train + n_val + n_test_images * repeats
    sid = np.concatenate([np.arange(n_train + n_val), 1000 + np.tile(np.arange(n_test_images), repeats)])
    tier = np.array(["train"] * n_train + ["validation"] * n_val + ["test"] * (n_test_images * repeats))
    shape = (n_trials, video_frames, 8, 10) if video_frames else (n_trials, 8, 10)
    base = rng.normal(100, 20, size=(n_train + n_val + n_test_images,) + shape[1:])
    stim = base[np.concatenate([np.arange(n_train + n_val), n_train + n_val + np.tile(np.arange(n_test_images),
                                                                                       repeats)])]
    weights = rng.normal(size=(n_neurons, 8 * 10)) / 6  # drive std ~1.5: signal well above the noise
    rates = np.log1p(np.exp(((stim - 100) / 20).reshape(*shape[:-2], -1) @ weights.T))
    resp = rates + rng.gamma(1.0, 0.3, size=rates.shape)
    lead = shape[:-2]
    ds = make_recording(
        stim, resp, name=name, source="test", unit_id=np.arange(n_neurons) + 100,
        x_um=rng.uniform(0, 500, n_neurons), y_um=rng.uniform(0, 500, n_neurons),
        z_um=rng.uniform(100, 300, n_neurons),
        tier=tier, stimulus_id=sid, behavior=rng.random(lead + (3,)), pupil_center=rng.random(lead + (2,)),
        frame_rate_hz=30.0 if video_frames else None)
    truth = xr.Dataset({"rates": (ds["responses"].dims, rates.astype(np.float32))})
    return ds, truth


@pytest.fixture
def tiny_store(tmp_path):
    """A store with two recordings of different neuron counts, with truth."""
    recs, truths = {}, {}
    for i, n in enumerate((12, 9)):
        recs[f"m{i}"], truths[f"m{i}"] = tiny_recording(f"m{i}", n_neurons=n, seed=i)
    return write_store(tmp_path / "tiny.zarr", recs, truths)


def static_and_video_stores(root) -> dict:
    """A static and a video (12-frame) store under ``root``, two recordings each (12 and 9 neurons)."""
    out = {}
    for kind, frames in (("static", 0), ("video", 12)):
        recs = {f"m{i}": tiny_recording(f"m{i}", n_neurons=n, seed=i, video_frames=frames)[0]
                for i, n in enumerate((12, 9))}
        out[kind] = write_store(root / f"{kind}.zarr", recs)
    return out
