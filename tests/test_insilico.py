"""In-silico experiments (``neurofit insilico``): on a hand-built linear-nonlinear model with known Gabor
filters the MEIs, receptive fields and tuning recover the filters, centres, orientations, frequencies and
cell types; on tiny fitted runs the command writes its outputs (atomically) and refuses bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from neurofit.analysis.insilico.experiment import analyse
from neurofit.analysis.insilico.probe import ImageProbe, VideoProbe, modulation
from neurofit.analysis.insilico.reference import StimulusStats
from neurofit.analysis.insilico.settings import MEISettings, ProbeSettings, Settings, TuningSettings
from neurofit.analysis.insilico.truth import centre_error, filter_correlation, orientation_error_deg
from neurofit.cli import main
from neurofit.data.simulate.population import gabor_pairs

SHAPE = (24, 32)
MEAN, RMS = 128.0, 40.0
CENTRES = np.array([[9.0, 8.0], [20.0, 14.0], [14.0, 12.0], [24.0, 9.0], [10.0, 16.0], [17.0, 10.0]])
ORIENTATIONS = np.array([0.3, 1.2, 2.5, 0.9, 2.0, 1.6])
SF = np.array([0.12, 0.10, 0.15, 0.12, 0.10, 0.14])
SIMPLE = np.array([True, True, True, False, False, False])
FAST = Settings(probe=ProbeSettings(phases=4), mei=MEISettings(iterations=20),
                tuning=TuningSettings(orientations=12, sizes_px=(4.0, 8.0, 16.0, 40.0)), noise_images=3000,
                train_images=50)
TINY = ["--iterations", "2", "--starts", "2", "--noise-images", "50", "--train-images", "20", "--orientations",
        "4", "--spatial-frequencies", "0.05", "0.15", "--sizes", "6", "60"]


def _filters() -> np.ndarray:
    n = len(CENTRES)
    return gabor_pairs(CENTRES, ORIENTATIONS, SF, np.zeros(n), np.full(n, 2.5), np.ones(n), *SHAPE)


def _ln(frames: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Simple cells: softplus of the even filter's drive; complex cells: quadrature energy (..., N)."""
    z = torch.einsum("...p,nqp->...nq", (frames - MEAN).flatten(-2), bank) / RMS
    simple = torch.nn.functional.softplus(2 * z[..., 0])
    energy = z[..., 0] ** 2 + z[..., 1] ** 2
    return torch.where(torch.as_tensor(SIMPLE), simple, energy)


def _stats() -> StimulusStats:
    return StimulusStats(MEAN, RMS * np.sqrt(np.prod(SHAPE)), 0.0, 255.0, np.full(SHAPE, MEAN, np.float32))


def _train_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(MEAN + RMS * rng.standard_normal((50, *SHAPE)), 0, 255).astype(np.float32)


@pytest.fixture(scope="module")
def ln_analysis():
    """Every experiment on the hand-built LN model (static probe)."""
    bank = torch.as_tensor(_filters().reshape(len(CENTRES), 2, -1))
    probe = ImageProbe(lambda images: _ln(images, bank), len(CENTRES), SHAPE, MEAN, FAST.probe)
    return analyse(probe, np.arange(len(CENTRES)), _stats(), _train_images(), FAST)


def test_modulation_recovers_mean_and_first_harmonic():
    phases = 2 * np.pi * np.arange(8) / 8
    responses = torch.as_tensor(3 + 2 * np.cos(phases + 0.7) + 0.5 * np.cos(2 * phases))[None]
    f0, f1 = modulation(responses, 1.0)
    assert f0.item() == pytest.approx(3.0) and f1.item() == pytest.approx(2.0)


def test_scores_of_the_truth_itself():
    filters = _filters()
    np.testing.assert_allclose(filter_correlation(filters[:, 1] * -3.0, filters), 1.0, atol=1e-6)
    assert orientation_error_deg(np.radians([179.0, 10.0]), np.radians([1.0, 100.0])) == pytest.approx([2.0, 90.0])
    assert centre_error(np.array([[3.0, 4.0]]), np.zeros((1, 2))) == pytest.approx([5.0])


def test_meis_of_an_ln_model_are_its_filters(ln_analysis):
    corr = filter_correlation(ln_analysis.meis.best(), _filters())
    assert corr.min() > 0.9, corr
    assert centre_error(ln_analysis.fits["mei"].centre_px, CENTRES).max() < 1.0
    # The rate to the MEI beats every training image; a simple cell's starts all find the one filter.
    assert (ln_analysis.meis.rates.max(1) > ln_analysis.train_max).all()
    assert ln_analysis.mei_similarity[SIMPLE].min() > 0.95


