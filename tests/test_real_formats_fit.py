"""A user with SENSORIUM folders runs convert, fit and evaluate with the same commands as on simulated data."""

import json

from neurofit.cli import main
from tests.fixtures_sensorium import make_dynamic_tree, make_static_tree

STATIC = ["--set", "model.core.channels=4", "--set", "model.core.layers=1", "--set", "model.core.input_kernel=3",
          "--set", "data.batch_size=8", "--max-epochs", "1"]
VIDEO = ["--set", "model.core.frontend.channels=4", "--set", "model.core.frontend.layers=1",
         "--set", "model.core.hidden_channels=4", "--set", "data.batch_size=2", "--set", "training.skip_frames=4",
         "--set", "evaluation.skip_frames=4", "--set", "training.tbptt_frames=8", "--max-epochs", "1"]


def test_sensorium2022_convert_fit_evaluate(tmp_path):
    tree = make_static_tree(tmp_path, n_neurons=6, n_trials=48, withheld="real")
    store = tmp_path / "s22.zarr"
    assert main(["convert", "sensorium", str(tree), "--out", str(store)]) == 0
    run = tmp_path / "run"
    assert main(["fit", "--data", str(store), "--config", "configs/default.yaml", "--out", str(run), *STATIC]) == 0
    assert main(["evaluate", str(run), "--no-figures"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tier"] == "test" and metrics["recordings"][tree.name]["n_neurons"] == 6
    assert metrics["mean"]["fraction_of_ceiling"] is None  # real data: no ground truth


def test_sensorium2023_convert_fit_evaluate(tmp_path):
    tree = make_dynamic_tree(tmp_path, n_neurons=5)
    store = tmp_path / "s23.zarr"
    assert main(["convert", "sensorium", str(tree), "--out", str(store)]) == 0
    run = tmp_path / "run"
    assert main(["fit", "--data", str(store), "--config", "configs/video_gru.yaml", "--out", str(run),
                 *VIDEO]) == 0  # 2023 has no validation tier: the oracle tier validates
    assert main(["evaluate", str(run), "--no-figures"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["recordings"][tree.name]["n_neurons"] == 5
