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