def test_receptive_fields_of_an_ln_model(ln_analysis):
    filters = _filters()
    assert filter_correlation(ln_analysis.gradient[SIMPLE], filters[SIMPLE]).min() > 0.95
    assert filter_correlation(ln_analysis.noise.sta[SIMPLE], filters[SIMPLE]).min() > 0.8
    # The noise RF finds complex cells too (their STA is ~0; the response-weighted variance is not).
    assert centre_error(ln_analysis.fits["noise"].centre_px, CENTRES).max() < 1.0


def test_tuning_of_an_ln_model(ln_analysis):
    tuning = ln_analysis.tuning
    assert orientation_error_deg(tuning.orientation_rad, ORIENTATIONS).max() < 8
    assert orientation_error_deg(tuning.fullfield_orientation_rad, ORIENTATIONS).max() < 8
    np.testing.assert_allclose(tuning.fullfield_sf_cpp / SF, 1.0, atol=0.3)
    assert ((tuning.f1_f0 > 1) == SIMPLE).all(), tuning.f1_f0
    assert ((tuning.fullfield_f1_f0 > 1) == SIMPLE).all(), tuning.fullfield_f1_f0
    assert np.isfinite(tuning.ssi).all()


def test_video_probe_flashes_images_and_drifts_gratings():
    """A frame-by-frame LN model behind the video probe: flashed MEIs are its filters and drifting gratings
    give F1/F0 > 1 exactly for the simple cells."""
    bank = torch.as_tensor(_filters().reshape(len(CENTRES), 2, -1))
    settings = ProbeSettings(blank_frames=2, flash_frames=2, settle_frames=2, analysis_frames=8,
                             temporal_frequencies=(3.75, 7.5))
    probe = VideoProbe(lambda movies: _ln(movies, bank), len(CENTRES), SHAPE, MEAN, settings, frame_rate_hz=30.0)
    fast = Settings(probe=settings, mei=MEISettings(iterations=15), tuning=FAST.tuning, noise_images=1500,
                    train_images=20)
    result = analyse(probe, np.arange(len(CENTRES)), _stats(), _train_images()[:20], fast)
    assert filter_correlation(result.meis.best(), _filters()).min() > 0.9
    assert ((result.tuning.f1_f0 > 1) == SIMPLE).all(), result.tuning.f1_f0
    assert orientation_error_deg(result.tuning.orientation_rad, ORIENTATIONS).max() < 8
    assert set(result.tuning.fullfield_tf_hz) <= {3.75, 7.5}


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    """A tiny simulated store (with planted RFs) and a one-epoch run on it."""
    from neurofit.data.simulate.v1 import simulate_v1_store

    root = tmp_path_factory.mktemp("insilico")
    store = simulate_v1_store(root / "v1.zarr", recordings=1, neurons=8, seed=0, train_images=40,
                              validation_images=10, test_images=4, test_repeats=2)
    run = root / "run"
    assert main(["fit", "--data", str(store), "--config", "configs/default.yaml", "--out", str(run),
                 "--set", "model.core.channels=4", "--set", "model.core.layers=1", "--set",
                 "data.batch_size=16", "--max-epochs", "1"]) == 0
    return run


