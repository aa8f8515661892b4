"""Fitting the data-constrained RNN: rls, ridge and bptt on a small simulator, with constraints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofit.data.simulate.regions import simulate_regions
from neurofit.rnn.config import load_config
from neurofit.rnn.currents import decompose
from neurofit.rnn.data import load_rnn_data
from neurofit.rnn.fit import fit
from neurofit.rnn.model import build_model, fit_data, free_run
from neurofit.rnn.rls_update import RLSState

FAST = {"model.dt_factor": 2, "rls.runs": 6}


@pytest.fixture(scope="module")
def sim():
    return simulate_regions(0, n_units=60, n_samples=300, n_seq=4, burn_in=50)


@pytest.fixture(scope="module")
def data_path(sim, tmp_path_factory):
    path = tmp_path_factory.mktemp("rnn") / "sim.npz"
    np.savez(path, rates=sim.rates[0].T, regions=sim.regions, dt=sim.dt, inputs=sim.inputs[0])
    return path


def test_rls_fits_the_simulator(data_path):
    data = load_rnn_data(data_path)
    out = fit(data, load_config(None, FAST))
    rates, final, _ = free_run(out.model, out.data, out.model.cfg.seed)
    assert out.history.pvar[0] > 0.9  # CURBD's training-run pVar, first run
    assert final > 0.98
    assert len(out.history.chi2) == 7 and out.history.chi2[5] < out.history.chi2[0] / 3


def test_ridge_with_the_matching_model_reproduces_the_data_and_the_drive(sim, data_path):
    """With the simulator's own dynamics (one Euler step per sample, no noise, the drive target, known
    inputs, no normalisation) the teacher-forced least squares predicts the true drive, and its free run
    reproduces the data. Single inter-region currents are only partly identifiable here (saturated units
    make the regressors nearly collinear), which the recovered A -> B current shows."""
    data = load_rnn_data(data_path, "none")
    cfg = load_config(None, {"method": "ridge", "model.dt_factor": 1, "model.noise_amp": 0.0,
                             "model.target": "drive", "ridge.alpha": 1e-2, "ridge.alpha_inputs": 1e-2})
    out = fit(data, cfg)
    assert out.history.pvar[0] > 0.999
    currents = decompose(out.model, out.data.rates, out.data.exog)["unit_current"].sum("sign")
    drive = currents.sum("source").values[:, 0]  # (unit, time)
    true = sim.currents[0].sum(axis=-1).T
    assert np.corrcoef(drive[:, :-1].ravel(), true[:, :-1].ravel())[0, 1] > 0.9999
    fitted = currents.sel(source="A").values[sim.regions == "B", 0]
    true_ab = sim.currents[0][:, sim.regions == "B", 0].T
    assert np.corrcoef(fitted.ravel(), true_ab.ravel())[0, 1] > 0.5


def test_block_update_equals_sequential_updates(data_path):
    """One rank-b Woodbury update gives the same P and J as b rank-1 updates (errors recomputed)."""
    data = load_rnn_data(data_path)
    cfg = load_config(None, {"model.noise_amp": 0.0, "model.use_inputs": False, "model.inferred_inputs": 0})
    model = build_model(data, cfg.model, cfg.constraints).double()
    fd = fit_data(model, data, "rates", dtype=torch.float64)
    x = fd.rates[0, :, :5].T.contiguous()  # 5 samples of regressors
    targets = fd.targets[0, :, :5].T
    block, sequential = (RLSState(model, 1.0, "cpu", torch.float64) for _ in range(2))
    w0 = model.weight.data.clone()
    block.update(x, x @ w0.T - targets)
    w_block, p_block = model.weight.data.clone(), block.P.clone()
    model.weight.data.copy_(w0)
    for k in range(5):
        sequential.update(x[k:k + 1], x[k:k + 1] @ model.weight.data.T - targets[k:k + 1])
    torch.testing.assert_close(model.weight.data, w_block)
    torch.testing.assert_close(sequential.P, p_block)


@pytest.mark.parametrize("method", ["rls", "ridge", "bptt"])
def test_dale_signs_and_masks_hold_for_every_weight_after_fitting(data_path, method):
    data = load_rnn_data(data_path)
    overrides = {**FAST, "method": method, "rls.runs": 2, "bptt.epochs": 2, "bptt.eval_every": 1,
                 "constraints.dale": True, "constraints.e_fraction": 0.75, "constraints.region_signs": {"C": -1},
                 "constraints.allowed": {"B": ["A"], "C": ["A", "B"]}, "constraints.density": 0.8}
    out = fit(data, load_config(None, overrides))
    model = out.model
    J, signs = model.J.detach(), model.signs
    regions = np.asarray(model.spec["regions"])
    assert bool((J * signs[None, :] >= 0).all())  # Dale: every outgoing weight has its unit's sign
    assert bool((signs[torch.as_tensor(regions == "C")] == -1).all())
    a_e = float((signs[torch.as_tensor(regions == "A")] > 0).float().mean())
    assert a_e == pytest.approx(0.75, abs=0.01)
    assert bool((J[~model.mask] == 0).all())
    a, b, c = (torch.as_tensor(regions == r) for r in "ABC")
    assert bool((J[a][:, b | c] == 0).all()) and bool((J[b][:, c] == 0).all())  # forbidden projections
    assert float(J[c][:, a].abs().sum()) > 0 and float((J != 0).float().mean()) > 0.2
    assert np.isfinite(out.history.pvar[-1])


def test_frozen_blocks_and_pinning_keep_their_weights(data_path):
    data = load_rnn_data(data_path)
    overrides = {**FAST, "rls.runs": 2, "constraints.block_lr": {"B<-A": 0.0},
                 "constraints.plastic_fraction": 0.5}
    cfg = load_config(None, overrides)
    out = fit(data, cfg)
    model = out.model
    initial = build_model(data, cfg.model, cfg.constraints).J.detach()
    J = model.J.detach()
    regions = np.asarray(model.spec["regions"])
    a, b = torch.as_tensor(regions == "A"), torch.as_tensor(regions == "B")
    torch.testing.assert_close(J[b][:, a], initial[b][:, a])  # learning rate 0 for A -> B
    torch.testing.assert_close(J[:, ~model.plastic], initial[:, ~model.plastic])  # PINning
    assert int(model.plastic.sum()) == 30
    assert float((J[:, model.plastic] - initial[:, model.plastic]).abs().max()) > 0.01


def test_bptt_lowers_the_loss_and_inferred_inputs_are_used(data_path):
    data = load_rnn_data(data_path)
    overrides = {"method": "bptt", "model.dt_factor": 1, "model.noise_amp": 0.0, "model.use_inputs": False,
                 "model.inferred_inputs": 4, "model.target": "drive", "bptt.epochs": 6, "bptt.eval_every": 3,
                 "bptt.window": 30, "bptt.batch_size": 8, "bptt.lr": 3e-3, "bptt.init": "ridge"}
    out = fit(data, load_config(None, overrides))
    assert out.history.loss[-1] < out.history.loss[0]
    assert out.history.pvar[-1] > 0.5
    currents = decompose(out.model, out.rates, out.data.exog)
    assert "inferred" in currents["source"].values
    share = currents["variance_share"].sum("source").values
    np.testing.assert_allclose(share, 1.0, rtol=1e-5)
    assert float(currents["variance_share"].sel(source="inferred").max()) > 0


@pytest.mark.parametrize("name", ["rnn_curbd", "rnn_bptt", "rnn_cbgt_loop"])
def test_example_configs_load(name):
    cfg = load_config(f"configs/{name}.yaml")
    assert cfg.method in ("rls", "bptt")


def test_cbgt_loop_config_keeps_its_signed_masked_projections(sim, tmp_path):
    """The basal-ganglia loop config on activity relabelled into its six regions (10 units each)."""
    names = np.repeat(["CTX", "STR", "GPe", "STN", "GPi", "THAL"], 10)
    path = tmp_path / "cbgt.npz"
    np.savez(path, rates=sim.rates[0].T, regions=names, dt=sim.dt)
    cfg = load_config("configs/rnn_cbgt_loop.yaml", {"rls.runs": 1, "model.dt_factor": 1})
    out = fit(load_rnn_data(path, cfg.data.normalize), cfg)
    J, signs = out.model.J.detach(), out.model.signs
    region = {n: torch.as_tensor(names == n) for n in np.unique(names)}
    assert bool((J * signs[None, :] >= 0).all())
    assert bool((signs[region["STR"] | region["GPi"] | region["GPe"]] == -1).all())
    assert bool((J[region["CTX"]][:, region["STR"] | region["GPi"]] == 0).all())  # no direct BG -> cortex
    assert bool((J[region["THAL"]][:, region["STR"]] == 0).all())  # striatum reaches thalamus only via GPi
    assert float(J[region["THAL"]][:, region["GPi"]].abs().sum()) > 0
    assert bool((J[region["THAL"]][:, region["GPi"]] <= 0).all())
