"""``neurofit ensemble``: a run directory that averages its members' predictions, which evaluate, compare and
the API accept like any run; members fitted to different stores or neurons are refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import neurofit.api as nf
from neurofit.cli import main
from neurofit.data import write_store
from tests.conftest import tiny_recording

LN = str(Path(__file__).resolve().parent.parent / "configs/ln.yaml")


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ens")
    recs = {f"m{i}": tiny_recording(f"m{i}", n_neurons=n, seed=i)[0] for i, n in enumerate((12, 9))}
    store = write_store(tmp / "s.zarr", recs)
    runs = []
    for seed in (0, 1):
        run = tmp / f"seed{seed}"
        assert main(["fit", "--data", str(store), "--config", LN, "--out", str(run), "--seed", str(seed),
                     "--max-epochs", "2"]) == 0
        runs.append(run)
    return store, runs, tmp


def test_the_ensemble_predicts_the_mean_and_evaluates_and_compares_like_a_run(members, tmp_path):
    store, runs, _ = members
    ens = tmp_path / "ens"
    assert main(["ensemble", *map(str, runs), "--out", str(ens), "--evaluate"]) == 0
    predictions = [nf.load(r).predict(store, "m0") for r in (*runs, ens)]
    np.testing.assert_allclose(predictions[2].values, (predictions[0].values + predictions[1].values) / 2,
                               rtol=1e-5)
    metrics = json.loads((ens / "metrics.json").read_text())["mean"]["single_trial_correlation"]
    singles = [nf.load(r).metrics().sel(recording="overall")["single_trial_correlation"].item() for r in runs]
    assert metrics >= min(singles)
    report = nf.compare([*runs, ens], tmp_path / "report")
    assert set(report["architecture"].values) == {"ln", "ensemble"}


def test_mismatched_members_are_refused_naming_the_runs(members, tmp_path, capsys):
    store, runs, tmp = members
    other_store = write_store(tmp_path / "other.zarr", {"m0": tiny_recording("m0", n_neurons=12, seed=5)[0],
                                                        "m1": tiny_recording("m1", n_neurons=9, seed=6)[0]})
    elsewhere = tmp_path / "elsewhere"
    assert main(["fit", "--data", str(other_store), "--config", LN, "--out", str(elsewhere),
                 "--max-epochs", "1"]) == 0
    subset = tmp_path / "subset"
    assert main(["fit", "--data", str(store), "--config", LN, "--out", str(subset), "--max-epochs", "1",
                 "--set", "data.recordings=[m0]"]) == 0
    capsys.readouterr()
    cases = [([runs[0], elsewhere], "fitted to different stores"),
             ([runs[0], subset], "fitted to different recordings"),
             ([runs[0]], "give at least two runs")]
    for case, message in cases:
        out = tmp_path / "ens"
        assert main(["ensemble", *map(str, case), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()
    assert f"{runs[0]} and {elsewhere}" in (main(["ensemble", str(runs[0]), str(elsewhere), "--out",
                                                  str(tmp_path / "e")]) and capsys.readouterr().err)
