"""Run directories: the one layout every command writes and reads, the refuse-or-resume rules, and reads
that name the damaged file.

Encoder and ridge runs (``neurofit fit``): ``config.yaml`` (complete resolved config), ``specs.json``,
``checkpoints/init.ckpt`` (the model as training started), ``checkpoints/best.ckpt``, ``checkpoints/last.ckpt``
(or ``model.npz`` for ridge), ``logs/metrics.csv``, ``train_info.json``. ``evaluate`` adds ``metrics.json``,
``neurons.csv`` and ``figures/``; ``attention`` adds ``attention/``. RNN runs (``neurofit rnn fit``):
``config.yaml``, ``model.pt``, ``fit.npz``, ``metrics.json``, ``fit_curve.png``; ``rnn currents`` adds
``currents.zarr`` and figures. Every file is written atomically (``neurofit.io``), every folder built beside
its target and renamed into place.

Rules: nothing is created until the config, the data and the output location have been checked. A directory
that holds a run's progress (a checkpoint, a fitted model) is refused unless resumed; one that holds only
what a run writes before its first checkpoint (a run that failed or was killed early) is replaced, so it
never blocks the corrected rerun; anything else (a folder of other files) is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from neurofit.errors import DataError
from neurofit.io import check_output_location

#: Files whose presence means a run made progress that must not be overwritten.
PROGRESS = ("checkpoints/last.ckpt", "checkpoints/best.ckpt", "model.npz", "model.pt", "metrics.json")
#: What a run writes before its first checkpoint; a directory holding only these may be replaced.
EARLY_ENTRIES = frozenset({"config.yaml", "specs.json", "logs", "checkpoints", "train_info.json"})


class RunDir:
    """One run directory (which may not exist yet)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        """The path of ``name`` inside the run."""
        return self.path / name

    def has_progress(self) -> bool:
        """True when the run holds a checkpoint, a fitted model or metrics."""
        return any((self.path / name).exists() for name in PROGRESS)

    def is_early(self) -> bool:
        """True when the folder holds nothing but what a run writes before its first checkpoint."""
        if not self.path.is_dir() or self.has_progress():
            return False
        entries = {p.name for p in self.path.iterdir() if not p.name.startswith(".")}
        return entries <= EARLY_ENTRIES

    def check_new(self, resume: bool = False, resumable: bool = True) -> bool:
        """Check that a run may be written here (``resume``: that there is one to continue; ``resumable``: the
        command can resume). Returns True when an early, progress-free run is in the way and ``start`` will
        replace it. Creates nothing."""
        check_output_location(self.path)
        if resume:
            if not self.path.is_dir():
                raise DataError(f"{self.path}: --resume given but the run directory does not exist")
            return False
        if not self.path.exists() or not any(self.path.iterdir()):
            return False
        if self.is_early():
            return True
        what = "a run with progress" if self.has_progress() else "files that are not a neurofit run"
        hint = "use --resume to continue it, or choose another --out" if resumable else "choose another --out"
        raise DataError(f"{self.path}: run directory exists and holds {what} ({hint})")

    def start(self, replace_early: bool) -> None:
        """Create the folder, first removing an early run in the way (``check_new`` said so)."""
        if replace_early and self.is_early():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    def read_json(self, name: str, what: str = "") -> Any:
        """A JSON file of the run; ``DataError`` naming it when missing or damaged."""
        path = self.path / name
        if not path.is_file():
            raise DataError(f"{path}: missing{f' ({what})' if what else ''}")
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: damaged JSON ({err})") from None

    def read_checkpoint(self, name: str) -> dict[str, Any]:
        """A Lightning checkpoint (``checkpoints/NAME.ckpt``), loaded on the CPU and checked for the entries
        a resume or a load needs; ``DataError`` naming it when missing, truncated or not a checkpoint."""
        import torch

        path = self.path / "checkpoints" / f"{name}.ckpt"
        if not path.is_file():
            why = ("runs fitted before neurofit kept the initial model have none; refit the run" if name == "init"
                   else "did fit finish an epoch?")
            raise DataError(f"{path}: missing ({why})")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # a damaged file surfaces as many exception types (EOF, unpickling, zip)
            raise DataError(f"{path}: damaged checkpoint ({type(err).__name__}: {err})") from None
        missing = [k for k in ("state_dict", "hyper_parameters") if not isinstance(ckpt, dict) or k not in ckpt]
        if missing:
            raise DataError(f"{path}: not a neurofit checkpoint (no {', '.join(missing)})")
        return ckpt
