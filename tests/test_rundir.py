"""Run-directory rules shared by every command: nothing is created before the inputs are checked, an early
run (no checkpoint yet) never blocks the corrected rerun, a run with progress or a folder of other files is
refused, a resume checks its checkpoint before rewriting anything, and every run keeps its initial model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from neurofit.cli import main
from neurofit.errors import DataError
from neurofit.io import check_output_location
from neurofit.run import load_run
from neurofit.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
LN = str(ROOT / "configs/ln.yaml")


def _fit(store, out, *extra):
    return main(["fit", "--data", str(store), "--config", LN, "--out", str(out), "--max-epochs", "1", *extra])


def test_output_locations_that_cannot_be_written_are_refused(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(DataError, match="exists and is not a folder"):
        check_output_location(afile)
    with pytest.raises(DataError, match=f"{afile} is a file"):
        check_output_location(afile / "run")
    assert check_output_location(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()


def test_early_runs_are_replaced_and_runs_with_progress_or_other_files_refused(tiny_store, tmp_path, capsys):
    early = tmp_path / "early"
    (early / "logs").mkdir(parents=True)
    (early / "config.yaml").write_text("name: half\n")  # what a run killed before its first checkpoint leaves
    assert _fit(tiny_store, early) == 0
    assert (early / "checkpoints" / "last.ckpt").exists()
    assert _fit(tiny_store, early) == 2
    assert "holds a run with progress (use --resume" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert _fit(tiny_store, other) == 2
    assert "holds files that are not a neurofit run" in capsys.readouterr().err
    assert sorted(os.listdir(other)) == ["notes.txt"]


def test_bad_config_creates_nothing_and_the_corrected_rerun_works(tiny_store, tmp_path, capsys):
    run = tmp_path / "run"
    assert _fit(tiny_store, run, "--set", "training.max_epoch=3") == 2
    assert "did you mean max_epochs?" in capsys.readouterr().err
    assert not run.exists()
    assert _fit(tiny_store, run, "--set", "training.max_epochs=1") == 0


def test_resume_checks_the_checkpoint_and_the_overrides_before_writing(tiny_store, tmp_path, capsys):
    run = tmp_path / "run"
    assert _fit(tiny_store, run) == 0
    config = (run / "config.yaml").read_bytes()
    assert _fit(tiny_store, run, "--resume", "--set", "training.lr=0.5") == 2
    assert "differs from the config of the run being resumed" in capsys.readouterr().err
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    assert main(["fit", "--data", str(tiny_store), "--config", LN, "--out", str(run), "--resume",
                 "--max-epochs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"neurofit: error: {last}: damaged checkpoint " + err.split("damaged checkpoint ", 1)[1]
    assert (run / "config.yaml").read_bytes() == config  # max_epochs was not written


def test_every_run_keeps_its_initial_model(tiny_store, tmp_path):
    run = tmp_path / "run"
    assert _fit(tiny_store, run) == 0
    init, best = load_run(run, "init").encoder, load_run(run, "best").encoder
    changed = [n for n, p in init.state_dict().items() if not torch.equal(p, best.state_dict()[n])]
    assert changed  # trained weights differ from the start
    saved = RunDir(run).read_checkpoint("init")
    assert saved["hyper_parameters"]["config"]["name"] == "ln"


def test_rnn_fit_refuses_a_finished_run(tmp_path, capsys):
    import numpy as np

    from neurofit.data.simulate.regions import simulate_regions

    sim = simulate_regions(1, n_units=30, n_samples=150, n_seq=3, burn_in=20)
    data = tmp_path / "sim.npz"
    np.savez(data, rates=sim.rates[0].T, regions=sim.regions, dt=sim.dt)
    args = ["rnn", "fit", "--data", str(data), "--out", str(tmp_path / "rnn"), "--method", "ridge", "--quiet"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "rnn").iterdir() if p.is_file()}
    assert main(args) == 2
    assert "holds a run with progress (choose another --out)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "rnn").iterdir() if p.is_file()} == before


def test_unexpected_errors_print_a_traceback_and_exit_1(monkeypatch, capsys):
    import neurofit.cli.fit as cli_fit

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_fit, "_evaluate", broken)
    assert main(["evaluate", "anything"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err and "this is a bug; please report it" in err
