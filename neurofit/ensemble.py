"""``neurofit ensemble``: a run directory that averages the predictions of runs fitted to the same data.

Averaging several independently trained models is the cheapest gain the SENSORIUM winners report; here the
ensemble is a run like any other (``evaluate``, ``compare`` and the API read it through ``load_run``), whose
``config.yaml`` has ``type: ensemble`` and lists its members."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from neurofit.config import DataConfig, EnsembleSpec, EvaluationConfig, ExperimentConfig, save_config
from neurofit.errors import ConfigError, DataError
from neurofit.io import write_json
from neurofit.run import Run, load_run
from neurofit.rundir import RunDir


def check_members(members: list[Run]) -> None:
    """Raise ``DataError`` naming the two runs and the mismatch unless every run was fitted to the same store,
    recordings and neurons (in order), scores the same frames, and none is itself an ensemble."""
    first = members[0]
    for run in members:
        if run.config.type == "ensemble":
            raise DataError(f"{run.path}: is an ensemble; list its members instead")
    for run in members[1:]:
        pair = f"{first.path} and {run.path}"
        stores = Path(first.config.data.path).resolve(), Path(run.config.data.path).resolve()
        if stores[0] != stores[1]:
            raise DataError(f"{pair}: fitted to different stores ({stores[0]} vs {stores[1]})")
        if list(first.specs) != list(run.specs):
            raise DataError(f"{pair}: fitted to different recordings ({list(first.specs)} vs {list(run.specs)})")
        for name, spec in first.specs.items():
            if list(spec.unit_id) != list(run.specs[name].unit_id):
                raise DataError(f"{pair}: recording {name!r} has different neurons "
                                f"({spec.n_neurons} vs {run.specs[name].n_neurons}, or in another order)")
        if first.config.eval_skip_frames != run.config.eval_skip_frames:
            raise DataError(f"{pair}: score different frames (skip_frames {first.config.eval_skip_frames} vs "
                            f"{run.config.eval_skip_frames})")


def make_ensemble(runs: Sequence[str | os.PathLike], out: str | os.PathLike, name: str = "ensemble") -> Path:
    """Write the ensemble of ``runs`` (their best checkpoints) as run directory ``out``; returns it. Writes
    nothing unless every run loads and all match (``check_members``)."""
    if len(runs) < 2:
        raise ConfigError(f"ensemble: give at least two runs, got {len(runs)}")
    target = RunDir(out)
    replace_early = target.check_new(resumable=False)
    members = [load_run(r) for r in runs]
    check_members(members)
    first = members[0]
    cfg = ExperimentConfig(
        name=name, type="ensemble", description=f"mean prediction of {len(members)} runs",
        data=DataConfig(path=str(Path(first.config.data.path).resolve())),
        model=EnsembleSpec([str(m.path.resolve()) for m in members]),
        evaluation=EvaluationConfig(skip_frames=first.config.eval_skip_frames))
    infos = [RunDir(m.path).read_json("train_info.json", "did neurofit fit complete?") for m in members]
    target.start(replace_early)
    save_config(cfg, target.file("config.yaml"))
    write_json(target.file("specs.json"), [s.to_dict() for s in first.specs.values()])
    write_json(target.file("train_info.json"), {
        "n_parameters": sum(int(i.get("n_parameters", 0)) for i in infos),
        "epochs": max(int(i.get("epochs", 0)) for i in infos),
        "wall_s": sum(float(i.get("wall_s", 0.0)) for i in infos),
        "seed": 0, "config": name, "members": cfg.model.members, "world_size": 1})
    return target.path
