"""Python API for notebooks: fit, load, predict, score and compare runs with xarray results.

    import neurofit.api as nf
    model = nf.Model("configs/baseline.yaml", seed=0).fit("DATA.zarr", "runs/baseline")
    model.evaluate().to_pandas()                      # metrics per recording
    pred = nf.load("runs/baseline").predict(recording="mouse0")   # DataArray (trial, neuron)
    table = nf.sweep("DATA.zarr", ["configs/baseline.yaml", "configs/ridge.yaml"], [0, 1, 2], "sweeps/a")
    table[["single_trial_correlation", "single_trial_correlation_sem"]].sel(recording="overall").to_pandas()

Every call goes through the same code as the command line (``neurofit.training.fit.fit``,
``neurofit.evaluation.evaluate``, ``neurofit.analysis.compare``), so the numbers are the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from neurofit.analysis.compare import OVERALL, check_report_options, compare_runs, ensure_evaluated, is_evaluated
from neurofit.config import ExperimentConfig, load_config
from neurofit.errors import DataError
from neurofit.metrics import METRIC_NAMES
from neurofit.run import Run, load_run


class FittedRun:
    """A fitted run directory opened for analysis (see ``load``)."""

    def __init__(self, path: str | os.PathLike, checkpoint: str = "best") -> None:
        self.path = Path(path)
        self.run: Run = load_run(self.path, checkpoint)

    @property
    def config(self) -> ExperimentConfig:
        """The resolved config the run was fit with."""
        return self.run.config

    @property
    def recordings(self) -> list[str]:
        """Names of the recordings the run can predict."""
        return list(self.run.specs)

    def predict(self, data: str | os.PathLike | None = None, recording: str | None = None,
                tier: str = "test") -> xr.DataArray:
        """Predicted responses (recording units) to the trials of ``tier`` of one recording of ``data``
        (default: the store the run was fit on; ``recording`` may be left out when the run has one).

        Returns a DataArray (trial, [frame,] neuron) with coords ``trial`` (index in the store),
        ``stimulus_id`` and ``tier`` on trial and ``unit_id`` on neuron."""
        from neurofit.evaluation import predict_trials

        data = Path(data) if data is not None else self.run.data_path
        if recording is None:
            if len(self.recordings) != 1:
                raise DataError(f"{self.path}: the run has recordings {self.recordings}; name one")
            recording = self.recordings[0]
        if recording not in self.run.specs:
            raise DataError(f"{self.path}: the run has no recording {recording!r} (has {self.recordings})")
        arrays, trials, _, pred = predict_trials(self.run, data, recording, tier)
        dims = ("trial", "frame", "neuron") if pred.ndim == 3 else ("trial", "neuron")
        stimulus_id = arrays.stimulus_id[trials]
        coords = {"trial": trials, "stimulus_id": ("trial", stimulus_id), "tier": ("trial", arrays.tiers[trials]),
                  "unit_id": ("neuron", np.asarray(self.run.specs[recording].unit_id))}
        return xr.DataArray(pred, dims=dims, coords=coords, name="prediction",
                            attrs={"recording": recording, "run": str(self.path)})

    def metrics(self, evaluate_missing: bool = True) -> xr.Dataset:
        """``metrics.json`` as a Dataset over ``recording`` (each recording and ``overall``, the mean over
        recordings): ``n_neurons`` and the metrics of docs/data-contract.md, section "Metrics" (NaN where
        undefined); attrs ``tier``. Evaluates the run first when it has no metrics (``evaluate_missing``)."""
        ensure_evaluated(self.path, evaluate_missing)
        metrics = json.loads((self.path / "metrics.json").read_text())
        blocks = dict(metrics["recordings"], **{OVERALL: metrics["mean"]})
        data = {m: ("recording", np.array([np.nan if b.get(m) is None else b[m] for b in blocks.values()]))
                for m in METRIC_NAMES}
        counts = [r["n_neurons"] for r in metrics["recordings"].values()]
        data["n_neurons"] = ("recording", np.array(counts + [sum(counts)]))
        return xr.Dataset(data, coords={"recording": list(blocks)}, attrs={"tier": metrics["tier"]})

    def neurons(self, evaluate_missing: bool = True) -> xr.Dataset:
        """Per-neuron scores (``neurons.csv``) as a Dataset over ``neuron`` with coords ``recording`` and
        ``unit_id``; variables are the per-neuron metrics (unitless, NaN where undefined)."""
        from neurofit.analysis.compare import read_neurons

        ensure_evaluated(self.path, evaluate_missing)
        return read_neurons(self.path)

    def embeddings(self, recording: str) -> xr.DataArray:
        """The learned neuron embeddings of one recording, (neuron, channel), with ``unit_id`` on neuron."""
        if self.run.encoder is None:
            raise DataError(f"{self.path}: a {self.config.type} run has no neuron embeddings")
        if recording not in self.run.specs:
            raise DataError(f"{self.path}: the run has no recording {recording!r} (has {self.recordings})")
        emb = self.run.encoder.readouts[recording].embedding.detach().cpu().numpy()
        return xr.DataArray(emb, dims=("neuron", "channel"),
                            coords={"unit_id": ("neuron", np.asarray(self.run.specs[recording].unit_id))},
                            name="embedding")


def load(run: str | os.PathLike, checkpoint: str = "best") -> FittedRun:
    """Open a run directory written by ``neurofit fit`` (``checkpoint``: "best" or "last")."""
    return FittedRun(run, checkpoint)


def ensemble(runs: Sequence[str | os.PathLike], out: str | os.PathLike, name: str = "ensemble") -> FittedRun:
    """The run that averages the predictions of ``runs`` (same store, recordings and neurons), written to
    ``out`` (``neurofit ensemble``); evaluate and compare it like any run."""
    from neurofit.ensemble import make_ensemble

    return FittedRun(make_ensemble(runs, out, name))


def compare(runs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, *,
            evaluate_missing: bool = True, alpha: float = 0.05, clusters: int = 5) -> xr.Dataset:
    """Compare runs grouped by config name (see ``neurofit.analysis.compare.compare_runs`` for the
    variables); with ``out``, also write the report there (table.md, table.csv, comparison.png,
    report.html)."""
    ds = compare_runs(list(runs), evaluate_missing=evaluate_missing, alpha=alpha, clusters=clusters)
    if out is not None:
        from neurofit.analysis.report import write_report

        write_report(ds, out)
    return ds


class Model:
    """Estimator-style wrapper: ``Model(config).fit(data, out).evaluate()``.

    Args:
        config: path to an experiment YAML (``configs/NAME.yaml``).
        seed: training seed.
        max_epochs: override ``training.max_epochs``.
        overrides: dotted ``KEY=VALUE`` overrides as for ``neurofit fit --set``.
    """

    def __init__(self, config: str | os.PathLike, *, seed: int = 0, max_epochs: int | None = None,
                 overrides: Sequence[str] = ()) -> None:
        self.config, self.seed, self.max_epochs = Path(config), seed, max_epochs
        self.overrides = list(overrides)
        self.fitted: FittedRun | None = None

    def fit(self, data: str | os.PathLike, out: str | os.PathLike, *, progress: bool = False,
            **trainer) -> Model:
        """Train into the new run dir ``out``; ``trainer`` takes ``neurofit.training.fit.fit``'s keywords
        (accelerator, devices, strategy, logger, resume, and ``init_from=RUN``, ``freeze="core"`` or "none" to
        start the core from a fitted run). Returns self."""
        from neurofit.training.fit import fit

        fit(data, self.config, out, seed=self.seed, max_epochs=self.max_epochs, overrides=self.overrides,
            progress=progress, **trainer)
        self.fitted = load(out)
        return self

    def _require_fit(self) -> FittedRun:
        if self.fitted is None:
            raise DataError(f"{self.config}: the model is not fitted yet (call .fit(data, out) first)")
        return self.fitted

    def evaluate(self, tier: str = "test", data: str | os.PathLike | None = None) -> xr.Dataset:
        """Score the fitted run on ``tier`` (writes its ``metrics.json``); returns ``FittedRun.metrics()``."""
        from neurofit.evaluation import evaluate

        fitted = self._require_fit()
        evaluate(fitted.path, data, tier, figures=False)
        return fitted.metrics()

    def predict(self, data: str | os.PathLike | None = None, recording: str | None = None,
                tier: str = "test") -> xr.DataArray:
        """``FittedRun.predict`` of the fitted run."""
        return self._require_fit().predict(data, recording, tier)


def _expected_config(config: str | os.PathLike, data: str | os.PathLike, seed: int, max_epochs: int | None,
                     overrides: list[str]) -> ExperimentConfig:
    """The resolved config ``fit`` saves for these arguments, to recognise a run dir that holds this run."""
    cfg = load_config(config, overrides)
    cfg.training.seed = seed
    if max_epochs is not None:
        cfg.training.max_epochs = int(max_epochs)
    cfg.data.path = str(Path(data).resolve())
    return cfg


def sweep(data: str | os.PathLike, configs: Sequence[str | os.PathLike], seeds: Sequence[int],
          out: str | os.PathLike, *, max_epochs: int | None = None, overrides: Sequence[str] = (),
          deterministic: bool = True, alpha: float = 0.05, clusters: int = 5,
          log: Callable[[str], None] | None = print) -> xr.Dataset:
    """Fit and evaluate every config x seed on ``data`` (one store, so identical splits), one after the
    other, into ``out/runs/NAME/seedS``; then compare them and write the report into ``out``.

    Finished runs (evaluated) are skipped and interrupted ones resumed, so re-running an interrupted sweep
    completes it; a run dir fit with a different config is refused. ``deterministic`` sets
    ``training.deterministic`` (before ``overrides``) so the same sweep reproduces the same numbers.
    Returns the ``compare`` Dataset."""
    from neurofit.analysis.report import write_report
    from neurofit.evaluation import evaluate
    from neurofit.training.fit import fit

    out = Path(out)
    overrides = (["training.deterministic=true"] if deterministic else []) + list(overrides)
    if not seeds:
        raise DataError("sweep: give at least one seed")
    check_report_options(alpha, clusters)  # before hours of fitting, not after
    names: dict[str, Path] = {}
    for config in configs:
        name = load_config(config, overrides).name
        if name in names:
            raise DataError(f"{config} and {names[name]}: both configs are named {name!r}; names label the "
                            "architectures, so give one a different name")
        names[name] = Path(config)
    plan = [(config, seed, out / "runs" / name / f"seed{seed}") for name, config in names.items()
            for seed in dict.fromkeys(seeds)]
    # Refuse a clashing sweep directory before any training, not after hours of it.
    for config, seed, run in plan:
        if (run / "config.yaml").exists() and load_config(run / "config.yaml") != _expected_config(
                config, data, seed, max_epochs, overrides):
            raise DataError(f"{run}: holds a run fit with a different config, data or epochs than this sweep "
                            "asks for; use another --out")
    for i, (config, seed, run) in enumerate(plan, 1):
        step = f"[{i}/{len(plan)}] {run.parent.name} seed {seed}"
        finished = (run / "train_info.json").exists()
        if finished and is_evaluated(run):
            if log:
                log(f"{step}: done already, skipped")
            continue
        if not finished:
            if log:
                log(f"{step}: fitting")
            fit(data, config, run, seed=seed, max_epochs=max_epochs, overrides=overrides, resume=run.exists(),
                progress=False)
        evaluate(run, figures=False)
    runs = [run for _, _, run in plan]
    ds = compare_runs(runs, alpha=alpha, clusters=clusters)
    write_report(ds, out)
    return ds

