"""Interaction configs fit end to end and ``neurofit attention`` writes the contract outputs."""

import json

import numpy as np
import pytest
import xarray as xr

from neurofit.cli import main

SMALL = ["--set", "model.core.channels=4", "--set", "model.core.layers=1", "--set", "model.core.input_kernel=3",
         "--set", "data.batch_size=16", "--max-epochs", "1"]


@pytest.mark.parametrize("config", ["attention", "normalization", "attention_normalization"])
def test_interaction_configs_fit_and_map(tiny_store, tmp_path, config):
    run = tmp_path / config
    assert main(["fit", "--data", str(tiny_store), "--config", f"configs/{config}.yaml", "--out", str(run),
                 *SMALL]) == 0
    assert main(["evaluate", str(run), "--no-figures"]) == 0
    assert main(["attention", str(run), "--permutations", "50"]) == 0
    summary = json.loads((run / "attention" / "attention_vs_distance.json").read_text())
    assert set(summary) == {"m0", "m1"}
    ds = xr.open_zarr(run / "attention" / "m1.zarr")
    n = 9
    assert ds["unit_id"].values.tolist() == list(range(100, 100 + n))
    if "attention" in config:
        att = ds["attention"].values
        assert att.shape == (n, n)
        np.testing.assert_allclose(att.sum(axis=1), 1.0, atol=1e-4)  # each row is a distribution
        assert {"spearman_rho", "p_value", "distance_bins_um", "mean_attention"} <= set(summary["m1"])
    if "normalization" in config:
        assert (ds["pools"].values >= 0).all()
        assert "pools_vs_distance" in summary["m1"]


def test_attention_on_a_model_without_interactions_is_a_clear_error(tiny_store, tmp_path):
    run = tmp_path / "plain"
    assert main(["fit", "--data", str(tiny_store), "--config", "configs/default.yaml", "--out", str(run),
                 *SMALL]) == 0
    assert main(["attention", str(run)]) == 2


def _no_output(run) -> bool:
    return not (run / "attention").exists()


def test_bad_input_is_one_clear_error_and_writes_nothing(tiny_store, tmp_path, capsys):
    plain = tmp_path / "plain"
    assert main(["fit", "--data", str(tiny_store), "--config", "configs/default.yaml", "--out", str(plain),
                 *SMALL]) == 0
    capsys.readouterr()
    assert main(["attention", str(plain)]) == 2 and _no_output(plain)
    assert "has no interaction layers" in capsys.readouterr().err
    run = tmp_path / "att"
    assert main(["fit", "--data", str(tiny_store), "--config", "configs/attention.yaml", "--out", str(run),
                 *SMALL]) == 0
    capsys.readouterr()
    assert main(["attention", str(run), "--recording", "mouse9"]) == 2 and _no_output(run)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no recording(s) ['mouse9']" in err[0]


def test_neurons_without_cortical_coordinates_are_refused_before_writing(tmp_path, capsys):
    from conftest import tiny_recording, write_store

    recs, truths = {}, {}
    for i, n in enumerate((12, 9)):
        ds, truths[f"m{i}"] = tiny_recording(f"m{i}", n_neurons=n, seed=i)
        if i == 1:  # every neuron of m1 at one position
            ds = ds.assign_coords({c: ("neuron", np.zeros(n)) for c in ("x_um", "y_um", "z_um")})
        recs[f"m{i}"] = ds
    store = write_store(tmp_path / "flat.zarr", recs, truths)
    run = tmp_path / "att"
    assert main(["fit", "--data", str(store), "--config", "configs/attention.yaml", "--out", str(run),
                 *SMALL]) == 0
    capsys.readouterr()
    assert main(["attention", str(run)]) == 2 and _no_output(run)  # m0 is fine, but nothing is half written
    assert "no cortical coordinates" in capsys.readouterr().err


def test_context_model_reports_both_modes_and_every_map_has_baselines(tiny_store, tmp_path):
    run = tmp_path / "context"
    assert main(["fit", "--data", str(tiny_store), "--config", "configs/attention_context.yaml", "--out", str(run),
                 *SMALL]) == 0
    assert main(["evaluate", str(run), "--no-figures"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    context = metrics["with_population_context"]
    assert "not comparable with the stimulus-only" in context["description"]
    m1 = context["recordings"]["m1"]
    assert m1["stimulus_only_single_trial_correlation"] == pytest.approx(
        metrics["recordings"]["m1"]["single_trial_correlation"])
    assert {"single_trial_correlation", "gain", "gain_by_reliability"} <= set(m1)
    assert main(["attention", str(run), "--permutations", "20"]) == 0
    entry = json.loads((run / "attention" / "attention_vs_distance.json").read_text())["m1"]
    for key in ("context_attention_vs_distance", "context_coupling_vs_distance"):
        # This store plants no coupling (as real data): no truth to score, only what distance and tuning explain.
        assert entry[key]["verdict"].startswith("beyond distance: untested")
        assert {"rho_with_minus_distance", "rho_with_signal_correlation"} <= set(entry[key]["baselines"])
    ds = xr.open_zarr(run / "attention" / "m1.zarr")
    assert {"context_attention", "context_coupling", "signal_correlation"} <= set(ds.data_vars)
    np.testing.assert_allclose(np.diag(ds["context_attention"].values), 0.0)
