"""Attention/pool analysis on arrays: distance curves, permutation tests, truth recovery, contract outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from neurofit.analysis.attention import (
    SUMMARY_FILE,
    distance_correlation,
    distance_curve,
    truth_correlation,
    write_interaction_outputs,
)

N = 120


@pytest.fixture
def planted() -> dict[str, np.ndarray]:
    """A map that decays with cortical distance (length scale 100 um) plus noise, rows normalised."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 600, (N, 3)) * np.array([1.0, 1.0, 0.2])
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    truth = np.exp(-dist / 100.0)
    weights = truth * rng.lognormal(0.0, 0.5, (N, N))
    np.fill_diagonal(weights, 0.0)
    weights /= weights.sum(1, keepdims=True)
    perm = rng.permutation(N)
    return {"positions": pos, "truth": truth, "weights": weights, "shuffled": weights[np.ix_(perm, perm)]}


def test_planted_distance_decay_is_detected_and_a_shuffled_map_is_not(planted):
    real = distance_correlation(planted["weights"], planted["positions"], n_permutations=200)
    assert real.rho < -0.5
    assert real.p_value == pytest.approx(1 / 201)  # no shuffle comes close
    assert real.n_pairs == N * (N - 1)
    null = distance_correlation(planted["shuffled"], planted["positions"], n_permutations=200)
    assert abs(null.rho) < 0.1 and null.p_value > 0.05


def test_distance_curve_falls_off_with_bands_around_the_mean(planted):
    curve = distance_curve(planted["weights"], planted["positions"], n_bins=8, n_boot=300)
    assert curve.mean.shape == curve.ci_low.shape == curve.centers_um.shape == (8,)
    assert len(curve.edges_um) == 9 and curve.counts.sum() <= N * (N - 1)
    assert curve.mean[0] > 3 * curve.mean[-1]
    assert np.all(curve.ci_low <= curve.mean) and np.all(curve.mean <= curve.ci_high)
    flat = distance_curve(planted["shuffled"], planted["positions"], edges_um=curve.edges_um, n_boot=300)
    # Exact mean of every off-diagonal weight: each row sums to 1 over N - 1 neighbours.
    pooled = (flat.mean * flat.counts).sum() / flat.counts.sum()
    assert np.all((flat.ci_low < pooled * 1.3) & (flat.ci_high > pooled / 1.3))


def test_distance_curve_excludes_the_diagonal():
    pos = np.array([[0.0, 0, 0], [10, 0, 0], [20, 0, 0]])
    weights = np.eye(3) * 100 + 1
    curve = distance_curve(weights, pos, edges_um=np.array([0.0, 15.0, 30.0]), n_boot=10)
    np.testing.assert_allclose(curve.mean, [1.0, 1.0])
    np.testing.assert_array_equal(curve.counts, [4, 2])


def test_truth_correlation_recovers_the_planted_coupling(planted):
    good = truth_correlation(planted["weights"], planted["truth"], n_permutations=200)
    assert good.rho > 0.5 and good.p_value < 0.01
    unrelated = truth_correlation(planted["shuffled"], planted["truth"], n_permutations=200)
    assert unrelated.p_value > 0.05


def test_large_maps_use_a_pair_subsample():
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 500, (400, 3))
    weights = rng.random((400, 400))
    result = distance_correlation(weights, pos, n_permutations=20, max_pairs=5000)
    assert result.n_pairs == 5000 and result.n_permutations == 20


def test_contract_outputs_are_written(tmp_path, planted):
    unit_id = np.arange(N)[::-1] + 1000
    per_head = np.stack([planted["weights"], planted["weights"].T])
    entry = write_interaction_outputs(tmp_path, "mouse1", unit_id, planted["positions"],
                                      attention=planted["weights"], attention_per_head=per_head,
                                      pools=planted["truth"], truth=planted["truth"], n_permutations=50,
                                      n_boot=50)
    ds = xr.open_zarr(tmp_path / "mouse1.zarr")
    assert ds["attention"].dims == ("neuron", "neuron_key")
    assert ds["attention_per_head"].dims == ("head", "neuron", "neuron_key")
    assert ds["pools"].dims == ("neuron", "neuron_key")
    np.testing.assert_array_equal(ds["unit_id"].values, unit_id)
    np.testing.assert_array_equal(ds["key_unit_id"].values, unit_id)
    np.testing.assert_allclose(ds["x_um"].values, planted["positions"][:, 0])
    np.testing.assert_allclose(ds["attention"].values, planted["weights"].astype(np.float32))

    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    rec = summary["mouse1"]
    for key in ("spearman_rho", "p_value", "distance_bins_um", "mean_attention", "ci_low", "ci_high"):
        assert key in rec
    assert len(rec["distance_bins_um"]) == len(rec["mean_attention"])
    assert rec["spearman_rho"] < -0.5 and rec["p_value"] < 0.05
    assert rec["truth_correlation"]["rho"] > 0.5
    assert rec["pools_vs_distance"]["spearman_rho"] < -0.9 and "mean_pool" in rec["pools_vs_distance"]
    assert entry == rec
    for figure in ("mouse1_attention.png", "mouse1_pools.png"):
        assert (tmp_path / figure).stat().st_size > 10_000

    write_interaction_outputs(tmp_path, "mouse2", np.array([f"u{i}" for i in range(N)]), planted["positions"],
                              pools=planted["truth"], n_permutations=10, n_boot=10)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert set(summary) == {"mouse1", "mouse2"} and "spearman_rho" not in summary["mouse2"]
    assert list(xr.open_zarr(tmp_path / "mouse2.zarr")["unit_id"].values[:2]) == ["u0", "u1"]
