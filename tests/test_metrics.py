"""Metrics against hand-computed values (docs/data-contract.md, section "Metrics")."""

import numpy as np
import pytest

from neurofit import metrics


def test_correlation_matches_numpy_and_handles_constant():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    expected = [np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(metrics.correlation(a, b), expected, atol=1e-6)
    const = np.ones((50, 1))
    assert metrics.correlation(const, b[:, :1])[0] == 0.0


def test_correlation_to_average_by_hand():
    # two stimuli, two repeats each; one neuron
    resp = np.array([[1.0], [3.0], [5.0], [7.0]])
    pred = np.array([[0.0], [0.0], [1.0], [1.0]])
    group = np.array([0, 0, 1, 1])
    # means: resp (2, 6), pred (0, 1) -> perfectly correlated
    assert metrics.correlation_to_average(pred, resp, group)[0] == pytest.approx(1.0, abs=1e-6)
    pred_flipped = np.array([[1.0], [1.0], [0.0], [0.0]])
    assert metrics.correlation_to_average(pred_flipped, resp, group)[0] == pytest.approx(-1.0, abs=1e-6)


def test_fev_and_feve_by_hand():
    resp = np.array([[1.0], [3.0], [5.0], [7.0]])
    group = np.array([0, 0, 1, 1])
    # total var (ddof 1) of [1,3,5,7] = 20/3; within-stimulus vars: 2 and 2 -> noise 2
    total, noise = 20 / 3, 2.0
    pred = np.array([[2.0], [2.0], [6.0], [6.0]])  # the stimulus means: MSE = 1
    fev, feve = metrics.fev_and_feve(pred, resp, group)
    assert fev[0] == pytest.approx(1 - noise / total)
    assert feve[0] == pytest.approx(1 - (1.0 - noise) / (total - noise))


def test_fev_ignores_unrepeated_stimuli():
    resp = np.array([[1.0], [3.0], [5.0], [7.0], [100.0]])
    pred = np.array([[2.0], [2.0], [6.0], [6.0], [0.0]])
    group = np.array([0, 0, 1, 1, 2])
    fev, feve = metrics.fev_and_feve(pred, resp, group)
    fev4, feve4 = metrics.fev_and_feve(pred[:4], resp[:4], group[:4])
    assert fev[0] == pytest.approx(fev4[0]) and feve[0] == pytest.approx(feve4[0])


def test_oracle_leave_one_out_by_hand():
    resp = np.array([[1.0], [2.0], [3.0], [10.0], [11.0], [12.0]])
    group = np.array([0, 0, 0, 1, 1, 1])
    loo = np.array([2.5, 2.0, 1.5, 11.5, 11.0, 10.5])
    expected = np.corrcoef(loo, resp[:, 0])[0, 1]
    assert metrics.oracle_correlation(resp, group)[0] == pytest.approx(expected, abs=1e-6)


def test_video_flattening_skips_burn_in_and_masked_frames():
    x = np.arange(2 * 5 * 1, dtype=float).reshape(2, 5, 1)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=bool)
    flat = metrics.flatten_frames(x, 2, mask)
    assert flat[:, 0].tolist() == [2, 3, 4, 7]
    groups = metrics.frame_groups(np.array([7, 7]), 5, 2, mask)
    assert groups.tolist() == ["7#2", "7#3", "7#4", "7#2"]


def test_summary_and_fraction_of_ceiling():
    rng = np.random.default_rng(1)
    truth = rng.gamma(2.0, size=(20, 30))
    group = np.repeat(np.arange(20), 10)
    rates = truth[group]
    resp = rates + rng.normal(scale=1.0, size=rates.shape)
    s = metrics.score(rates, resp, group, truth=rates)
    summary = s.summary()
    assert summary["fraction_of_ceiling"] == pytest.approx(1.0)
    noisy = metrics.score(rates + rng.normal(scale=2.0, size=rates.shape), resp, group, truth=rates).summary()
    assert noisy["fraction_of_ceiling"] < 0.9
    assert summary["n_neurons"] == 30 and 0 < summary["oracle_correlation"] < 1
    mean = metrics.mean_over_recordings({"a": summary, "b": noisy})
    assert mean["single_trial_correlation"] == pytest.approx(
        (summary["single_trial_correlation"] + noisy["single_trial_correlation"]) / 2)
