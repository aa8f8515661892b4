"""Comparing learned maps with the simulator's truth: which truth matrix, in which neuron order and orientation.

The motivating bug: ``neurofit attention`` rank-correlated non-negative attention with the *signed* coupling.
The simulator's coupling is excitatory within ~170 um and weakly inhibitory beyond, and most pairs lie beyond,
where the coupling rises back towards 0 with distance; so a map that falls off perfectly with distance scored
a negative "truth correlation".
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from neurofit.analysis.attention import (
    SUMMARY_FILE,
    TRUTH_REFERENCES,
    average_ranks,
    distance_correlation,
    truth_comparisons,
    truth_references,
    write_interaction_outputs,
)
from neurofit.analysis.interaction_maps import truth_matrix
from neurofit.data.simulate.coupling import distance_coupling as _coupling
from neurofit.data.simulate.population import _distance
from neurofit.data.simulate.v1_params import V1Params
from neurofit.errors import DataError

N = 150


@pytest.fixture(scope="module")
def cortex() -> dict[str, np.ndarray]:
    """Positions (N, 3) um, the simulator's own signed coupling J and pools P for them, and a map that
    decreases with distance and nothing else (what a perfectly local attention would learn; rows are left
    unnormalised so that it is exactly a function of distance)."""
    p = V1Params()
    rng = np.random.default_rng(3)
    pos = np.stack([rng.uniform(0, p.field_um, N), rng.uniform(0, p.field_um, N),
                    rng.uniform(*p.depth_um, N)], axis=1)
    dist = _distance(*pos.T)
    pool = np.exp(-0.5 * (dist / p.norm_length_um) ** 2)
    local = np.exp(-dist / 100.0)
    np.fill_diagonal(local, 0.0)
    return {"positions": pos, "distance": dist, "coupling": _coupling(rng, dist, p),
            "norm_pool": pool / pool.sum(1, keepdims=True), "local": local}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    off = ~np.eye(len(a), dtype=bool)
    return float(stats.spearmanr(a[off], b[off])[0])


def test_signed_coupling_is_not_a_monotone_function_of_distance(cortex):
    """Why signed J is the wrong reference: most pairs are inhibitory and fade with distance, so signed J
    *rises* with distance over the pairs, while |J| falls."""
    j = cortex["coupling"]
    assert (j[~np.eye(N, dtype=bool)] < 0).mean() > 0.7
    assert _spearman(j, cortex["distance"]) > 0
    assert _spearman(np.abs(j), cortex["distance"]) < -0.5
    assert _spearman(cortex["local"], j) < 0  # the old report: a perfectly local map "anti-correlated"


def test_a_local_map_correlates_positively_with_the_reported_truth(tmp_path, cortex):
    entry = write_interaction_outputs(tmp_path, "mouse0", np.arange(N), cortex["positions"],
                                      attention=cortex["local"], pools=cortex["local"], truth=cortex["coupling"],
                                      truth_pools=cortex["norm_pool"], n_permutations=50, n_boot=20)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())["mouse0"]
    assert summary == entry
    att, pools = summary, summary["pools_vs_distance"]
    assert att["truth_correlation"]["reference"] == "coupling_abs"
    assert pools["truth_correlation"]["reference"] == "norm_pool"
    assert att["truth_correlation"]["rho"] > 0.5 and att["truth_correlation"]["p_value"] < 0.05
    assert pools["truth_correlation"]["rho"] > 0.9
    for comparisons in (att["truth_correlations"], pools["truth_correlations"]):
        assert set(comparisons) == set(TRUTH_REFERENCES) - {"coupling"}  # signed J: signed maps only
        assert comparisons["coupling_excitatory"]["rho"] > 0.3
        for name, comparison in comparisons.items():
            assert comparison["description"] == TRUTH_REFERENCES[name]
            # A map that depends on distance only scores exactly what distance alone scores.
            assert comparison["rho"] == pytest.approx(comparison["distance_only_rho"], abs=1e-9)


def test_orientation_and_diagonal(cortex):
    """Row i of the truth is what neuron i receives: a map equal to an asymmetric truth scores 1, its
    transpose less; the diagonal (self-coupling, self-normalisation) never enters."""
    rng = np.random.default_rng(0)
    truth = np.abs(cortex["coupling"]) * rng.lognormal(0, 1.0, (N, N))
    weights = truth.copy()
    np.fill_diagonal(weights, 1e6)
    refs = {"coupling_abs": truth}
    same = truth_comparisons(weights, cortex["positions"], refs, n_permutations=20)["coupling_abs"]
    flipped = truth_comparisons(weights.T, cortex["positions"], refs, n_permutations=20)["coupling_abs"]
    assert same["rho"] == pytest.approx(1.0)
    assert flipped["rho"] < 0.9


def test_references_and_constant_truths():
    j = np.array([[0.0, 0.5, -0.2], [0.4, 0.0, -0.1], [-0.3, 0.2, 0.0]])
    refs = truth_references(j, None)
    np.testing.assert_array_equal(refs["coupling_abs"], np.abs(j))
    np.testing.assert_array_equal(refs["coupling_excitatory"], np.maximum(j, 0))
    np.testing.assert_array_equal(refs["coupling_inhibitory"], np.maximum(-j, 0))
    assert "norm_pool" not in refs and truth_references() == {}
    # No coupling planted (all zeros): no rank information, so no entry rather than a NaN in the JSON.
    pos = np.arange(9.0).reshape(3, 3)
    out = truth_comparisons(np.ones((3, 3)) + np.eye(3), pos, truth_references(np.zeros((3, 3)), None),
                            n_permutations=5)
    assert out == {}


def test_a_constant_map_gives_nan_without_warnings():
    import warnings

    pos = np.random.default_rng(0).normal(size=(20, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy and numpy warn on constant input; nothing should reach them
        corr = distance_correlation(np.full((20, 20), 0.05), pos, n_permutations=10)
    assert np.isnan(corr.rho) and np.isnan(corr.p_value) and corr.n_pairs == 380


def test_truth_is_aligned_to_the_maps_by_unit_id():
    unit_id = np.array([10, 11, 12, 13])
    matrix = np.arange(16.0).reshape(4, 4)
    stored = unit_id[::-1]  # the truth was written in another neuron order
    truth = xr.Dataset({"coupling": (("neuron", "neuron_key"), matrix[::-1, ::-1])},
                       coords={"unit_id": ("neuron", stored), "neuron_key": ("neuron_key", stored)})
    np.testing.assert_array_equal(truth_matrix(truth, "coupling", unit_id), matrix)
    np.testing.assert_array_equal(truth_matrix(truth, "coupling", unit_id[[2, 0]]), matrix[np.ix_([2, 0], [2, 0])])
    assert truth_matrix(truth, "norm_pool", unit_id) is None and truth_matrix(None, "coupling", unit_id) is None
    with pytest.raises(DataError, match="lacks unit_id"):
        truth_matrix(truth, "coupling", np.array([10, 99]))
    bare = xr.Dataset({"coupling": (("neuron", "neuron_key"), matrix)})
    np.testing.assert_array_equal(truth_matrix(bare, "coupling", unit_id), matrix)
    with pytest.raises(DataError, match="shape"):
        truth_matrix(bare, "coupling", unit_id[:3])


def test_average_ranks_match_scipy():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(size=500), np.zeros(300), np.full(7, 2.5)])
    rng.shuffle(values)
    np.testing.assert_array_equal(average_ranks(values), stats.rankdata(values))
    np.testing.assert_array_equal(average_ranks(np.array([3.0])), [1.0])


def test_a_signed_coupling_is_compared_with_the_signed_truth(tmp_path, cortex):
    """Attention's coupling of the drives is signed: it is scored against J itself, so a map with J's
    excitatory centre and inhibitory surround scores high, and its sign-flipped version scores negative."""
    rng = np.random.default_rng(1)
    j = cortex["coupling"]
    learned = j + 0.3 * np.abs(j).mean() * rng.standard_normal(j.shape)
    entry = write_interaction_outputs(tmp_path, "mouse0", np.arange(N), cortex["positions"], coupling=learned,
                                      truth=j, n_permutations=50, n_boot=20)
    coupling = entry["coupling_vs_distance"]
    assert coupling["truth_correlation"]["reference"] == "coupling"
    assert coupling["truth_correlation"]["rho"] > 0.5 and coupling["truth_correlation"]["p_value"] < 0.05
    assert set(coupling["truth_correlations"]) == {"coupling"}
    assert "attention" not in xr.open_zarr(tmp_path / "mouse0.zarr")
    stored = xr.open_zarr(tmp_path / "mouse0.zarr")["coupling"].values
    np.testing.assert_allclose(stored, learned.astype(np.float32))
    assert (tmp_path / "mouse0_coupling.png").stat().st_size > 0
    flipped = write_interaction_outputs(tmp_path, "mouse1", np.arange(N), cortex["positions"], coupling=-learned,
                                        truth=j, n_permutations=50, n_boot=20)
    assert flipped["coupling_vs_distance"]["truth_correlation"]["rho"] < -0.5
