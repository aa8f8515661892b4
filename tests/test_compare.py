"""Comparison statistics, embedding consistency and the report, on constructed runs with known answers."""

import csv
import json
import re

import numpy as np
import pytest
import yaml
from scipy import stats

from neurofit.analysis.compare import compare_runs, holm, seed_ttest, split_fingerprint, wilcoxon_p
from neurofit.analysis.embeddings import aligned_similarity, cluster_agreement, seed_consistency
from neurofit.analysis.report import write_report
from neurofit.data import write_store
from neurofit.errors import DataError
from tests.conftest import tiny_recording

UNITS = {"m0": list(range(100, 115)), "m1": list(range(200, 210))}  # 25 neurons


def fake_run(path, name, seed, r_per_neuron, *, tier="test", data="/data/a.zarr", units=UNITS, lr=0.01):
    """A finished, evaluated run dir (ridge type, so no checkpoint is needed) with the given per-neuron
    single-trial correlations (concatenated over recordings in ``units`` order)."""
    path.mkdir(parents=True)
    cfg = {"name": name, "type": "ridge", "data": {"path": data}, "model": {},
           "training": {"seed": seed, "lr": lr}, "evaluation": {}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / "specs.json").write_text(json.dumps([{"name": k, "unit_id": v} for k, v in units.items()]))
    (path / "train_info.json").write_text(json.dumps(
        {"n_parameters": 1000 + seed, "wall_s": 10.0 + seed, "epochs": 3, "seed": seed, "config": name}))
    recordings, start = {}, 0
    with open(path / "neurons.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["recording", "unit_id", "single_trial_correlation", "correlation_to_average", "fev",
                         "feve", "oracle_correlation", "ceiling_correlation"])
        for rec, ids in units.items():
            r = np.asarray(r_per_neuron[start:start + len(ids)])
            start += len(ids)
            for uid, value in zip(ids, r):
                writer.writerow([rec, uid, value, 1.5 * value, 0.5, value, 0.8, ""])
            recordings[rec] = {"n_neurons": len(ids), "single_trial_correlation": float(r.mean()),
                               "correlation_to_average": float(1.5 * r.mean()), "feve": float(r.mean()),
                               "oracle_correlation": 0.8, "fraction_of_ceiling": None}
    mean = {k: (None if k == "fraction_of_ceiling" else float(np.mean([v[k] for v in recordings.values()])))
            for k in recordings["m0"] if k != "n_neurons"}
    (path / "metrics.json").write_text(json.dumps({"tier": tier, "recordings": recordings, "mean": mean}))
    return path


