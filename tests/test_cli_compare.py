"""``neurofit sweep`` and ``neurofit compare`` end to end on a tiny store: report files, resuming an
interrupted sweep with the same numbers, evaluating on the fly, and one-line errors."""

import csv
import json
import shutil

import pytest
import yaml

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


def _interaction_rows(path):
    return {(r["architecture"], r["recording"], r["interaction_map"]): r for r in _rows(path)}


def _assert_matches_attention_json(row, summary, keys):
    """The report's numbers for one run and recording are those of its ``attention_vs_distance.json``."""
    baselines = summary["baselines"]
    for name in ("map", "distance_only", "distance_profile", "signal_correlation", "untrained"):
        for score in ("auc", "spearman"):
            value, cell = baselines["scores"][name][score], row[f"{name}_{score}"]
            assert (cell == "") if value is None else float(cell) == pytest.approx(value, abs=1e-12), name
    assert float(row["partial_rho"]) == pytest.approx(baselines["partial_correlation"]["rho"], abs=1e-12)
    if "beyond_distance" in keys:
        assert row["beyond_distance"] == ("yes" if baselines["beyond_distance"] else "no")


def test_compare_reports_interaction_maps_with_baselines(tmp_path, capsys):
    from neurofit.data.simulate.v1 import simulate_v1_store
    from tests.test_api import CONFIGS

    store = simulate_v1_store(tmp_path / "v1.zarr", recordings=1, neurons=12, seed=0, train_images=40,
                              validation_images=10, test_images=4, test_repeats=2)
    att = tmp_path / "tinyatt.yaml"
    att.write_text(yaml.safe_dump({"name": "tinyatt", "extends": str(CONFIGS / "attention.yaml"),
                                   "data": {"batch_size": 16},
                                   "model": {"core": {"channels": 4, "layers": 1, "input_kernel": 3}}}))
    runs = {"tiny": tmp_path / "base", "tinyatt": tmp_path / "att"}
    for config, run in zip((tiny_config(tmp_path), att), runs.values()):
        assert main(["fit", "--data", str(store), "--config", str(config), "--out", str(run),
                     "--max-epochs", "1"]) == 0
    assert main(["attention", str(runs["tinyatt"]), "--permutations", "50"]) == 0
    written = json.loads((runs["tinyatt"] / "attention/attention_vs_distance.json").read_text())["mouse0"]

    report = tmp_path / "report"
    assert main(["compare", *map(str, runs.values()), "--out", str(report)]) == 0  # reuses the JSON
    rows = _interaction_rows(report / "interactions.csv")
    assert {a for a, _, _ in rows} == {"tinyatt"}  # the baseline has no interaction layers: no row
    assert {m for _, _, m in rows} == {"attention", "coupling"}
    for kind, summary in (("attention", written), ("coupling", written["coupling_vs_distance"])):
        for rec in ("mouse0", "overall"):  # one recording and one seed: overall is the same numbers
            row = rows["tinyatt", rec, kind]
            assert row["n_scored"] == "1" and row["reference"] == summary["baselines"]["reference"]
            _assert_matches_attention_json(row, summary, {"beyond_distance"})
    md = (report / "table.md").read_text()
    assert "Interaction maps against the planted coupling" in md
    for column in ("map AUC", "distance-only AUC", "signal correlation rho", "untrained AUC", "beyond distance"):
        assert column in md and column in (report / "report.html").read_text()

    # A run without attention outputs: skipped with --no-evaluate, mapped on the fly (default options) without it
    shutil.rmtree(runs["tinyatt"] / "attention")
    assert main(["compare", *map(str, runs.values()), "--out", str(tmp_path / "plain"), "--no-evaluate"]) == 0
    assert not (tmp_path / "plain" / "interactions.csv").exists()
    assert main(["compare", *map(str, runs.values()), "--out", str(tmp_path / "fresh")]) == 0
    fresh = json.loads((runs["tinyatt"] / "attention/attention_vs_distance.json").read_text())["mouse0"]
    assert fresh["n_permutations"] == 1000  # what neurofit attention writes by default
    rows = _interaction_rows(tmp_path / "fresh" / "interactions.csv")
    # scores do not depend on the permutation count: the same numbers as the first neurofit attention
    _assert_matches_attention_json(rows["tinyatt", "mouse0", "attention"], written, set())
    _assert_matches_attention_json(rows["tinyatt", "mouse0", "attention"], fresh, {"beyond_distance"})
