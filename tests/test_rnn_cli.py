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
@pytest.mark.parametrize(("preset", "samples"), [("curbd", 1201), ("default", 1200)])
def test_rnn_curbd_config_reaches_pvar_099(tmp_path, capsys, preset, samples):
    """configs/rnn_curbd.yaml (CURBD's algorithm, 20 runs) on CURBD's own simulation and on neurofit's."""
    store = tmp_path / "regions.zarr"
    assert main(["simulate", "regions", "--preset", preset, "--out", str(store)]) == 0
    run = tmp_path / "run"
    assert main(["rnn", "fit", "--data", str(store), "--out", str(run), "--config", "configs/rnn_curbd.yaml",
                 "--threads", "1", "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_units"], metrics["n_samples"]) == (300, samples)
    assert metrics["pVar"] >= 0.99


def _series(n: int = 6, t: int = 120) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"rates": np.tanh(rng.standard_normal((n, t)).cumsum(axis=1) / 5),
            "regions": np.repeat(["A", "B"], n // 2), "dt": np.array(0.01)}


BAD_INPUTS = {  # name: (npz arrays, config, what the message says, which file it names)
    "region_label_without_units": ({**_series(), "region_names": np.array(["A", "B", "C"])}, {},
                                   r"region(s) ['C'] have no units", "npz"),
    "constant_rates": ({**_series(), "rates": np.full((6, 120), 0.3)}, {}, "rates are constant", "npz"),
    "nan_rates": ({**_series(), "rates": np.where(np.eye(6, 120) > 0, np.nan, _series()["rates"])}, {},
                  "NaN or inf (first at trial 0, neuron 0, time 0)", "npz"),
    "one_sample": ({**_series(t=1)}, {}, "too short: 1 sample(s)", "npz"),
    "shorter_than_three_tau": ({**_series(t=20)}, {}, "too short: 20 samples", "npz"),
    "mask_names_unknown_region": (_series(), {"constraints": {"allowed": {"B": ["A", "D"]}}},
                                  "constraints.allowed: region(s) ['D'] have no units", "config"),
    "sign_names_unknown_region": (_series(), {"constraints": {"dale": True, "region_signs": {"Z": -1}}},
                                  "constraints.region_signs: region(s) ['Z']", "config"),
    "block_lr_key_malformed": (_series(), {"constraints": {"block_lr": {"A-B": 0.5}}},
                               "keys must be 'TARGET<-SOURCE'", "config"),
    "reset_points_past_the_end": ({**_series(), "reset_points": np.array([50, 120, 300])}, {},
                                  "reset_points [120, 300] past the end of the 120-sample trials", "npz"),
    "reset_points_fractional": ({**_series(), "reset_points": np.array([10.5])}, {},
                                "reset_points must be whole sample indices", "npz"),
    "reset_points_with_bptt": ({**_series(), "reset_points": np.array([60])}, {"method": "bptt"},
                               "has reset points", "config"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(case, tmp_path, capsys):
    arrays, config, message, culprit = BAD_INPUTS[case]
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"dt_factor": 1}, "rls": {"runs": 1}, **config}))
    run = tmp_path / "run"
    assert main(["rnn", "fit", "--data", str(data), "--out", str(run), "--config", str(cfg), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurofit: error:") and message in lines[0]
    assert str(data if culprit == "npz" else cfg) in lines[0]
    assert not run.exists() and not list(tmp_path.glob(".run*"))
