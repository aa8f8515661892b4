"""Gain against reliability: a planted gain that grows with the neurons' oracle correlation is found (rising bin
means, rho > 0 at a small p, bands that cover the truth), and a flat one is not."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neurofit.analysis.reliability import gain_by_reliability


def _neuron_r(gain: np.ndarray, base: np.ndarray) -> xr.DataArray:
    return xr.DataArray(np.stack([base, base + gain]), dims=("architecture", "neuron"),
                        coords={"architecture": ["a", "b"]})


def test_a_gain_that_grows_with_reliability_is_found_and_a_flat_one_is_not():
    rng = np.random.default_rng(0)
    oracle = rng.uniform(0.1, 0.9, 600)
    base = rng.uniform(0.1, 0.5, 600)
    rising = gain_by_reliability(_neuron_r(0.05 * oracle + rng.normal(0, 0.01, 600), base), oracle)
    t = rising.sel(pair="b vs a")
    assert np.all(np.diff(t["gain_mean"].values) > 0)
    assert t["gain_reliability_rho"] > 0.5 and t["gain_reliability_p"] < 1e-6
    centres = (rising["reliability_bin_low"] + rising["reliability_bin_high"]).values / 2
    truth = 0.05 * centres  # the planted gain at the bin centre, within the bin's spread of it
    assert np.all((t["gain_low"].values < truth + 0.005) & (t["gain_high"].values > truth - 0.005))
    assert t["reliability_bin_n"].values.tolist() == [120] * 5
    flat = gain_by_reliability(_neuron_r(0.02 + rng.normal(0, 0.01, 600), base), oracle).sel(pair="b vs a")
    assert abs(float(flat["gain_reliability_rho"])) < 0.15 and flat["gain_reliability_p"] > 0.01


def test_neurons_without_an_oracle_are_left_out():
    rng = np.random.default_rng(1)
    oracle = rng.uniform(0.1, 0.9, 100)
    oracle[:10] = np.nan
    ds = gain_by_reliability(_neuron_r(rng.normal(0, 0.01, 100), rng.uniform(0, 1, 100)), oracle, n_bins=3)
    assert int(ds["reliability_bin_n"].sum()) == 90 and np.isfinite(ds["gain_mean"]).all()
