"""The notebook API: Model(config).fit(data, out).evaluate(), load(run).predict/metrics/neurons, determinism."""

from pathlib import Path

import numpy as np
import pytest
import yaml

import neurofit.api as nf
from neurofit.errors import DataError
from neurofit.metrics import correlation

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def tiny_config(directory: Path, name: str = "tiny", base: str = "default.yaml") -> Path:
    """A config named ``name`` extending ``configs/BASE`` with a model small enough for 1-epoch tests."""
    cfg = {"name": name, "extends": str(CONFIGS / base), "data": {"batch_size": 16}}
    if base == "default.yaml":
        cfg["model"] = {"core": {"channels": 4, "layers": 1, "input_kernel": 3}}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_fit_evaluate_predict_and_same_seed_same_numbers(tiny_store, tmp_path):
    config = tiny_config(tmp_path)
    deterministic = ["training.deterministic=true"]
    model = nf.Model(config, seed=3, max_epochs=1, overrides=deterministic).fit(tiny_store, tmp_path / "a")
    metrics = model.evaluate()
    assert list(metrics["recording"].values) == ["m0", "m1", "overall"] and metrics.attrs["tier"] == "test"
    assert list(metrics["n_neurons"].values) == [12, 9, 21]
    assert metrics.sel(recording="overall").to_pandas()["single_trial_correlation"] == pytest.approx(
        metrics["single_trial_correlation"].sel(recording=["m0", "m1"]).mean().item())

    run = nf.load(tmp_path / "a")
    pred = run.predict(recording="m0")
    assert pred.dims == ("trial", "neuron") and pred.shape == (12, 12)
    assert list(pred["unit_id"].values) == list(range(100, 112)) and set(pred["tier"].values) == {"test"}
    import zarr

    resp = zarr.open_group(str(tiny_store), mode="r")["m0"]["responses"][...][pred["trial"].values]
    neurons = run.neurons()
    assert neurons.sizes["neuron"] == 21 and {"recording", "unit_id"} <= set(neurons.to_pandas().columns)
    m0 = neurons.where(neurons["recording"] == "m0", drop=True)
    np.testing.assert_allclose(correlation(pred.values, resp), m0["single_trial_correlation"].values, atol=1e-6)
    assert run.embeddings("m1").shape == (9, 4)

    again = nf.Model(config, seed=3, max_epochs=1, overrides=deterministic).fit(tiny_store, tmp_path / "b")
    again.evaluate()
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()
    assert (tmp_path / "a" / "neurons.csv").read_text() == (tmp_path / "b" / "neurons.csv").read_text()


def test_clear_errors(tiny_store, tmp_path):
    with pytest.raises(DataError, match="not fitted yet"):
        nf.Model(tiny_config(tmp_path)).evaluate()
    with pytest.raises(DataError, match="not a run directory"):
        nf.load(tmp_path)
    ridge = nf.Model(CONFIGS / "ridge.yaml", overrides=["model.downsample=1"]).fit(tiny_store, tmp_path / "r")
    with pytest.raises(DataError, match=r"has recordings \['m0', 'm1'\]; name one"):
        ridge.predict()
    with pytest.raises(DataError, match="no neuron embeddings"):
        ridge.fitted.embeddings("m0")
    assert ridge.predict(recording="m1").shape == (12, 9)
