"""Planted coupling structures of the V1 twin and fluctuations that pass through the coupling (issue #22)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurofit.analysis.interaction_scores import auc
from neurofit.cli import build_parser
from neurofit.data.simulate.v1 import simulate_v1
from neurofit.errors import ConfigError

SMALL = dict(train_images=300, validation_images=30, test_images=10, test_repeats=2)


def _off(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(len(matrix), dtype=bool)]


@pytest.fixture(scope="module")
def structures() -> dict:
    return {s: simulate_v1(recordings=1, neurons=150, seed=4, coupling_structure=s, **SMALL)["mouse0"]
            for s in ("distance", "tuning")}


def test_like_to_like_coupling_is_sparse_positive_and_independent_of_distance(structures):
    ds, truth = structures["tuning"]
    j = truth["coupling"].values
    coupled = _off(j) > 0
    assert (_off(j) >= 0).all() and 0.02 < coupled.mean() < 0.045  # coupling_density 0.03
    pos = np.stack([ds[c].values for c in ("x_um", "y_um", "z_um")], 1)
    distance = _off(np.linalg.norm(pos[:, None] - pos[None], axis=-1))
    assert abs(auc(-distance, coupled) - 0.5) < 0.05  # distance says nothing about it
    theta = truth["rf_orientation_rad"].values
    similarity = _off(np.cos(2 * (theta[:, None] - theta[None])))
    assert auc(similarity, coupled) > 0.75  # like-to-like
    assert np.abs(j).sum(1).max() == pytest.approx(0.6)  # coupling_strength, the stable contraction


def test_structures_share_the_neurons_and_the_truth_says_what_was_planted(structures):
    (_, t_distance), (_, t_tuning) = structures["distance"], structures["tuning"]
    np.testing.assert_array_equal(t_distance["rf_filters"].values, t_tuning["rf_filters"].values)
    np.testing.assert_array_equal(t_distance["run_gain"].values, t_tuning["run_gain"].values)
    planted = {s: json.loads(structures[s][1].attrs["coupling_structure"]) for s in structures}
    assert planted["distance"]["structure"] == "distance" and planted["distance"]["sign"] == "mixed"
    assert planted["distance"]["density"] == 1.0
    assert planted["tuning"]["sign"] == "positive" and planted["tuning"]["density"] < 0.05
    assert "independent of cortical distance" in planted["tuning"]["depends_on"]
    assert planted["tuning"]["fluctuations"].startswith("through coupling")


def test_the_preset_without_fluctuation_coupling_reproduces_the_earlier_default():
    """``calibrated-noise-free-coupling`` is the calibrated default before issue #22, number for number (the
    sums come from the code before it), static and video; the new default differs only in the responses."""
    video = dict(train_movies=3, validation_movies=1, test_movies=2, frames=30)
    static = dict(train_images=40, validation_images=8, test_images=5)
    expected = {False: (2642.341894248384, 2440.467531759292), True: (21803.940193694492, 22996.369360283017)}
    for is_video, kwargs in ((False, static), (True, video)):
        ds, truth = simulate_v1(recordings=1, neurons=20, seed=3, video=is_video,
                                preset="calibrated-noise-free-coupling", **kwargs)["mouse0"]
        responses, rates = expected[is_video]
        np.testing.assert_allclose(ds["responses"].values.astype(np.float64).sum(), responses, rtol=1e-6)
        np.testing.assert_allclose(truth["rates"].values.astype(np.float64).sum(), rates, rtol=1e-6)
        new_ds, new_truth = simulate_v1(recordings=1, neurons=20, seed=3, video=is_video, **kwargs)["mouse0"]
        np.testing.assert_array_equal(new_truth["rates"].values, truth["rates"].values)
        assert not np.array_equal(new_ds["responses"].values, ds["responses"].values)


def _noise_correlation_auc(through: bool, video: bool = False) -> float:
    """AUC of the noise correlations (recorded minus the truth's noise-free rates, shared gain removed) for
    the planted coupled pairs, on the high-SNR statistics with strong fluctuations."""
    sizes = dict(train_movies=40, validation_movies=2, test_movies=2, frames=60) if video else dict(
        train_images=1500, validation_images=50, test_images=10, test_repeats=2)
    ds, truth = simulate_v1(recordings=1, neurons=100, seed=0, video=video, preset="high-snr",
                            coupling_structure="tuning", coupling_density=0.02, coupling_strength=0.9,
                            fluctuation_cv=1.0, fluctuation_through_coupling=through, **sizes)["mouse0"]
    n = ds.sizes["neuron"]
    residual = (ds["responses"].values - truth["rates"].values).reshape(-1, n)
    residual /= truth["rates"].values.reshape(-1, n).std(0)
    if video:  # the previous frame drives coupled neurons: lag the key neuron by one frame
        r = residual.reshape(ds.sizes["trial"], -1, n)
        now, before = r[:, 1:].reshape(-1, n), r[:, :-1].reshape(-1, n)
        now, before = now - now.mean(1, keepdims=True), before - before.mean(1, keepdims=True)
        corr = np.corrcoef(now.T, before.T)[:n, n:]
    else:
        residual -= residual.mean(1, keepdims=True)
        corr = np.corrcoef(residual.T)
    j = truth["coupling"].values
    return auc(_off(corr), _off(j if video else j + j.T) > 0)


def test_fluctuations_through_the_coupling_make_noise_correlations_follow_it():
    assert _noise_correlation_auc(through=True) > 0.75
    assert _noise_correlation_auc(through=False) < 0.6


def test_in_movies_the_previous_frame_drives_coupled_neurons():
    assert _noise_correlation_auc(through=True, video=True) > 0.7
    assert _noise_correlation_auc(through=False, video=True) < 0.6


def test_coupling_options_are_checked_and_reach_the_command_line():
    with pytest.raises(ConfigError, match="coupling_structure"):
        simulate_v1(coupling_structure="random")
    with pytest.raises(ConfigError, match="coupling_density"):
        simulate_v1(coupling_density=0.0)
    args = build_parser().parse_args(["simulate", "v1", "--out", "x", "--coupling", "tuning",
                                      "--private-fluctuations"])
    assert args.coupling == "tuning" and args.private_fluctuations
