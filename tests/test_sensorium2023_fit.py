"""SENSORIUM 2023 as released, end to end: a FileTree whose every array (float32 videos, responses,
behaviour, pupil centre) is NaN-padded at the end to one length per mouse, with trials of different true
lengths, converts, trains (truncated BPTT), resumes and evaluates on ``final_test_main`` with finite metrics;
the same under two-process DDP on CPU (slow). A non-finite loss stops the fit with one line and keeps the
last good checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from neurofit.cli import main
from neurofit.training.module import EncoderModule
from tests.fixtures_sensorium import make_dynamic_tree

ROOT = Path(__file__).resolve().parent.parent
PAD = 32
#: 24 training trials, 2 oracle and 2 final_test_main videos shown 3 times each, 2 withheld live-test trials.
TIERS = ("train",) * 24 + ("oracle",) * 6 + ("final_test_main",) * 6 + ("live_test_main",) * 2
VIDEO_IDS = tuple(range(24)) + (100, 101) * 3 + (200, 201) * 3 + (300, 301)
SMALL = ["--set", "model.core.frontend={channels: 4, layers: 1, input_kernel: 3, temporal_kernel: 3}",
         "--set", "model.core.hidden_channels=6", "--set", "data.batch_size=6", "--set", "training.skip_frames=4",
         "--set", "training.tbptt_frames=8", "--set", "evaluation.skip_frames=4", "--set", "training.lr=0.01"]


@pytest.fixture(scope="module")
def released_store(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("s23")
    rng = np.random.default_rng(3)
    length = {v: int(rng.integers(20, PAD + 1)) for v in VIDEO_IDS}  # repeats of a video share its length
    frames = tuple(length[v] for v in VIDEO_IDS)
    tree = make_dynamic_tree(tmp, n_neurons=9, height=12, width=16, frames=frames, nan_pad_to=PAD,
                             tiers=TIERS, video_ids=VIDEO_IDS, withheld_tiers=("live_test_main",))
    store = tmp / "s23.zarr"
    assert main(["convert", "sensorium", str(tree), "--out", str(store)]) == 0
    return store


def _fit(store: Path, out: Path, *extra: str) -> int:
    return main(["fit", "--data", str(store), "--config", str(ROOT / "configs/video_gru.yaml"), "--out", str(out),
                 *SMALL, *extra])


def test_store_carries_the_padding_as_nan_and_masked(released_store):
    group = zarr.open_group(str(released_store), mode="r")
    (name,) = list(group.group_keys())
    mask = group[name]["response_mask"][...]
    stimulus = group[name]["stimulus"][...]
    assert mask.shape == (len(TIERS), PAD) and not mask.all() and mask[:36].any(axis=1).all()
    assert np.isfinite(stimulus[mask]).all()
    assert np.isnan(stimulus[:36][~mask[:36]]).all()  # the released padding, kept as NaN


def test_convert_fit_resume_evaluate_on_final_test_main(released_store, tmp_path):
    run = tmp_path / "run"
    assert _fit(released_store, run, "--max-epochs", "1") == 0
    assert _fit(released_store, run, "--resume", "--max-epochs", "2") == 0
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["epoch"] == 1
    assert all(bool(torch.isfinite(v).all()) for v in saved["state_dict"].values() if v.is_floating_point())
    assert main(["evaluate", str(run), "--tier", "final_test_main", "--no-figures"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tier"] == "final_test_main"
    for key in ("single_trial_correlation", "correlation_to_average", "oracle_correlation"):
        assert np.isfinite(metrics["mean"][key]), key


def test_non_finite_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(released_store, tmp_path,
                                                                                  monkeypatch, capsys):
    original = EncoderModule._loss

    def diverging(self, batch, mask):
        loss = original(self, batch, mask)
        return loss * float("nan") if self.current_epoch == 1 else loss

    monkeypatch.setattr(EncoderModule, "_loss", diverging)
    run = tmp_path / "run"
    assert _fit(released_store, run, "--max-epochs", "3") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"neurofit: error: {run}: recording ")
    assert "the training loss is nan at epoch 1" in err[0] and "last good checkpoint" in err[0]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["epoch"] == 0  # written after epoch 0; nothing after the divergence
    assert all(bool(torch.isfinite(v).all()) for v in saved["state_dict"].values() if v.is_floating_point())
    monkeypatch.setattr(EncoderModule, "_loss", original)
    assert _fit(released_store, run, "--resume") == 0


def test_a_checkpoint_with_non_finite_weights_is_never_written(tiny_store, tmp_path, monkeypatch, capsys):
    def poison(self):
        with torch.no_grad():
            next(self.parameters()).fill_(float("nan"))

    monkeypatch.setattr(EncoderModule, "on_train_epoch_end", poison)
    run = tmp_path / "run"
    args = ["fit", "--data", str(tiny_store), "--config", str(ROOT / "configs/ln.yaml"), "--out", str(run),
            "--max-epochs", "2"]
    assert main(args) == 2
    assert "non-finite weights" in capsys.readouterr().err
    assert not (run / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_two_process_ddp_on_the_released_form(released_store, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "neurofit", "fit", "--data", str(released_store), "--config",
           str(ROOT / "configs/video_gru.yaml"), "--out", str(run), "--accelerator", "cpu", "--devices", "2",
           "--strategy", "ddp", "--max-epochs", "2", *SMALL]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "train_info.json").read_text())["world_size"] == 2
    assert main(["evaluate", str(run), "--tier", "final_test_main", "--no-figures"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["mean"]["single_trial_correlation"])
