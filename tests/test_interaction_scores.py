"""Baselines, partial correlation and verdict of interaction maps against planted coupling (issue #22)."""

from __future__ import annotations

import numpy as np
import pytest

from neurofit.analysis.interaction_scores import (
    ALPHA,
    auc,
    coupled_pairs,
    descriptive_scores,
    interaction_scores,
    signal_correlation,
)

N = 150


@pytest.fixture(scope="module")
def cortex() -> dict:
    """Positions, a tuning-like similarity, a sparse like-to-like coupling independent of distance, a dense
    distance-dependent one, and the model's signal correlation (similarity plus noise)."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 600, (N, 3))
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    theta = rng.uniform(0, np.pi, N)
    sim = np.cos(2 * (theta[:, None] - theta[None]))
    like = (rng.random((N, N)) < 0.03 * np.exp(2 * sim) / np.exp(2 * sim).mean()).astype(float)
    near = np.exp(-0.5 * (dist / 80) ** 2) * rng.lognormal(0, 0.3, (N, N))
    for m in (like, near):
        np.fill_diagonal(m, 0.0)
    return {"pos": pos, "dist": dist, "like": like, "near": near, "sig": sim + 0.5 * rng.standard_normal((N, N)),
            "rng": rng}


def test_auc_and_coupled_pairs():
    values = np.array([0.1, 0.2, 0.3, 0.4])
    assert auc(values, np.array([False, False, True, True])) == 1.0
    assert auc(values, np.array([True, False, True, False])) == 0.25
    sparse, why = coupled_pairs(np.array([0.0, 0.0, 0.5, 0.0]))
    assert sparse.tolist() == [False, False, True, False] and "planted" in why
    dense, why = coupled_pairs(np.linspace(0.01, 1, 100))
    assert dense.sum() == 5 and "strongest 5%" in why


def test_signal_correlation_is_a_correlation_matrix_with_zero_diagonal():
    pred = np.random.default_rng(1).standard_normal((50, 4))
    pred[:, 3] = 2 * pred[:, 0] + 1
    sc = signal_correlation(pred)
    assert np.allclose(np.diag(sc), 0) and sc[0, 3] == pytest.approx(1.0)


def test_a_map_that_knows_the_coupling_is_beyond_distance_and_its_baselines_are_not(cortex):
    rng = cortex["rng"]
    oracle = interaction_scores(cortex["like"] + rng.random((N, N)), cortex["like"], cortex["pos"],
                                signal_corr=cortex["sig"], untrained=rng.random((N, N)), n_permutations=200)
    assert oracle["beyond_distance"] and oracle["verdict"].startswith("beyond distance: yes")
    scores = oracle["scores"]
    assert set(scores) == {"map", "distance_only", "distance_profile", "signal_correlation", "untrained"}
    assert scores["map"]["auc"] > 0.9 and abs(scores["distance_only"]["auc"] - 0.5) < 0.05
    assert scores["signal_correlation"]["auc"] > 0.65  # like-to-like: tuning similarity alone ranks pairs
    assert oracle["partial_correlation"]["controls"] == ["distance", "signal_correlation"]
    assert oracle["partial_correlation"]["p_value"] < ALPHA
    # A map that is only tuning similarity adds nothing once tuning similarity is controlled for.
    tuning = interaction_scores(cortex["sig"], cortex["like"], cortex["pos"], signal_corr=cortex["sig"],
                                n_permutations=200)
    assert tuning["scores"]["map"]["auc"] > 0.65 and not tuning["beyond_distance"]
    assert tuning["verdict"].startswith("beyond distance: no")


def test_on_distance_coupling_a_local_map_is_not_credited_beyond_distance(cortex):
    """A map that is any function of distance (here a different, even non-monotone one) scores well against
    distance-dependent coupling but gets a "no": the partial correlation controls distance in bins."""
    for local in (np.exp(-cortex["dist"] / 100), np.exp(-((cortex["dist"] - 50) / 60) ** 2)):
        entry = interaction_scores(local, cortex["near"], cortex["pos"], signal_corr=cortex["sig"],
                                   n_permutations=200)
        assert entry["scores"]["map"]["auc"] > 0.8 and entry["scores"]["distance_only"]["auc"] > 0.9
        assert not entry["beyond_distance"], entry["verdict"]
        assert abs(entry["partial_correlation_distance"]["rho"]) < 0.1


def test_the_permutation_p_value_is_calibrated(cortex):
    """Maps unrelated to the truth: p roughly uniform, so "yes" is rare."""
    entries = [interaction_scores(np.random.default_rng(10 + s).random((N, N)), cortex["like"], cortex["pos"],
                                  signal_corr=cortex["sig"], n_permutations=100, seed=s) for s in range(20)]
    ps = [e["partial_correlation"]["p_value"] for e in entries]
    assert 0.3 < np.median(ps) < 0.7 and sum(p < ALPHA for p in ps) <= 1


def test_signed_maps_and_real_data(cortex):
    signed = interaction_scores(cortex["like"] - 0.5, cortex["like"], cortex["pos"], signed=True,
                                n_permutations=50)
    assert signed["reference"] == "J (signed)" and "signal_correlation" not in signed["scores"]
    assert signed["partial_correlation"]["controls"] == ["distance"]
    real = descriptive_scores(np.exp(-cortex["dist"] / 100), cortex["pos"], cortex["sig"])
    assert real["rho_with_minus_distance"] == pytest.approx(1.0)
    assert real["verdict"].startswith("beyond distance: untested")
