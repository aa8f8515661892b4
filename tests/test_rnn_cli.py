"""``neurofit rnn fit|currents`` end to end: run directory contract, currents store, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import yaml

from neurofit.cli import main
from neurofit.data.simulate.regions import simulate_regions


@pytest.fixture(scope="module")
def npz_path(tmp_path_factory):
    sim = simulate_regions(1, n_units=45, n_samples=250, n_seq=4, burn_in=50)
    path = tmp_path_factory.mktemp("cli") / "sim.npz"
    np.savez(path, rates=sim.rates[0].T, regions=sim.regions, dt=sim.dt, inputs=sim.inputs[0],
             input_channels=np.asarray(sim.input_channels))
    return path


def test_fit_then_currents(tmp_path, npz_path, capsys):
    config = tmp_path / "fast.yaml"
    config.write_text(yaml.safe_dump({"model": {"dt_factor": 2, "inferred_inputs": 3}, "rls": {"runs": 3}}))
    run = tmp_path / "run"
    args = ["rnn", "fit", "--data", str(npz_path), "--out", str(run), "--config", str(config), "--quiet"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert summary["pVar"] == metrics["pVar"] > 0.95
    assert (metrics["n_units"], metrics["n_regions"], metrics["method"]) == (45, 3, "rls")
    assert len(metrics["chi2"]) == 4 and metrics["wall_s"] > 0
    assert set(metrics["variance_share"]["B"]) == {"A", "B", "C", "input", "inferred"}
    assert sum(metrics["variance_share"]["B"].values()) == pytest.approx(1.0)
    for name in ("model.pt", "fit.npz", "config.yaml", "fit_curve.png"):
        assert (run / name).stat().st_size > 0
    assert not list(run.glob(".*tmp*"))  # atomic writes leave no temporary files
    from neurofit.rnn.config import load_config

    assert load_config(run / "config.yaml") == load_config(config)  # the saved config loads back as --config
    assert metrics["data_path"] == str(npz_path)

    assert main(["rnn", "currents", str(run)]) == 0
    ds = xr.open_zarr(run / "currents.zarr", consolidated=False)
    assert ds["current"].dims == ("target_region", "source", "sign", "trial", "time")
    assert list(ds["sign"].values) == ["excitatory", "inhibitory"]
    assert ds["unit_current"].shape == (45, 5, 2, 1, 250)
    exc, inh = ds["unit_current"].sel(sign="excitatory"), ds["unit_current"].sel(sign="inhibitory")
    assert float(exc.sel(source="A").std()) > 0 and float(inh.sel(source="A").std()) > 0
    for name in ("rasters.png", "current_grid.png", "block_norms.png"):
        assert (run / name).stat().st_size > 0


def test_bad_data_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, rates=np.ones((3, 100)), regions=np.array(["A", "B"]), dt=0.01)
    assert main(["rnn", "fit", "--data", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neurofit: error:") and str(bad) in err and "2 labels but rates has 3 neurons" in err
    assert main(["rnn", "currents", str(tmp_path)]) == 2
    assert "no model.pt" in capsys.readouterr().err


@pytest.mark.slow
def test_rls_reaches_pvar_099_on_the_default_simulator(tmp_path, capsys):
    store = tmp_path / "regions.zarr"
    assert main(["simulate", "regions", "--out", str(store)]) == 0
    run = tmp_path / "run"
    assert main(["rnn", "fit", "--data", str(store), "--out", str(run), "--config", "configs/rnn_curbd.yaml",
                 "--threads", "1", "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_units"], metrics["n_samples"]) == (300, 1200)
    assert metrics["pVar"] >= 0.99
