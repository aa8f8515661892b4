"""CURBD as published: the ``curbd`` preset of the regions simulator and ``rls.loop: curbd`` against the numpy
port of the reference's ``trainMultiRegionRNN`` (``scripts/curbd_reference.py``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from fixtures_regions import reference_module, small_curbd, write_npz

from neurofit.cli import main
from neurofit.data import open_store, open_truth
from neurofit.data.simulate.regions import regions_recording
from neurofit.data.simulate.regions_curbd import simulate_curbd
from neurofit.errors import ConfigError, DataError
from neurofit.rnn.config import load_config
from neurofit.rnn.curbd import curbd_schedule
from neurofit.rnn.data import load_rnn_data
from neurofit.rnn.fit import fit
from neurofit.rnn.model import build_model, fit_data, free_run
from neurofit.rnn.necessity import critical_t, driven_units, necessity, refit, split_holdout, verdict
from neurofit.rnn.rls import make_trainer

CURBD = Path(__file__).resolve().parent.parent / "configs" / "rnn_curbd.yaml"


def test_preset_is_three_region_sim():
    sim = small_curbd()
    assert sim.rates.shape == (1, 351, 60) and sim.sources == ("A", "B", "C", "sequence", "fixed_point")
    index = {r: np.flatnonzero(sim.regions == r) for r in "ABC"}
    assert all(len(i) == 20 for i in index.values())
    drive = sim.rates[0] * sim.rate_scale @ sim.J.T + sim.inputs[0] @ sim.W_in.T
    np.testing.assert_allclose(sim.currents[0].sum(axis=-1), drive, atol=1e-10)
    for a in "ABC":
        for b in "ABC":
            block = sim.J[np.ix_(index[a], index[b])]
            if a != b:  # one-to-one: 5% of the 20 target units take the rate of the source unit of that index
                assert np.count_nonzero(block) == 1 and np.count_nonzero(np.diag(block)) == 1
                assert block.max() == pytest.approx(0.02)
        assert sim.rates[0][:, index[a]].max() == pytest.approx(1.0)  # each region divided by its peak
    seq, fp = sim.W_in[:, :20], sim.W_in[:, 20:]
    assert np.count_nonzero(seq) == 10 and set(np.unique(seq[index["B"]])) == {0.0, 1.0}
    assert np.count_nonzero(fp) == 10 and set(np.unique(fp[index["C"]])) == {-1.0, 0.0}
    assert np.count_nonzero(np.diag(seq[index["B"]])) == 10  # unit i of B receives sequence channel i
    assert not seq[index["A"]].any() and not fp[index["A"]].any()
    assert sim.inputs.min() == 0.0 and sim.inputs.max() == 1.0
    np.testing.assert_array_equal(simulate_curbd(0, n_units=60, duration_s=3.0, lead_s=0.5).rates, sim.rates)
    stronger = simulate_curbd(0, n_units=60, duration_s=3.0, lead_s=0.5, amp_inter_region=0.2)
    links = stronger.J[np.ix_(index["B"], index["A"])]
    assert links[links != 0].tolist() == [pytest.approx(0.2)]
    with pytest.raises(ConfigError, match="at least 3 s"):
        simulate_curbd(0, n_units=60, duration_s=2.0)


def test_preset_store_keeps_inputs_in_the_truth(tmp_path):
    store = tmp_path / "curbd.zarr"
    assert main(["simulate", "regions", "--preset", "curbd", "--units", "60", "--out", str(store),
                 "--amp-inter-region", "0.2"]) == 0
    ds = open_store(store)["regions"]
    truth = open_truth(store, "regions")
    assert ds.sizes == {"trial": 1, "frame": 1201, "neuron": 60} and "inputs" not in ds
    assert list(truth["source"].values) == ["A", "B", "C", "sequence", "fixed_point"]
    J, regions = truth["J"].values, truth["region"].values
    assert truth["inputs"].shape == (1, 1201, 40)
    assert np.unique(J[np.ix_(regions == "C", regions != "C")][J[np.ix_(regions == "C", regions != "C")] != 0]) \
        == pytest.approx([0.2])
    assert truth.attrs["preset"] == "curbd" and truth.attrs["inputs_recorded"] == 0
    given, _ = regions_recording(small_curbd(record_inputs=True))
    assert given["inputs"].shape == (1, 351, 40)


def test_schedule_follows_the_reference_clock():
    sched = curbd_schedule(11, 0.01, 5, [4])
    assert sched.n_steps == 51
    assert sched.learn == {5 * (i + 1): i for i in range(10)}  # the rate before sample i + 1 against sample i
    assert sched.record == {5 * i: i for i in range(11)} and sched.resets == {20: 4}
    assert curbd_schedule(7, 0.01, 3, []).learn == {3 * (i + 1): i for i in range(6)}


def _trainer(path, dtype=torch.float64, config=CURBD, **overrides):
    cfg = load_config(config, overrides)
    data = load_rnn_data(path, cfg.data.normalize)
    model = build_model(data, cfg.model, cfg.constraints).to(dtype=dtype)
    return make_trainer(model, fit_data(model, data, cfg.data.space, dtype=dtype), cfg.rls, draw_weights=True)


def test_curbd_loop_is_the_reference_step_for_step(tmp_path):
    """Same seed, same draws: the initial J and noise are the reference's exactly; after two training runs J,
    pVar and chi2 agree to the float32 rounding of the stored data, and so does the free run."""
    sim = small_curbd()
    path = write_npz(sim, tmp_path / "small.npz")
    reference = reference_module().ReferenceRNN(sim.rates[0].T, sim.dt)
    ours = _trainer(path)
    np.testing.assert_array_equal(ours.model.J.detach().numpy(), reference.J0)
    np.testing.assert_array_equal(ours.noise.numpy().T, reference.noise)
    for _ in range(2):
        assert ours.run() == pytest.approx(reference.run(True), rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(ours.model.J.detach().numpy(), reference.J, atol=1e-5)
    rates, free_pvar, free_chi2 = ours.free_run(ours.model.cfg.seed)
    assert (free_pvar, free_chi2) == pytest.approx(reference.run(False), rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(rates[0].numpy(), reference.model_rates(), atol=1e-5)


def test_trials_run_as_the_reference_runs_them_concatenated_with_reset_points(tmp_path):
    """Two trials (or one series with a reset point at the second trial's start) train exactly as the
    reference on the concatenated series with resetPoints at that model step."""
    sim = small_curbd(n_trials=2)
    series = np.concatenate(list(sim.rates.transpose(0, 2, 1)), axis=1)  # (neuron, 2 x 351)
    reference = reference_module().ReferenceRNN(series, sim.dt, reset_points=(351 * 5,))
    by_trial = _trainer(write_npz(sim, tmp_path / "trials.npz"))
    np.savez(tmp_path / "series.npz", rates=series, regions=sim.regions, dt=sim.dt, reset_points=[351])
    by_reset = _trainer(tmp_path / "series.npz")
    expected = reference.run(True)
    assert by_trial.run() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert by_reset.run() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(by_trial.model.J.detach().numpy(), reference.J, atol=1e-5)


@pytest.mark.parametrize(("loop", "target", "initial_state"), [("curbd", "currents", "currents"),
                                                                ("batched", "rates", "data")])
def test_targets_and_loops_combine(tmp_path, loop, target, initial_state):
    """The current-target form in the reference loop and the rate target in the batched loop both learn."""
    path = write_npz(small_curbd(), tmp_path / "small.npz")
    cfg = load_config(CURBD, {"rls.loop": loop, "model.target": target, "model.initial_state": initial_state,
                              "rls.runs": 10, "rls.dtype": "float32"})
    out = fit(load_rnn_data(path, cfg.data.normalize), cfg)
    assert out.history.chi2[9] < out.history.chi2[0] and out.evaluate(0)[1] > 0.85


def test_rnn_curbd_config_end_to_end(tmp_path, capsys):
    store = tmp_path / "curbd.zarr"
    assert main(["simulate", "regions", "--preset", "curbd", "--units", "60", "--out", str(store)]) == 0
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump({"extends": str(CURBD), "rls": {"runs": 3, "dtype": "float32"}}))
    run = tmp_path / "run"
    assert main(["rnn", "fit", "--data", str(store), "--out", str(run), "--config", str(config), "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["pVar"] == pytest.approx(metrics["history"]["pvar"][3]) and metrics["pVar"] > 0.5
    assert len(metrics["chi2"]) == 5 and metrics["normalization"] == "max_clip"
    assert main(["rnn", "currents", str(run)]) == 0
    capsys.readouterr()



def test_necessity_verdicts_for_every_block(tmp_path, capsys):
    """``rnn currents --necessity``: every ordered region pair gets a held-out pVar loss over the
    initialisations, a verdict and the spread of its current; all go to currents.zarr, metrics.json and the
    grid figure; bad options are refused before anything is written."""
    data = write_npz(small_curbd(), tmp_path / "small.npz")
    data_regions = small_curbd().regions
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump({"extends": str(CURBD), "rls": {"runs": 4, "dtype": "float32"}}))
    run = tmp_path / "run"
    assert main(["rnn", "fit", "--data", str(data), "--out", str(run), "--config", str(config), "--quiet"]) == 0
    assert main(["rnn", "currents", str(run), "--necessity", "--inits", "1"]) == 2
    assert "--inits must be at least 2" in capsys.readouterr().err and not (run / "currents.zarr").exists()
    for option, value, message in (("--alpha", "1.5", "--alpha must be between 0 and 1"),
                                   ("--units", "0", "--units must be a fraction")):
        assert main(["rnn", "currents", str(run), "--necessity", option, value]) == 2
        assert message in capsys.readouterr().err and not (run / "currents.zarr").exists()
    assert main(["rnn", "currents", str(run), "--necessity", "--inits", "2", "--refit-runs", "1", "--window", "20",
                 "--quiet"]) == 0
    result = json.loads((run / "metrics.json").read_text())["necessity"]
    assert set(result["blocks"]) == {"B->A", "C->A", "A->B", "C->B", "A->C", "B->C"}
    assert len(result["full_pvar"]) == 2 and result["window"] == 20 and result["seeds"] == [0, 1]
    assert result["threshold"] == pytest.approx(critical_t(2, 0.05, 6))
    for key, block in result["blocks"].items():
        assert len(block["loss"]) == 2 and block["verdict"] in ("required", "not required by the data")
        assert block["loss_mean"] == pytest.approx(np.mean(block["loss"]))
        assert block["current_rms_spread"] >= 0 and len(block["pvar"]) == 2
        assert (block["verdict"] == "required") == (block["t"] > result["threshold"])
        target = key.partition("->")[2]  # a fifth of the target's 20 units, all in the target
        assert len(block["driven_units"]) == 4 and {r for r in data_regions[block["driven_units"]]} == {target}
    ds = xr.open_zarr(run / "currents.zarr", consolidated=False)
    assert ds["verdict"].sel(target_region="A", source_region="B").item() == result["blocks"]["B->A"]["verdict"]
    assert ds["verdict"].sel(target_region="A", source_region="A").item() == "within region"
    assert float(ds["current_rms_mean"].sel(target_region="C", source_region="A")) == pytest.approx(
        result["blocks"]["A->C"]["current_rms_mean"])
    assert (run / "necessity.png").stat().st_size > 0


def test_necessity_refit_holds_the_masked_block_at_zero(tmp_path):
    data = load_rnn_data(write_npz(small_curbd(), tmp_path / "small.npz"), "max_clip")
    cfg = load_config(CURBD, {"rls.runs": 1, "rls.dtype": "float32"})
    train, test = split_holdout(data, 0.2, cfg.model.tau, window=30)
    assert (train.n_samples, test.n_samples) == (281, 70) and test.reset_points == (30, 60)
    base = fit(train, cfg).model
    masked = refit(base, train, dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, seed=3)),
                   block=("B", "A"))
    b, a = (torch.as_tensor(data.regions == r) for r in "BA")
    assert bool((masked.J.detach()[b][:, a] == 0).all()) and float(masked.J.detach()[a][:, b].abs().sum()) > 0
    assert float((masked.J.detach() - base.J.detach())[a][:, a].abs().max()) > 0  # it learned


@pytest.mark.parametrize("with_inputs", [False, True])
def test_held_updates_are_the_same_algorithm(tmp_path, with_inputs):
    """``rls.defer_updates``: rank-1 updates held as a low-rank correction and applied 7 at a time give the
    immediate updates' run (pVar, chi2, J, P) up to rounding, with and without known inputs."""
    sim = small_curbd(record_inputs=with_inputs)
    extra = {"inputs": sim.inputs[0]} if with_inputs else {}
    path = write_npz(sim, tmp_path / "small.npz", **extra)
    now, held = _trainer(path), _trainer(path, **{"rls.defer_updates": 7})
    assert type(held.state).__name__ == "DeferredRLS"
    for _ in range(2):
        assert held.run() == pytest.approx(now.run(), rel=1e-9)
    torch.testing.assert_close(held.model.weight.data, now.model.weight.data, rtol=0, atol=1e-9)
    torch.testing.assert_close(held.P, now.P, rtol=0, atol=1e-9)
    with pytest.raises(ConfigError, match="rls.defer_updates: held updates need"):
        fit(load_rnn_data(path, "max_clip"),
            load_config(CURBD, {"rls.defer_updates": 4, "constraints.dale": True}))


def test_batched_free_run_resets_to_the_data_at_reset_points(tmp_path):
    sim = small_curbd()
    path = write_npz(sim, tmp_path / "small.npz", reset_points=np.array([100, 250]))
    cfg = load_config(None, {"model.dt_factor": 1})
    data = load_rnn_data(path, "max")
    assert data.reset_points == (100, 250)
    model = build_model(data, cfg.model, cfg.constraints)
    fd = fit_data(model, data, "rates")
    rates = free_run(model, fd)[0]
    for sample in (0, 100, 250):  # the state is the data's there, so the rates are the data's
        torch.testing.assert_close(rates[..., sample], fd.rates[..., sample])
    assert not torch.allclose(rates[..., 101], fd.rates[..., 101], atol=1e-3)


def test_driven_units_are_the_rows_every_fit_drives_most():
    """Row norms count as shares of each fit's block norm (averaged over fits); the fraction is rounded, and at
    least one unit is kept."""
    rows = np.array([[1.0, 0.0, 3.0, 0.1, 0.2], [100.0, 0.0, 150.0, 1.0, 0.0]])
    assert driven_units(rows, 0.4).tolist() == [0, 2]
    assert driven_units(rows, 0.01).tolist() == [2]


def test_paired_verdict_cancels_the_spread_over_initialisations():
    """A loss the same in every pair is required however much the initialisations differ; losses centred on
    zero are not; the critical t is the Bonferroni-corrected one-sided level."""
    critical = critical_t(8, 0.05, 6)
    assert critical == pytest.approx(3.1276, abs=1e-3)
    rng = np.random.default_rng(0)
    steady = 0.01 + 0.001 * rng.standard_normal(8)
    assert verdict(steady, critical)[0] == "required"
    assert verdict(steady - steady.mean(), critical)[0] == "not required by the data"
    assert verdict(np.zeros(8), critical) == ("not required by the data", 0.0, 0.0)


def test_holdout_of_whole_trials(tmp_path):
    data = load_rnn_data(write_npz(small_curbd(n_trials=3), tmp_path / "three.npz"), "max")
    train, test = split_holdout(data, 0.2, 0.1, window=50, trials=1)
    assert (train.n_trials, test.n_trials, test.n_samples) == (2, 1, data.n_samples)
    assert np.array_equal(test.rates[0], data.rates[2]) and test.reset_points == tuple(range(50, 351, 50))
    with pytest.raises(DataError, match="--holdout-trials 3 leaves no trial to train on"):
        split_holdout(data, 0.2, 0.1, trials=3)


@pytest.mark.slow
@pytest.mark.parametrize(("amplitude", "required"), [(0.02, set()), (0.2, {"A->B"})])
def test_necessity_of_the_curbd_preset(tmp_path, amplitude, required):
    """Issue #18: the defaults on threeRegionSim (300 units, no outside inputs), 8 initialisations, restarts
    every 10 samples: at ampInterReg 0.02 no block is required; at 0.2 A->B, the strongest true current, is,
    measured on units that include all five of its linked ones (7.5 minutes each on one thread)."""
    sim = simulate_curbd(0, n_units=300, amp_inter_region=amplitude)
    data = load_rnn_data(write_npz(sim, tmp_path / "curbd.npz"), "max")
    result = necessity(data, load_config(None, {"model.use_inputs": False}))
    assert {key for key, block in result["blocks"].items() if block["verdict"] == "required"} == required
    if required:
        linked = np.flatnonzero((sim.regions == "B") & (sim.J[:, sim.regions == "A"] != 0).any(axis=1))
        assert set(linked) <= set(result["blocks"]["A->B"]["driven_units"])


def test_p0_scales_with_the_network_size(tmp_path):
    """``rls.P0_units``: a 60-unit network with P0 1 meant for 300 units trains exactly as with P0 5 (P0 and
    P0_inter both scaled by 300 / 60), and ``configs/rnn_curbd_large.yaml`` (one step per sample, held updates,
    scaled P0) loads onto the reference config and trains."""
    path = write_npz(small_curbd(), tmp_path / "small.npz")
    scaled, given = _trainer(path, **{"rls.P0_units": 300}), _trainer(path, **{"rls.P0": 5.0})
    torch.testing.assert_close(scaled.P, 5.0 * torch.eye(60, dtype=torch.float64)[None])
    assert scaled.run() == pytest.approx(given.run(), rel=1e-12)
    torch.testing.assert_close(scaled.model.weight.data, given.model.weight.data, rtol=0, atol=0)
    assert load_config(None, {"rls.P0_units": 30}).rls.p0_for(60) == (0.5, 5e-4)
    large_config = CURBD.with_name("rnn_curbd_large.yaml")
    large = load_config(large_config)
    rls = large.rls
    assert (large.model.dt_factor, rls.defer_updates, rls.P0_units, rls.loop) == (1, 32, 300, "curbd")
    trainer = _trainer(path, config=large_config)
    assert type(trainer.state).__name__ == "DeferredRLS"
    torch.testing.assert_close(trainer.P, 5.0 * torch.eye(60, dtype=torch.float64)[None])
    pvars = [trainer.run()[0] for _ in range(3)]
    assert pvars[-1] > pvars[0] and np.isfinite(pvars).all()
    with pytest.raises(ConfigError, match="P0_units"):
        load_config(None, {"rls.P0_units": 0})
