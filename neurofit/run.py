"""Load a fitted run directory: its config, recording specs and a predictor (encoder or ridge)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurofit.config import ExperimentConfig, load_config
from neurofit.data.spec import RecordingSpec
from neurofit.errors import DataError


@dataclass
class Run:
    """A fitted run. ``encoder`` is the torch model for encoder runs (None for ridge)."""

    path: Path
    config: ExperimentConfig
    specs: dict[str, RecordingSpec]
    encoder: torch.nn.Module | None
    ridge: object | None

    @property
    def data_path(self) -> Path:
        """The store the run was trained on."""
        return Path(self.config.data.path)

    def predict(self, recording: str, stimulus: np.ndarray, behavior: np.ndarray | None = None,
                pupil_center: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
        """Predicted responses in recording units: (trial, [frame,] neuron) for raw inputs
        stimulus (trial, [frame,] H, W), behaviour (trial, [frame,] C), pupil (trial, [frame,] 2)."""
        if recording not in self.specs:
            raise DataError(f"{self.path}: the run has no recording {recording!r} (has {list(self.specs)})")
        if self.ridge is not None:
            return self.ridge.predict(recording, stimulus, behavior, pupil_center)
        device = next(self.encoder.parameters()).device
        outs = []
        for i in range(0, len(stimulus), batch_size):
            part = [None if x is None else torch.as_tensor(np.asarray(x[i:i + batch_size]), device=device)
                    for x in (stimulus, behavior, pupil_center)]
            outs.append(self.encoder.predict(recording, *part).cpu())
        return torch.cat(outs).numpy()


def load_run(path: str | os.PathLike, checkpoint: str = "best") -> Run:
    """Open a run directory written by ``neurofit fit`` (``checkpoint``: "best" or "last")."""
    path = Path(path)
    if not (path / "config.yaml").exists():
        raise DataError(f"{path}: not a run directory (no config.yaml)")
    config = load_config(path / "config.yaml")
    specs_file = path / "specs.json"
    if not specs_file.exists():
        raise DataError(f"{path}: incomplete run (no specs.json)")
    specs = {s["name"]: RecordingSpec.from_dict(s) for s in json.loads(specs_file.read_text())}
    if config.type == "ridge":
        from neurofit.models.ridge import RidgePredictor

        model_file = path / "model.npz"
        if not model_file.exists():
            raise DataError(f"{path}: the ridge run has no model.npz (did fit finish?)")
        return Run(path, config, specs, None, RidgePredictor.load(model_file))
    from neurofit.training.module import EncoderModule

    ckpt = path / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.exists():
        raise DataError(f"{path}: no checkpoint {ckpt.name} (did fit finish?)")
    try:
        module = EncoderModule.load_from_checkpoint(str(ckpt), map_location="cpu", weights_only=False)
    except Exception as err:  # a damaged checkpoint surfaces as many exception types
        raise DataError(f"{ckpt}: cannot load checkpoint ({type(err).__name__}: {err})") from None
    module.eval()
    return Run(path, config, specs, module.evaluated_encoder, None)
