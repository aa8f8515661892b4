"""fit -> evaluate -> resume through the command line, baselines, and one-line errors for bad input."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from neurofit.cli import main
from neurofit.data import write_store
from tests.conftest import tiny_recording

SMALL = ["--set", "model.core.channels=4", "--set", "model.core.layers=1", "--set", "model.core.input_kernel=3",
         "--set", "data.batch_size=16"]


def _fit(store, out, *extra, config="configs/default.yaml", epochs=2):
    small = SMALL if config == "configs/default.yaml" else []
    return main(["fit", "--data", str(store), "--config", config, "--out", str(out), "--max-epochs", str(epochs),
                 *small, *extra])


def test_fit_evaluate_writes_contract(tiny_store, tmp_path, capsys):
    run = tmp_path / "run"
    assert _fit(tiny_store, run) == 0
    for name in ("config.yaml", "specs.json", "train_info.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                 "logs/metrics.csv"):
        assert (run / name).exists(), name
    assert main(["evaluate", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tier"] == "test" and set(metrics["recordings"]) == {"m0", "m1"}
    keys = {"single_trial_correlation", "correlation_to_average", "feve", "oracle_correlation",
            "fraction_of_ceiling"}
    assert keys <= set(metrics["mean"]) and metrics["recordings"]["m1"]["n_neurons"] == 9
    assert metrics["mean"]["fraction_of_ceiling"] is not None
    assert (run / "figures" / "evaluation.png").stat().st_size > 10_000
    assert "single_r" in capsys.readouterr().out


def test_resume_continues_from_last_checkpoint(tiny_store, tmp_path):
    run = tmp_path / "run"
    assert _fit(tiny_store, run, epochs=1) == 0
    assert _fit(tiny_store, run, "--resume", epochs=1) == 0  # saved config says 1 epoch: nothing to redo
    info = json.loads((run / "train_info.json").read_text())
    assert info["epochs"] == 1
    # A row an interrupted session logged after its last checkpoint is trained again, so it must go.
    log = run / "logs" / "metrics.csv"
    with open(log) as fh:
        header = fh.readline().strip().split(",")
    with open(log, "a") as fh:
        fh.write(",".join({"epoch": "1", "step": "99999", "train/loss": "7.0"}.get(k, "") for k in header) + "\n")
    # --max-epochs with --resume extends the finished run's budget: one more epoch, not a fresh fit
    assert _fit(tiny_store, run, "--resume", epochs=2) == 0
    extended = json.loads((run / "train_info.json").read_text())
    assert extended["epochs"] == 2 and extended["wall_s"] > info["wall_s"]  # both sessions' time
    with open(log) as fh:
        rows = list(csv.DictReader(fh))
    # the history of both sessions, without the stale row
    assert [r["epoch"] for r in rows if r.get("val/correlation")] == ["0", "1"]
    assert not any(r["step"] == "99999" for r in rows)
    # a refused re-fit into a used run dir
    assert _fit(tiny_store, run) == 2


def test_ridge_and_ln_baselines(tiny_store, tmp_path):
    ridge, ln = tmp_path / "ridge", tmp_path / "ln"
    assert _fit(tiny_store, ridge, "--set", "model.downsample=1", config="configs/ridge.yaml") == 0
    assert main(["evaluate", str(ridge), "--no-figures"]) == 0
    assert _fit(tiny_store, ln, config="configs/ln.yaml") == 0
    assert main(["evaluate", str(ln), "--no-figures"]) == 0
    r = json.loads((ridge / "metrics.json").read_text())["mean"]["single_trial_correlation"]
    assert r > 0.3  # the tiny data is linear-nonlinear: ridge must find it


@pytest.mark.parametrize("case, message", [
    ("missing", "no such store"),
    ("nan", "NaN or inf"),
    ("unknown_core", "unknown core 'resnet9000'"),
    ("bad_readout_option", "position_init must be null or 'rf_map'"),
])
def test_bad_input_gives_one_clear_line(tmp_path, case, message):
    store = tmp_path / "data.zarr"
    extra = []
    if case == "nan":
        ds, _ = tiny_recording()
        resp = ds.responses.values.copy()
        resp[4, 2] = np.nan
        ds["responses"].values = resp
        store.mkdir()
        ds.to_zarr(str(store), group="m0")
        import zarr

        zarr.open_group(str(store)).attrs["neurofit_store"] = {"format_version": "1", "recordings": ["m0"]}
    elif case in ("unknown_core", "bad_readout_option"):
        ds, _ = tiny_recording()
        write_store(store, {"m0": ds})
        bad = "model.core.name=resnet9000" if case == "unknown_core" else "model.readout.position_init=x"
        extra = ["--set", bad]
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "neurofit", "fit", "--data", str(store), "--config",
                           "configs/default.yaml", "--out", str(out), *extra], capture_output=True, text=True)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2
    assert len(err) == 1 and err[0].startswith("neurofit: error:") and message in err[0], proc.stderr
    if case != "missing":
        assert str(store) in err[0] or "model.core" in err[0] or "model.readout" in err[0]
    assert not out.exists()  # nothing half written


def test_embeddings_are_addressable_by_unit_id(tiny_store, tmp_path):
    from neurofit.errors import ConfigError
    from neurofit.run import load_run

    run = tmp_path / "run"
    assert _fit(tiny_store, run, epochs=1) == 0
    encoder = load_run(run).encoder
    all_m1 = encoder.embedding("m1")
    picked = encoder.embedding("m1", [105, 100])
    assert all_m1.shape == (9, 4)
    assert torch.equal(picked[0], all_m1[5]) and torch.equal(picked[1], all_m1[0])
    with pytest.raises(ConfigError, match="no unit_id"):
        encoder.embedding("m1", [999])


def test_mismatched_neuron_coordinates_are_reported(tmp_path):
    import zarr

    ds, _ = tiny_recording()
    store = write_store(tmp_path / "bad.zarr", {"m0": ds})
    group = zarr.open_group(str(store))["m0"]
    x = group["x_um"][...]
    bad = group.create_array("x_um", shape=(len(x) - 2,), dtype=x.dtype, dimension_names=["neuron"],
                             overwrite=True)
    bad[...] = x[:-2]
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "neurofit", "fit", "--data", str(store), "--config",
                           "configs/default.yaml", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "bad.zarr" in err[0] and "m0" in err[0], proc.stderr


def test_wandb_logger_runs_offline(tiny_store, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    assert _fit(tiny_store, run, "--logger", "wandb", epochs=1) == 0
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].rglob("*.wandb"))
    assert (run / "logs" / "metrics.csv").exists()  # CSV is always written too


def test_cosine_schedule_decays_over_the_epoch_budget(tiny_store, tmp_path):
    run = tmp_path / "run"
    assert _fit(tiny_store, run, "--set", "training.scheduler=cosine", "--set", "training.lr=0.004",
                epochs=3) == 0
    with open(run / "logs" / "metrics.csv") as fh:
        lrs = [float(r["lr-AdamW"]) for r in csv.DictReader(fh) if r.get("lr-AdamW")]
    assert lrs[0] == pytest.approx(0.004) and lrs[0] > lrs[1] > lrs[2]
    assert _fit(tiny_store, tmp_path / "bad", "--set", "training.scheduler=sometimes") == 2
    assert not (tmp_path / "bad").exists()  # refused before the run directory is written


def test_step_schedule_decays_after_each_milestone(tiny_store, tmp_path):
    run = tmp_path / "run"
    assert _fit(tiny_store, run, "--set", "training.scheduler=step", "--set", "training.lr_milestones=[1, 2]",
                "--set", "training.lr=0.004", "--set", "training.lr_decay_factor=0.5", epochs=3) == 0
    with open(run / "logs" / "metrics.csv") as fh:
        lrs = [float(r["lr-AdamW"]) for r in csv.DictReader(fh) if r.get("lr-AdamW")]
    assert lrs == pytest.approx([0.004, 0.002, 0.001])
    for i, bad in enumerate(("[2, 1]", "[]", "3")):
        assert _fit(tiny_store, tmp_path / f"bad{i}", "--set", "training.scheduler=step",
                    "--set", f"training.lr_milestones={bad}") == 2
        assert not (tmp_path / f"bad{i}").exists()
