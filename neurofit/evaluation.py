"""``neurofit evaluate``: predict a held-out tier and score it (docs/cli.md, section "Commands";
docs/data-contract.md, section "Metrics")."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofit.context_metrics import DESCRIPTION as CONTEXT_DESCRIPTION
from neurofit.context_metrics import KEYS as CONTEXT_KEYS
from neurofit.context_metrics import context_summary
from neurofit.data.datamodule import RecordingArrays, load_arrays, tier_trials
from neurofit.data.recording import first_unfinite_recorded
from neurofit.data.store import list_recordings, open_recording, open_truth
from neurofit.errors import DataError
from neurofit.io import atomic_path, write_json
from neurofit.metrics import NeuronScores, flatten_frames, frame_groups, mean_over_recordings, score
from neurofit.run import Run, load_run


@dataclass
class TierPrediction:
    """Predictions of one recording on one tier, flattened to (sample, neuron) for scoring; video samples
    are frames after the burn-in. ``truth`` is the simulator's noise-free rate where known. ``pred_context``:
    for models with a context layer, the prediction given the other neurons' recorded responses."""

    pred: np.ndarray
    resp: np.ndarray
    group: np.ndarray
    truth: np.ndarray | None
    pred_context: np.ndarray | None = None


def predict_trials(run: Run, data: str | os.PathLike, recording: str,
                   tier: str) -> tuple[RecordingArrays, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """The recording's arrays, the trials of ``tier`` with responses, their data and the run's predictions
    (recording units, (trial, [frame,] neuron))."""
    arrays, trials, batch = read_tier(run, data, recording, tier)
    return arrays, trials, batch, run.predict(recording, batch["stimulus"], batch.get("behavior"),
                                              batch.get("pupil_center"))


def read_tier(run: Run, data: str | os.PathLike, recording: str,
              tier: str) -> tuple[RecordingArrays, np.ndarray, dict[str, np.ndarray]]:
    """The recording's arrays, the trials of ``tier`` with responses and their data, checked against the run
    (the same neurons; finite responses where recorded)."""
    ds = open_recording(data, recording)
    expected = list(run.specs[recording].unit_id)
    if ds["unit_id"].values.tolist() != expected:
        raise DataError(f"{data}: recording {recording!r} has other neurons than the run was fit on "
                        f"({ds.sizes['neuron']} in the store, {len(expected)} in the run, or in another order)")
    arrays = load_arrays(data, recording, in_memory=False)
    trials = tier_trials(arrays, tier)
    if not len(trials):
        raise DataError(f"{data}: recording {recording!r} has no {tier!r} trials with responses")
    batch = arrays.read(trials)
    row = first_unfinite_recorded(batch["responses"], batch.get("response_mask"))
    if row is not None:
        raise DataError(f"{data}: recording {recording!r}: responses contain NaN or inf at trial {trials[row]} "
                        f"(tier {tier!r}, where response_mask is True)")
    return arrays, trials, batch


def predict_tier(run: Run, data: str | os.PathLike, recording: str, tier: str, skip_frames: int) -> TierPrediction:
    """Predict the trials of ``tier`` of one recording and flatten them for scoring."""
    arrays, trials, batch = read_tier(run, data, recording, tier)
    resp = batch["responses"]
    pred, context = run.predict_modes(recording, batch["stimulus"], batch.get("behavior"),
                                      batch.get("pupil_center"), resp)
    truth_ds = open_truth(data, recording)
    truth = None if truth_ds is None or "rates" not in truth_ds else np.asarray(truth_ds["rates"][trials].values)
    sid = arrays.stimulus_id[trials]
    if resp.ndim == 3:
        mask = batch.get("response_mask")
        flat = [flatten_frames(x, skip_frames, mask) for x in (pred, resp)]
        truth = None if truth is None else flatten_frames(truth, skip_frames, mask)
        context = None if context is None else flatten_frames(context, skip_frames, mask)
        groups = frame_groups(sid, resp.shape[1], skip_frames, mask)
        return TierPrediction(flat[0], flat[1], groups, truth, context)
    return TierPrediction(pred, resp, sid, truth, context)


def evaluate(run_dir: str | os.PathLike, data: str | os.PathLike | None = None, tier: str = "test",
             figures: bool = True) -> dict:
    """Score a run on ``tier``; writes ``metrics.json`` (the contract), ``neurons.csv`` (per-neuron scores)
    and, with ``figures``, ``figures/evaluation.png``. Returns the metrics dict."""
    run = load_run(run_dir)
    data = Path(data) if data is not None else run.data_path
    available = list_recordings(data)
    names = [n for n in run.specs if n in available]
    if not names:
        raise DataError(f"{data}: none of the run's recordings {list(run.specs)} are in this store")
    skip = run.config.eval_skip_frames
    scores: dict[str, NeuronScores] = {}
    predictions: dict[str, TierPrediction] = {}
    for name in names:
        predictions[name] = predict_tier(run, data, name, tier, skip)
        p = predictions[name]
        scores[name] = score(p.pred, p.resp, p.group, p.truth)
    summaries = {n: s.summary() for n, s in scores.items()}
    metrics = {"tier": tier, "recordings": summaries, "mean": mean_over_recordings(summaries)}
    with_context = {n: context_summary(scores[n].single_trial_correlation, p.pred_context, p.resp,
                                       scores[n].oracle_correlation)
                    for n, p in predictions.items() if p.pred_context is not None}
    if with_context:  # labelled apart: these predictions read recorded responses (neurofit/context_metrics.py)
        metrics["with_population_context"] = {"description": CONTEXT_DESCRIPTION, "recordings": with_context,
                                              "mean": mean_over_recordings(with_context, CONTEXT_KEYS)}
    run_dir = Path(run_dir)
    write_json(run_dir / "metrics.json", metrics)
    _write_neurons_csv(run_dir / "neurons.csv", run, scores)
    if figures:
        from neurofit.analysis.plots import evaluation_figure

        evaluation_figure(predictions, scores, run_dir / "figures" / "evaluation.png")
    return metrics


def _write_neurons_csv(path: Path, run: Run, scores: dict[str, NeuronScores]) -> None:
    fields = ["recording", "unit_id", "single_trial_correlation", "correlation_to_average", "fev", "feve",
              "oracle_correlation", "ceiling_correlation"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for name, s in scores.items():
            ceiling = s.ceiling_correlation if s.ceiling_correlation is not None else [None] * len(s.fev)
            for i, uid in enumerate(run.specs[name].unit_id):
                writer.writerow([name, uid, s.single_trial_correlation[i], s.correlation_to_average[i], s.fev[i],
                                 s.feve[i], s.oracle_correlation[i], ceiling[i]])


def format_table(metrics: dict) -> str:
    """A small fixed-width table of the recording-level metrics, for the terminal."""
    cols = ("single_trial_correlation", "correlation_to_average", "feve", "oracle_correlation",
            "fraction_of_ceiling")
    short = ("single_r", "avg_r", "feve", "oracle_r", "frac_ceil")
    rows = [("recording", "neurons") + short]
    for name, s in list(metrics["recordings"].items()) + [("mean", metrics["mean"])]:
        rows.append((name, str(s.get("n_neurons", ""))) + tuple(
            "-" if s.get(c) is None else f"{s[c]:.3f}" for c in cols))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows)