def test_insilico_command_writes_outputs(fitted_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(fitted_run, run)
    assert main(["insilico", str(run), *TINY]) == 0
    out = run / "insilico"
    assert sorted(p.name for p in out.iterdir()) == [
        "mouse0.zarr", "mouse0_meis.png", "mouse0_orientation_map.png", "mouse0_truth.png", "mouse0_tuning.png",
        "summary.json"]  # nothing temporary left behind
    summary = json.loads((out / "summary.json").read_text())["mouse0"]
    for section in ("metrics", "truth"):
        for name, metric in summary[section].items():
            assert {"trained", "untrained"} <= set(metric), name
    assert summary["truth"]["mei_filter_correlation"]["trained"]["all"] is not None
    assert "planted_model" in summary["truth"]["simple_complex_accuracy"]  # the simulator's own tuning
    assert "planted_model_median" in summary["truth"]["suppression_vs_planted_model"]
    assert len(summary["targets"]) == 4
    ds = xr.open_zarr(out / "mouse0.zarr")
    assert ds["unit_id"].values.tolist() == list(range(8))
    assert ds["mei"].shape == (8, 2, 36, 64)
    assert {"untrained_mei_filter_correlation", "orientation_error_deg", "fullfield_f0", "size_f0"} <= set(ds)
    # A second run on some neurons replaces the recording's outputs and keeps the summary valid.
    assert main(["insilico", str(run), "--neurons", "3", "5", "--no-untrained", *TINY]) == 0
    again = json.loads((out / "summary.json").read_text())["mouse0"]
    assert again["n_neurons"] == 2 and "untrained" not in again["truth"]["mei_filter_correlation"]


def test_insilico_on_a_video_run(tmp_path):
    from neurofit.data import write_store
    from tests.conftest import tiny_recording

    ds, truth = tiny_recording("m0", n_neurons=5, n_train=8, n_val=4, video_frames=6)
    store = write_store(tmp_path / "video.zarr", {"m0": ds}, {"m0": truth})
    run = tmp_path / "run"
    assert main(["fit", "--data", str(store), "--config", "configs/video_gru.yaml", "--out", str(run),
                 "--max-epochs", "1", "--set", "model.core.frontend={channels: 3, layers: 1, input_kernel: 3, "
                 "temporal_kernel: 3}", "--set", "model.core.hidden_channels=3", "--set", "data.batch_size=4",
                 "--set", "training.skip_frames=2", "--set", "training.tbptt_frames=3",
                 "--set", "evaluation.skip_frames=2"]) == 0
    assert main(["insilico", str(run), *TINY, "--temporal-frequencies", "3", "--spatial-frequencies", "0.2"]) == 0
    data = xr.open_zarr(run / "insilico" / "m0.zarr")
    assert data["fullfield_f0"].dims == ("neuron", "orientation", "sf", "tf")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neurofit: error: "), err
    return err[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["--neurons", "3", "99"], "--neurons: unit_id(s) ['99'] not in recording 'mouse0'"),
    (["--step-size", "0"], "--step-size: must be > 0"),
    (["--norm", "-5"], "--norm: must be > 0"),
    (["--recording", "mouse7"], "the run has no recording 'mouse7'"),
])
def test_bad_input_is_one_line_and_writes_nothing(fitted_run, tmp_path, capsys, args, expected):
    run = tmp_path / "run"
    shutil.copytree(fitted_run, run)
    assert main(["insilico", str(run), *args]) == 2
    assert expected in _one_error_line(capsys)
    assert not (run / "insilico").exists()


def test_run_without_checkpoint_is_refused(fitted_run, tmp_path, capsys):
    run = tmp_path / "early"
    run.mkdir()
    for name in ("config.yaml", "specs.json"):
        shutil.copy(fitted_run / name, run / name)
    assert main(["insilico", str(run)]) == 2
    assert "best.ckpt" in _one_error_line(capsys)
    assert not (run / "insilico").exists()


def test_ridge_run_is_refused(fitted_run, tmp_path, capsys):
    run = tmp_path / "ridge"
    assert main(["fit", "--data", str(fitted_run.parent / "v1.zarr"), "--config", "configs/ridge.yaml", "--out",
                 str(run)]) == 0
    capsys.readouterr()
    assert main(["insilico", str(run)]) == 2
    assert "need an encoder run" in _one_error_line(capsys)
    assert not (run / "insilico").exists()


def test_failure_midway_writes_nothing_and_damaged_summary_is_refused(fitted_run, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(fitted_run, run)
    import neurofit.analysis.insilico.pipeline as pipeline

    calls = []

    def failing(*args, **kwargs):  # the trained model's analysis runs, the untrained one's fails
        if calls:
            raise RuntimeError("stop")
        calls.append(1)
        return original(*args, **kwargs)

    original = pipeline.analyse
    monkeypatch.setattr(pipeline, "analyse", failing)
    assert main(["insilico", str(run), *TINY]) == 1
    assert not (run / "insilico").exists()
    monkeypatch.undo()
    (run / "insilico").mkdir()
    (run / "insilico" / "summary.json").write_text("{truncated")
    capsys.readouterr()
    assert main(["insilico", str(run), *TINY]) == 2
    assert "summary.json: damaged" in _one_error_line(capsys)
    assert sorted(p.name for p in (run / "insilico").iterdir()) == ["summary.json"]
