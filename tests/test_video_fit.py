"""The video workflow through the command line: fit each video config (truncated BPTT, burn-in frames) on a
tiny video store, then evaluate it into the metrics.json contract."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from neurofit.cli import main
from neurofit.data import write_store
from tests.conftest import tiny_recording

FRAMES, BURN_IN, CHUNK, EPOCHS = 12, 4, 5, 2
FRONT = ["--set", "model.core.frontend={channels: 4, layers: 1, input_kernel: 3, temporal_kernel: 3}"]
SMALL = {
    "gru": [*FRONT, "--set", "model.core.hidden_channels=6"],
    "ctrnn": [*FRONT, "--set", "model.core.hidden_size=10"],
    "conv3d": ["--set", "model.core.channels=6", "--set", "model.core.layers=2", "--set",
               "model.core.input_kernel=3"],
}


@pytest.fixture(scope="module")
def video_store(tmp_path_factory):
    """Two recordings of 12-frame 8 x 10 videos, with truth."""
    recs, truths = {}, {}
    for i, n in enumerate((12, 9)):
        recs[f"m{i}"], truths[f"m{i}"] = tiny_recording(f"m{i}", n_neurons=n, video_frames=FRAMES, seed=i)
    return write_store(tmp_path_factory.mktemp("video") / "video.zarr", recs, truths)


@pytest.mark.parametrize("core", sorted(SMALL))
def test_fit_and_evaluate_video_config(video_store, tmp_path, core):
    """Quality is the benchmark's job (scripts/benchmark_video.py on simulated V1 videos); here: the workflow
    runs, truncated BPTT takes one optimiser step per chunk that holds scored frames, training lowers the
    loss, and evaluate writes finite metrics."""
    run = tmp_path / core
    args = ["fit", "--data", str(video_store), "--config", f"configs/video_{core}.yaml", "--out", str(run),
            "--max-epochs", str(EPOCHS), *SMALL[core], "--set", "data.batch_size=10",
            "--set", f"training.skip_frames={BURN_IN}", "--set", f"training.tbptt_frames={CHUNK}",
            "--set", f"evaluation.skip_frames={BURN_IN}", "--set", "training.lr=0.01",
            "--set", "training.log_every_n_steps=1", "--set", "training.patience=10"]
    assert main(args) == 0
    # 2 recordings x 40 training trials in batches of 10; frames 0-4, 5-9, 10-11 all hold scored frames.
    steps_per_epoch = 8 * 3
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["epoch"] == EPOCHS - 1 and saved["global_step"] == EPOCHS * steps_per_epoch
    losses: dict[int, list[float]] = {}
    with open(run / "logs" / "metrics.csv") as fh:
        for row in csv.DictReader(fh):
            if row.get("train/loss"):
                losses.setdefault(int(row["epoch"]), []).append(float(row["train/loss"]))
    per_epoch = [np.mean(losses[e]) for e in sorted(losses)]
    assert len(per_epoch) == EPOCHS and per_epoch[-1] < per_epoch[0]
    assert main(["evaluate", str(run), "--no-figures"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tier"] == "test" and set(metrics["recordings"]) == {"m0", "m1"}
    assert all(np.isfinite(metrics["mean"][k]) for k in ("single_trial_correlation", "correlation_to_average",
                                                           "oracle_correlation", "fraction_of_ceiling"))


@pytest.mark.parametrize("scheduler, steps, final_lr", [
    (["cosine"], EPOCHS * 8, 0.01 * 0.01),  # once per batch of 10 trials, ending at 1% of lr
    (["step", "--set", "training.lr_milestones=[1]"], EPOCHS, 0.01 * 0.3),  # once per epoch
])
def test_schedules_under_truncated_bptt(video_store, tmp_path, scheduler, steps, final_lr):
    """With truncated BPTT (manual optimisation) the module steps the cosine schedule once per batch and the
    step schedule once per epoch, which Lightning would do only under automatic optimisation."""
    run = tmp_path / "gru"
    args = ["fit", "--data", str(video_store), "--config", "configs/video_gru.yaml", "--out", str(run),
            "--max-epochs", str(EPOCHS), *SMALL["gru"], "--set", "data.batch_size=10",
            "--set", f"training.skip_frames={BURN_IN}", "--set", f"training.tbptt_frames={CHUNK}",
            "--set", "training.lr=0.01", "--set", f"training.scheduler={scheduler[0]}", *scheduler[1:]]
    assert main(args) == 0
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["lr_schedulers"][0]["last_epoch"] == steps
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(final_lr)
