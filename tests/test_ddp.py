"""Two-process DDP on CPU (gloo) through the real command line matches one process with the same global
batch: the schedule is drawn from the seed alone and each rank takes a disjoint half of every batch, and the
gradients averaged over ranks equal the global batch's. The LN config is used because it has no batch norm
(per-rank statistics) and no readout sampling noise, so the two runs should agree to float precision."""

import json
import subprocess
import sys

import pytest

SMALL = ["--set", "training.deterministic=true", "--max-epochs", "3"]


def _fit(store, out, *extra):
    cmd = [sys.executable, "-m", "neurofit", "fit", "--data", str(store), "--config", "configs/ln.yaml",
           "--out", str(out), "--accelerator", "cpu", *SMALL, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-m", "neurofit", "evaluate", str(out), "--no-figures"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())["mean"]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tiny_store, tmp_path):
    single = _fit(tiny_store, tmp_path / "single", "--devices", "1", "--set", "data.batch_size=16")
    ddp = _fit(tiny_store, tmp_path / "ddp", "--devices", "2", "--strategy", "ddp", "--set", "data.batch_size=8")
    info = json.loads((tmp_path / "ddp" / "train_info.json").read_text())
    assert info["world_size"] == 2
    assert single["single_trial_correlation"] > 0.2  # the model learned something worth comparing
    for key in ("single_trial_correlation", "correlation_to_average"):
        assert abs(single[key] - ddp[key]) < 0.005, (key, single[key], ddp[key])
