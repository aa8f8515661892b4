"""``neurofit sweep`` and ``neurofit compare`` end to end on a tiny store: report files, resuming an
interrupted sweep with the same numbers, evaluating on the fly, and one-line errors."""

import csv

import pytest

from neurofit.cli import main
from tests.test_api import tiny_config

METRICS = ("single_trial_correlation", "correlation_to_average", "feve", "fraction_of_ceiling")


def _rows(path):
    return list(csv.DictReader(path.read_text().splitlines()))


def _metric_values(path):
    return [(r["architecture"], r["recording"]) + tuple(r[m] for m in METRICS) for r in _rows(path)]


def test_sweep_resume_and_compare(tiny_store, tmp_path, capsys):
    configs = [str(tiny_config(tmp_path)), str(tiny_config(tmp_path, "tinyln", "ln.yaml"))]
    sweep = ["sweep", "--data", str(tiny_store), "--configs", *configs, "--seeds", "0", "1",
             "--out", str(tmp_path / "sweep"), "--max-epochs", "1"]
    assert main(sweep) == 0
    out = tmp_path / "sweep"
    for name in ("table.md", "table.csv", "comparison.png", "report.html", "runs/tiny/seed1/metrics.json"):
        assert (out / name).exists(), name
    rows = _rows(out / "table.csv")
    assert [(r["architecture"], r["recording"]) for r in rows] == [
        (a, r) for a in ("tiny", "tinyln") for r in ("m0", "m1", "overall")]
    tiny, ln = rows[2], rows[5]
    assert tiny["seeds"] == "0,1" and float(tiny["n_parameters"]) > 0 and float(tiny["wall_s"]) > 0
    assert -1 <= float(tiny["embedding_ari"]) <= 1 and 0 < float(tiny["embedding_similarity"]) <= 1
    assert ln["embedding_ari"] != "" and ln["embedding_similarity"] == ""  # one channel: no alignment
    assert "tinyln vs tiny" in (out / "table.md").read_text()
    first = _metric_values(out / "table.csv")

    # an interrupted run (fit done, never evaluated; another lost its train_info) is completed on re-run
    (out / "runs/tiny/seed1/metrics.json").unlink()
    (out / "runs/tinyln/seed0/train_info.json").unlink()
    capsys.readouterr()
    assert main(sweep) == 0
    log = capsys.readouterr().out
    assert log.count("done already, skipped") == 2 and "tinyln seed 0: fitting" in log
    assert _metric_values(out / "table.csv") == first  # deterministic: the same numbers

    assert main(sweep[:-2] + ["--max-epochs", "2"]) == 2
    assert "holds a run fit with a different config" in capsys.readouterr().err

    runs = [str(out / "runs" / a / f"seed{s}") for a in ("tiny", "tinyln") for s in (0, 1)]
    (out / "runs/tiny/seed0/metrics.json").unlink()
    assert main(["compare", *runs, "--out", str(tmp_path / "report"), "--no-evaluate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and runs[0] in err[0] and "no metrics.json" in err[0]
    assert main(["compare", *runs, "--out", str(tmp_path / "report")]) == 0  # evaluates on the fly
    assert "tinyln" in capsys.readouterr().out
    assert _metric_values(tmp_path / "report" / "table.csv") == first


@pytest.mark.parametrize("args, message", [
    (["compare", "nowhere", "--out", "r"], "nowhere/train_info.json: missing (not a finished run"),
    (["sweep", "--data", "d.zarr", "--configs", "configs/ridge.yaml", "configs/ridge.yaml", "--out", "s"],
     "both configs are named 'ridge'"),
])
def test_bad_input_gives_one_clear_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    configs = [str(tiny_config(tmp_path, "ridge", "ridge.yaml")) if a.startswith("configs/") else a for a in args]
    assert main(configs) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neurofit: error:") and message in err[0]
