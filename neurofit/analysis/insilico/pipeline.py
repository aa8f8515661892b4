"""One recording through every in-silico experiment, for the trained model and the untrained one
(``checkpoints/init.ckpt``), scored against the planted truth when the store has one; and the checks that
come before any of it (docs/cli.md, ``neurofit insilico``)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from neurofit.analysis.insilico.experiment import Analysis, analyse
from neurofit.analysis.insilico.planted import planted_probe
from neurofit.analysis.insilico.probe import probe_for
from neurofit.analysis.insilico.reference import StimulusStats, stimulus_stats, training_images
from neurofit.analysis.insilico.settings import Settings
from neurofit.analysis.insilico.summary import neuron_table, summarise
from neurofit.analysis.insilico.truth import Truth, truth_for
from neurofit.analysis.insilico.tuning import Tuning, grating_tuning
from neurofit.data.store import list_recordings, open_recording, open_truth
from neurofit.errors import DataError
from neurofit.evaluation import predict_tier
from neurofit.metrics import correlation
from neurofit.run import Run


@dataclass
class RecordingResult:
    """Everything ``neurofit insilico`` writes for one recording: K neurons' unit_id (K,) and positions
    (K, 3) um, the stimulus scales, the analyses and per-neuron tables by model ("trained", "untrained"),
    the planted truth (or None) and the planted model's grating tuning (or None: no truth, or a video
    truth), the trained model's test correlation (K,) (or None) and the JSON entry."""

    name: str
    unit_id: np.ndarray
    positions_um: np.ndarray
    stats: StimulusStats
    analyses: dict[str, Analysis]
    tables: dict[str, dict[str, np.ndarray]]
    truth: Truth | None
    planted: Tuning | None
    test_correlation: np.ndarray | None
    entry: dict
    video: bool


def check_recording(run: Run, data: str | os.PathLike, name: str) -> None:
    """Refuse a recording the run was not fit on, or one the store lacks or holds with other neurons."""
    if name not in run.specs:
        raise DataError(f"{run.path}: the run has no recording {name!r} (has {list(run.specs)})")
    if name not in list_recordings(data):
        raise DataError(f"{data}: no recording {name!r} (the run was fit on it)")
    stored = open_recording(data, name)["unit_id"].values.tolist()
    if stored != list(run.specs[name].unit_id):
        raise DataError(f"{data}: recording {name!r} has other neurons than the run was fit on")


def select_neurons(run: Run, name: str, unit_ids: list[str] | None) -> np.ndarray:
    """Positions (K,) in the recording of the ``--neurons`` unit ids (compared as text), or all neurons."""
    ids = [str(u) for u in run.specs[name].unit_id]
    if not unit_ids:
        return np.arange(len(ids))
    index = {u: i for i, u in enumerate(ids)}
    missing = [u for u in unit_ids if u not in index]
    if missing:
        raise DataError(f"--neurons: unit_id(s) {missing[:5]} not in recording {name!r}")
    if len(set(unit_ids)) != len(unit_ids):
        raise DataError("--neurons: a unit_id is given twice")
    return np.array([index[u] for u in unit_ids])


def _test_correlation(run: Run, data: str | os.PathLike, name: str, neurons: np.ndarray) -> np.ndarray | None:
    """The trained model's single-trial correlation on the test tier (K,), None without test responses."""
    try:
        prediction = predict_tier(run, data, name, "test", run.config.eval_skip_frames)
    except DataError:  # no held-out responses (withheld in released data): no reliability split
        return None
    return correlation(prediction.pred, prediction.resp)[neurons]


def _planted(data: str | os.PathLike, name: str, unit_id: np.ndarray, stats: StimulusStats, images: np.ndarray,
             settings: Settings) -> tuple[Truth | None, Tuning | None]:
    """The planted parameters of the neurons (None without a truth of RFs) and the grating tuning of the
    planted model itself, windowed at the planted centres (None where ``planted_probe`` gives none)."""
    truth = open_truth(data, name)
    if truth is None or "rf_filters" not in truth:
        return None, None
    order = {u: i for i, u in enumerate(truth["unit_id"].values.tolist())}
    rows = np.array([order[u] for u in unit_id.tolist()])
    planted = truth_for(truth, rows)
    probe = planted_probe(truth, images, stats.mean_luminance, settings.probe)
    tuning = None if probe is None else grating_tuning(probe, rows, planted.centre_px, planted.sigma_px, stats,
                                                       settings.tuning)
    return planted, tuning


def insilico_recording(models: dict[str, Run], data: str | os.PathLike, name: str, neurons: np.ndarray,
                       settings: Settings, seed: int = 0) -> RecordingResult:
    """Every experiment on ``neurons`` (K,) of recording ``name`` for each model (label -> Run; the first
    is the trained one, whose test correlation splits off the reliable half), with the JSON entry."""
    start = time.perf_counter()
    trained = next(iter(models.values()))
    spec = trained.specs[name]
    images = training_images(data, name, settings.train_images, seed)
    if not len(images):
        raise DataError(f"{data}: recording {name!r} has no finite training stimuli")
    stats = stimulus_stats(images)
    unit_id = np.asarray(spec.unit_id)[neurons]
    analyses = {label: analyse(probe_for(run.encoder, spec, stats.mean_luminance, settings.probe), neurons,
                               stats, images, settings, seed)
                for label, run in models.items()}
    truth, planted = _planted(data, name, unit_id, stats, images, settings)
    tables = {label: neuron_table(a, truth) for label, a in analyses.items()}
    test_r = _test_correlation(trained, data, name, neurons)
    reliable = None if test_r is None else test_r > np.median(test_r)
    entry = {
        "n_neurons": len(neurons), "video": spec.video,
        "reliable": None if test_r is None else {
            "criterion": "trained model's test single-trial correlation above its median over these neurons",
            "median_correlation": round(float(np.median(test_r)), 4), "n": int(reliable.sum())},
        "stimulus": {"mean_luminance": stats.mean_luminance, "rms_contrast": stats.rms_contrast,
                     "image_norm": stats.contrast_norm, "range": [stats.low, stats.high]},
        "settings": {**asdict(settings), "mei_norm": analyses["trained"].meis.norm, "seed": seed},
        **summarise(tables, reliable, truth, planted),
        "wall_s": {**{label: a.wall_s for label, a in analyses.items()},
                   "total": round(time.perf_counter() - start, 1)},
    }
    return RecordingResult(name, unit_id, np.asarray(spec.coords_um, dtype=np.float64)[neurons], stats,
                           analyses, tables, truth, planted, test_r, entry, spec.video)


def output_dir(run: Run) -> Path:
    """Where ``neurofit insilico`` writes: ``RUN/insilico``."""
    return Path(run.path) / "insilico"
