"""Priors on inter-region currents: zero-started blocks under their own RLS prior (``rls.P0_inter``), the
group-sparse bptt penalty, and settings chosen by held-out pVar (``neurofit rnn select``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from fixtures_regions import small_curbd, write_npz

from neurofit.cli import main
from neurofit.rnn.bptt import shrink_blocks_
from neurofit.rnn.config import load_config
from neurofit.rnn.data import load_rnn_data
from neurofit.rnn.fit import fit
from neurofit.rnn.model import build_model, fit_data
from neurofit.rnn.rls import make_trainer
from neurofit.rnn.rls_update import RLSState
from neurofit.rnn.select import select


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_rnn_data(write_npz(small_curbd(), tmp_path_factory.mktemp("priors") / "small.npz"), "max")


def _model(data, **overrides):
    cfg = load_config(None, {"model.use_inputs": False, "model.noise_amp": 0.0, "model.inferred_inputs": 0,
                             **overrides})
    return build_model(data, cfg.model, cfg.constraints).double(), cfg


def _inter(model) -> torch.Tensor:
    """(N, N) True where J connects units of different regions."""
    return model.region_index[:, None] != model.region_index[None, :]


@pytest.mark.parametrize("rows", [1, 6])
def test_rls_with_an_inter_region_prior_is_ridge_with_that_prior(data, rows):
    """After a pass over samples of a linear problem, RLS from P0 (P0_inter on weights from other regions)
    gives each row the ridge solution with penalty 1 / P0 per weight around its start, by rank-1 and by
    Woodbury updates alike."""
    model, _ = _model(data, **{"model.inter_region_start": "random"})
    fd = fit_data(model, data, "rates", dtype=torch.float64)
    x = fd.rates[0, :, :60].T.contiguous()  # 60 samples of regressors (N = 60)
    y = torch.randn(60, model.n_units, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w0 = model.weight.data.clone()
    state = RLSState(model, 1.0, "cpu", torch.float64, p0_inter=0.01)
    assert state.P.shape == (3, 60, 60)
    for k in range(0, 60, rows):
        state.update(x[k:k + rows], x[k:k + rows] @ model.weight.data.T - y[k:k + rows])
    same = ~_inter(model)
    for i in (0, 25, 59):  # one unit of each region
        precision = torch.where(same[i], 1.0, 100.0).double()
        expected = torch.linalg.solve(x.T @ x + torch.diag(precision), x.T @ y[:, i] + precision * w0[i])
        torch.testing.assert_close(model.weight.data[i], expected)


def test_inter_region_blocks_start_at_zero_in_both_loops(data):
    for loop in ("batched", "curbd"):
        model, cfg = _model(data, **{"rls.loop": loop})
        make_trainer(model, fit_data(model, data, "rates"), cfg.rls, draw_weights=True)
        J = model.J.detach()
        assert bool((J[_inter(model)] == 0).all()) and float(J[~_inter(model)].abs().min()) > 0
    reference, _ = _model(data, **{"model.inter_region_start": "random"})
    assert float(reference.J.detach()[_inter(reference)].abs().min()) > 0


def test_group_penalty_shrinks_blocks_and_zeroes_small_ones(data):
    model, _ = _model(data, **{"model.inter_region_start": "random"})
    J = model.J.detach()
    rows, cols = model.region_index == 0, model.region_index == 1
    norm = float(J[rows][:, cols].norm())
    before = J.clone()
    shrink_blocks_(model, norm / 2)
    after = model.J.detach()
    torch.testing.assert_close(after[rows][:, cols], before[rows][:, cols] / 2)
    torch.testing.assert_close(after[~_inter(model)], before[~_inter(model)])  # within regions untouched
    shrink_blocks_(model, 10 * norm)
    assert bool((model.J.detach()[_inter(model)] == 0).all())
    cfg = load_config(None, {"method": "bptt", "model.use_inputs": False, "bptt.epochs": 2, "bptt.eval_every": 2,
                             "bptt.group_penalty": 1e4, "model.inter_region_start": "random"})
    fitted = fit(data, cfg).model
    assert bool((fitted.J.detach()[_inter(fitted)] == 0).all())


def test_held_out_parts_keep_the_trial_locked_inputs_of_their_times(data):
    model, _ = _model(data, **{"model.inferred_inputs": 5})
    whole = fit_data(model, data, "rates").exog
    tail = fit_data(model, data.time_slice(200, data.n_samples), "rates").exog
    torch.testing.assert_close(tail, whole[:, 200:])
    assert build_model(data.time_slice(0, 200), model.cfg, model.constraint_cfg).n_samples == data.n_samples


def test_select_keeps_the_simplest_value_within_the_noise_of_the_best(data):
    cfg = load_config(None, {"rls.runs": 1, "model.use_inputs": False})
    result = select(data, cfg, "model.inferred_inputs", [0, 4], inits=2, window=20)
    mean, spread = np.array(result["pvar_mean"]), np.array(result["pvar_spread"])
    best = int(mean.argmax())
    assert result["best"] == [0, 4][best] and np.shape(result["pvar"]) == (2, 2)
    assert result["chosen"] == (0 if mean[0] >= mean[best] - 2 * spread[best] else 4)


def test_cli_select_and_set(tmp_path, capsys):
    path = write_npz(small_curbd(), tmp_path / "small.npz")
    out = tmp_path / "select.json"
    args = ["rnn", "select", "--data", str(path), "--out", str(out), "--key", "rls.P0_inter", "--values", "1e-4",
            "1e-2", "--set", "rls.runs=1", "--inits", "2", "--quiet"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["chosen"] in (1e-4, 1e-2) and json.loads(out.read_text())["data_path"] == str(path)
    assert main([*args[:7], "rls.P0_interr", *args[8:]]) == 2
    assert "rls.P0_interr" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["rnn", "fit", "--data", str(path), "--out", str(run), "--set", "rls.runs=1", "--set",
                 "rls.P0_inter=0.003", "--quiet"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["rls"]["P0_inter"] == 0.003


@pytest.mark.slow
def test_default_fit_of_the_curbd_preset_keeps_inter_region_currents_small(tmp_path):
    """Issue #18's target fit: the defaults on threeRegionSim (300 units, ampInterReg 0.02, no outside inputs)
    reach pVar 0.98 with every inter-region source under 1% of its target's current variance (CURBD's own
    algorithm gives them 5-25%)."""
    from neurofit.data.simulate.regions_curbd import simulate_curbd
    from neurofit.rnn.currents import decompose

    sim = simulate_curbd(0, n_units=300)
    data = load_rnn_data(write_npz(sim, tmp_path / "curbd.npz"), "max")
    out = fit(data, load_config(None, {"model.use_inputs": False}))
    rates, pvar, _ = out.evaluate(out.model.cfg.seed)
    share = decompose(out.model, rates, out.data.exog)["variance_share"]
    assert pvar >= 0.98
    for target in "ABC":
        assert all(float(share.sel(target_region=target, source=s)) < 0.01 for s in "ABC" if s != target)