@pytest.fixture
def two_architectures(tmp_path):
    """Architecture "a" and a better "b" (+0.05 + noise per neuron), three seeds each."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.5, 25)
    runs = []
    for seed in range(3):
        noise = rng.normal(0, 0.01, 25)
        runs.append(fake_run(tmp_path / f"a{seed}", "a", seed, base + noise))
        runs.append(fake_run(tmp_path / f"b{seed}", "b", seed, base + 0.05 + rng.normal(0, 0.01, 25)))
    return runs


def test_holm_matches_hand_computation():
    adjusted = holm(np.array([0.01, 0.04, np.nan, 0.03]))
    np.testing.assert_allclose(adjusted, [0.03, 0.06, np.nan, 0.06])


def test_wilcoxon_and_seed_ttest_on_constructed_cases():
    a = np.linspace(0, 1, 20)
    p, n = wilcoxon_p(a, a + 0.01 * np.arange(1, 21))  # all 20 differences positive and distinct
    assert n == 20 and p == pytest.approx(2 / 2**20)  # exact two-sided signed-rank p
    assert wilcoxon_p(a, a) == (1.0, 20)
    assert wilcoxon_p(a, np.where(a > 0.5, np.nan, a + 0.1))[1] == 10  # NaN neurons are left out


def test_summary_table_and_paired_tests(two_architectures):
    ds = compare_runs(two_architectures)
    assert list(ds["architecture"].values) == ["a", "b"]
    assert list(ds["recording"].values) == ["m0", "m1", "overall"]
    means = [json.loads((p / "metrics.json").read_text())["mean"]["single_trial_correlation"]
             for p in two_architectures[0::2]]
    overall = ds.sel(architecture="a", recording="overall")
    assert float(overall["single_trial_correlation"]) == pytest.approx(np.mean(means))
    assert float(overall["single_trial_correlation_sem"]) == pytest.approx(np.std(means, ddof=1) / np.sqrt(3))
    assert float(ds["n_parameters"].sel(architecture="a")) == 1001.0
    assert ds["seeds"].sel(architecture="b") == "0,1,2"
    assert np.isnan(overall["fraction_of_ceiling"])  # no ground truth

    test = ds.sel(pair="b vs a")
    r = ds["neuron_single_trial_correlation"]
    expected = stats.wilcoxon(r.sel(architecture="b").values - r.sel(architecture="a").values).pvalue
    assert float(test["p_neurons"]) == pytest.approx(expected) and float(test["p_neurons"]) < 1e-6
    assert bool(test["significant_neurons"]) and int(test["n_neurons"]) == 25
    assert int(test["n_seeds_matched"]) == 3
    assert float(test["mean_difference_seeds"]) == pytest.approx(0.05, abs=0.01)
    assert bool(test["significant_seeds"])
    assert np.isnan(ds["embedding_ari"]).all()  # ridge runs have no embeddings
    assert set(ds["neuron_recording"].values) == {"m0", "m1"} and ds["unit_id"].values[0] == 100


def test_report_files(two_architectures, tmp_path):
    ds = compare_runs(two_architectures)
    paths = write_report(ds, tmp_path / "report")
    assert {"table.md", "table.csv", "comparison.png", "report.html"} <= set(paths)
    md = paths["table.md"].read_text()
    assert "| b vs a | 25 |" in md and re.search(r"\| b vs a .*\* \|", md)  # marked significant
    rows = list(csv.DictReader(paths["table.csv"].read_text().splitlines()))
    assert len(rows) == 6 and rows[2]["recording"] == "overall"
    assert float(rows[2]["single_trial_correlation"]) == pytest.approx(
        float(ds["single_trial_correlation"].sel(architecture="a", recording="overall")))
    page = paths["report.html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page  # comparison, gain by reliability
    assert "Gain per neuron by reliability" in md and paths["gain_vs_reliability.png"].stat().st_size > 10_000
    assert not re.search(r'src="(?!data:)', page)  # self-contained: no external images
    assert paths["comparison.png"].stat().st_size > 10_000


def test_runs_that_cannot_be_compared(tmp_path):
    r = np.full(25, 0.3)
    a = fake_run(tmp_path / "a", "a", 0, r)
    cases = [
        (fake_run(tmp_path / "t", "b", 0, r, tier="validation"), "tier"),
        (fake_run(tmp_path / "n", "b", 0, r, units={"m0": UNITS["m0"], "m1": list(range(10))}),
         "recordings/neurons differ"),
        (fake_run(tmp_path / "s", "a", 0, r), "two runs of 'a' with seed 0"),
        (fake_run(tmp_path / "c", "a", 1, r, lr=0.1), "configs differ"),
    ]
    for other, message in cases:
        with pytest.raises(DataError, match=message):
            compare_runs([a, other])
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="train_info.json: missing"):
        compare_runs([a, tmp_path / "e"])
    (a / "metrics.json").unlink()
    with pytest.raises(DataError, match=f"{a}: run has no metrics.json"):
        compare_runs([a], evaluate_missing=False)


def test_different_splits_are_refused(tmp_path):
    ds, truth = tiny_recording("m0")
    first = write_store(tmp_path / "one.zarr", {"m0": ds})
    same = write_store(tmp_path / "same.zarr", {"m0": ds})
    tiers = ds["tier"].values.copy()
    tiers[:5] = "validation"
    other = write_store(tmp_path / "other.zarr", {"m0": ds.assign_coords(tier=("trial", tiers))})
    assert split_fingerprint(first, ["m0"]) == split_fingerprint(same, ["m0"])
    assert split_fingerprint(first, ["m0"]) != split_fingerprint(other, ["m0"])
    units = {"m0": list(ds["unit_id"].values.tolist())}
    r = np.full(12, 0.3)
    runs = [fake_run(tmp_path / name, name, 0, r, data=str(store), units=units)
            for name, store in (("a", first), ("b", same), ("c", other))]
    assert list(compare_runs(runs[:2])["architecture"].values) == ["a", "b"]
    with pytest.raises(DataError, match="splits differ"):
        compare_runs(runs)


def test_seed_ttest_needs_matching_seeds(tmp_path):
    a = [fake_run(tmp_path / f"a{s}", "a", s, np.full(25, 0.3 + 0.01 * s)) for s in (0, 1)]
    b = [fake_run(tmp_path / f"b{s}", "b", s, np.full(25, 0.3 + 0.02 * s)) for s in (1, 2)]
    from neurofit.analysis.compare import load_result

    diff, p, n = seed_ttest([load_result(x) for x in a], [load_result(x) for x in b])
    assert n == 1 and np.isnan(p) and diff == pytest.approx(0.01)


def _blobs(rng, n=60, k=4, dim=6):
    centres = rng.normal(0, 5, (k, dim))
    labels = np.arange(n) % k
    return centres[labels] + rng.normal(0, 0.3, (n, dim))


def test_embedding_consistency_is_rotation_and_permutation_invariant():
    rng = np.random.default_rng(1)
    a = _blobs(rng)
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    b = (a @ rotation)[:, rng.permutation(6)]  # same embedding, other axes
    assert cluster_agreement(a, b, clusters=4) == pytest.approx(1.0)
    np.testing.assert_allclose(aligned_similarity(a, b), 1.0, atol=1e-9)
    unrelated = _blobs(rng)[rng.permutation(60)]  # same cluster sizes, neurons assigned independently
    assert abs(cluster_agreement(a, unrelated, clusters=4)) < 0.2


def test_seed_consistency_over_recordings():
    rng = np.random.default_rng(2)
    a = _blobs(rng)
    keys = np.array([f"m0/{i}" for i in range(60)])
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    same = [{"m0": {"key": keys, "embedding": a}}, {"m0": {"key": keys, "embedding": a @ rotation}}]
    result = seed_consistency(same, keys, clusters=4)
    assert result["ari"] == pytest.approx(1.0) and result["similarity"] == pytest.approx(1.0)
    assert result["similarity_shuffled"] < 0.5  # alignment alone cannot make shuffled neurons agree
    np.testing.assert_allclose(result["similarity_neuron"], 1.0, atol=1e-9)
    noisy = [same[0], {"m0": {"key": keys[::-1], "embedding": a[::-1] + rng.normal(0, 3, a.shape)}}]
    result = seed_consistency(noisy, keys, clusters=4)
    assert result["similarity_shuffled"] < result["similarity"] < 1.0  # matched by key, not by row order
