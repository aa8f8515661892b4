"""Loading, checking and normalising multi-region activity for the data-constrained RNN; the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from neurofit.data import open_truth
from neurofit.data.simulate.regions import regions_recording, simulate_regions, simulate_regions_store
from neurofit.data.store import write_store
from neurofit.errors import DataError
from neurofit.rnn.data import RATE_CEILING, load_rnn_data


@pytest.fixture(scope="module")
def small_sim():
    return simulate_regions(3, n_units=45, n_samples=200, n_seq=4, burn_in=50)


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_simulator_currents_add_up_and_absent_projections_are_zero(small_sim):
    sim = small_sim
    assert sim.rates.shape == (1, 200, 45) and sim.inputs.shape == (1, 200, 6)
    rates = sim.rates[0]
    drive = rates @ sim.J.T + sim.inputs[0] @ sim.W_in.T
    np.testing.assert_allclose(sim.currents[0].sum(axis=-1), drive, atol=1e-10)
    a, b, c = (sim.regions == r for r in "ABC")
    assert np.all(sim.J[np.ix_(a, b)] == 0) and np.all(sim.J[np.ix_(b, c)] == 0)  # B->A, C->B absent
    assert np.any(sim.J[np.ix_(b, a)] != 0) and np.any(sim.J[np.ix_(a, c)] != 0)  # A->B, C->A present
    assert np.all(sim.W_in[a] == 0)  # the drivers enter B (sequence) and C (fixed point) only
    assert np.count_nonzero(sim.W_in[b][:, :4].any(axis=1)) == round(0.5 * b.sum())
    np.testing.assert_array_equal(simulate_regions(3, n_units=45, n_samples=200, n_seq=4, burn_in=50).rates,
                                  sim.rates)


def test_store_round_trip_with_truth(tmp_path):
    path = simulate_regions_store(tmp_path / "regions.zarr", seed=1)
    data = load_rnn_data(path, "none")
    assert (data.n_trials, data.n_units, data.n_samples) == (1, 300, 1200)
    assert data.region_names == ("A", "B", "C") and data.dt == pytest.approx(0.01)
    assert data.inputs.shape == (1, 1200, 12) and data.input_channels[0] == "seq_0"
    truth = open_truth(path, "regions")
    assert truth["currents"].shape == (1, 1200, 300, 4)
    assert list(truth["source"].values) == ["A", "B", "C", "input"]
    np.testing.assert_array_equal(truth["rates"].values[0].T, data.rates[0])


def test_npz_shapes_and_normalisations(tmp_path, small_sim):
    rates = small_sim.rates[0].T * 3.0  # (neuron, time), peak 3
    path = _npz(tmp_path, rates=rates, regions=small_sim.regions, dt=0.01)
    data = load_rnn_data(path, "max")
    assert data.rates.shape == (1, 45, 200) and data.inputs is None
    assert np.abs(data.rates).max() == pytest.approx(RATE_CEILING, rel=1e-6)
    np.testing.assert_allclose(data.normalization.invert(data.rates), rates[None], rtol=1e-5, atol=1e-6)
    clipped = load_rnn_data(path, "max_clip")  # CURBD: divided by the largest value, clipped to +-0.999
    np.testing.assert_allclose(clipped.rates, np.clip(rates[None] / rates.max(), -RATE_CEILING, RATE_CEILING),
                               rtol=1e-6)
    assert clipped.rates.max() == pytest.approx(RATE_CEILING) and clipped.normalization.clip == RATE_CEILING
    per_region = load_rnn_data(path, "region")
    for name in "ABC":
        peak = np.abs(per_region.rates[0, small_sim.regions == name]).max()
        assert peak == pytest.approx(RATE_CEILING, rel=1e-6)
    z = load_rnn_data(path, "zscore")
    np.testing.assert_allclose(z.rates.mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(z.rates.std(axis=(0, 2)), 1, rtol=1e-4)
    assert z.normalization.to_dict()["kind"] == "zscore"

    trials = np.stack([rates, rates[:, ::-1]])
    stacked = load_rnn_data(_npz(tmp_path, rates=trials, regions=small_sim.regions, dt=0.01,
                                 inputs=np.ones((200, 2))), "none")
    assert stacked.rates.shape == (2, 45, 200) and stacked.inputs.shape == (2, 200, 2)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"rates": np.ones((4, 50)), "regions": np.array(["A"] * 3), "dt": 0.01}, "3 labels but rates has 4 neurons"),
    ({"rates": np.array([[0.1, np.nan] * 25] * 2), "regions": np.array(["A", "B"]), "dt": 0.01}, "NaN or inf"),
    ({"rates": np.ones((2, 50)), "regions": np.array(["A", "B"]), "dt": 0.01,
      "region_names": np.array(["A", "B", "C"])}, r"region\(s\) \['C'\] have no units"),
    ({"rates": np.ones((2, 50)), "regions": np.array(["A", "B"])}, r"missing array\(s\) \['dt'\]"),
    ({"rates": np.ones((2, 50)), "regions": np.array(["A", "B"]), "dt": 0.01, "inputs": np.ones((49, 1))},
     "inputs must be"),
])
def test_bad_npz_names_the_file_and_the_problem(tmp_path, arrays, message):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=message) as err:
        load_rnn_data(path)
    assert str(path) in str(err.value)


def test_short_series_and_missing_region_coordinate(tmp_path, small_sim):
    path = _npz(tmp_path, rates=small_sim.rates[0, :20].T, regions=small_sim.regions, dt=0.01)
    data = load_rnn_data(path)
    with pytest.raises(DataError, match="too short: 20 samples") as err:
        data.check_duration(tau=0.1)
    assert str(path) in str(err.value)
    ds, _ = regions_recording(small_sim)
    store = write_store(tmp_path / "noregion.zarr", {"r": ds.drop_vars("region")})
    with pytest.raises(DataError, match="no 'region' neuron coordinate"):
        load_rnn_data(store)
