"""Load a fitted run directory: its config, recording specs and a predictor (encoder, ridge, or an ensemble
of member runs)."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from neurofit.config import ExperimentConfig, load_config
from neurofit.data.spec import RecordingSpec
from neurofit.errors import DataError
from neurofit.rundir import RunDir


@dataclass
class Run:
    """A fitted run. ``encoder`` is the torch model of encoder runs, ``ridge`` the predictor of ridge runs,
    ``members`` the runs an ensemble averages (the other two None)."""

    path: Path
    config: ExperimentConfig
    specs: dict[str, RecordingSpec]
    encoder: torch.nn.Module | None
    ridge: object | None
    members: list[Run] = field(default_factory=list)

    def has_context(self, recording: str) -> bool:
        """Whether the run's model can predict ``recording`` with population context (a context layer)."""
        return self.encoder is not None and self.encoder.has_context(recording)

    @property
    def data_path(self) -> Path:
        """The store the run was trained on."""
        return Path(self.config.data.path)

    def predict(self, recording: str, stimulus: np.ndarray, behavior: np.ndarray | None = None,
                pupil_center: np.ndarray | None = None, batch_size: int = 256,
                responses: np.ndarray | None = None) -> np.ndarray:
        """Predicted responses in recording units: (trial, [frame,] neuron) for raw inputs
        stimulus (trial, [frame,] H, W), behaviour (trial, [frame,] C), pupil (trial, [frame,] 2). With the
        recorded ``responses`` (trial, [frame,] neuron) an encoder with a context layer predicts each neuron
        given the others' recorded activity (``has_context``); otherwise they are not used."""
        if recording not in self.specs:
            raise DataError(f"{self.path}: the run has no recording {recording!r} (has {list(self.specs)})")
        if self.members:  # the mean rate of the members, in recording units
            return np.mean([m.predict(recording, stimulus, behavior, pupil_center, batch_size)
                            for m in self.members], axis=0)
        if self.ridge is not None:
            return self.ridge.predict(recording, stimulus, behavior, pupil_center)
        return self._batched(lambda *part: (self.encoder.predict(*part),), recording,
                             (stimulus, behavior, pupil_center, responses), batch_size)[0]

    def predict_modes(self, recording: str, stimulus: np.ndarray, behavior: np.ndarray | None,
                      pupil_center: np.ndarray | None, responses: np.ndarray,
                      batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """The stimulus-only prediction and, for a model with a context layer (``has_context``), the one with
        population context, from one pass of the model (``predict``'s shapes and units); other runs give
        (``predict``, None)."""
        if not self.has_context(recording):
            return self.predict(recording, stimulus, behavior, pupil_center, batch_size), None
        stimulus_only, with_context = self._batched(self.encoder.predict_modes, recording,
                                                    (stimulus, behavior, pupil_center, responses), batch_size)
        return stimulus_only, with_context

    def _batched(self, predict, recording: str, inputs: tuple, batch_size: int) -> list[np.ndarray | None]:
        """``predict(recording, *inputs)``, which returns a tuple of tensors (or None), over trial batches of
        ``batch_size``; each output concatenated as numpy (None where it is None)."""
        device = next(self.encoder.parameters()).device
        outs = []
        for i in range(0, len(inputs[0]), batch_size):
            part = [None if x is None else torch.as_tensor(np.asarray(x[i:i + batch_size]), device=device)
                    for x in inputs]
            outs.append(predict(recording, *part))
        return [None if column[0] is None else torch.cat([c.cpu() for c in column]).numpy()
                for column in zip(*outs)]


def load_run(path: str | os.PathLike, checkpoint: str = "best") -> Run:
    """Open a run directory written by ``neurofit fit`` (``checkpoint``: "best", "last" or "init", the model as
    training started). Every file read is checked; a damaged one is named in the ``DataError``."""
    rundir = RunDir(path)
    path = rundir.path
    if not rundir.file("config.yaml").is_file():
        raise DataError(f"{path}: not a run directory (no config.yaml)")
    config = load_config(rundir.file("config.yaml"))
    raw_specs = rundir.read_json("specs.json", "an incomplete run")
    try:
        specs = {s["name"]: RecordingSpec.from_dict(s) for s in raw_specs}
    except (TypeError, KeyError, ValueError) as err:
        raise DataError(f"{rundir.file('specs.json')}: not a list of recording specs ({err})") from None
    if config.type == "ensemble":
        return Run(path, config, specs, None, None, [load_run(m, checkpoint) for m in config.model.members])
    if config.type == "ridge":
        from neurofit.models.ridge import RidgePredictor

        model_file = rundir.file("model.npz")
        if not model_file.exists():
            raise DataError(f"{path}: the ridge run has no model.npz (did fit finish?)")
        try:
            ridge = RidgePredictor.load(model_file)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # a truncated npz
            raise DataError(f"{model_file}: damaged ({type(err).__name__}: {err})") from None
        return Run(path, config, specs, None, ridge)
    from neurofit.training.module import EncoderModule

    saved = rundir.read_checkpoint(checkpoint)
    try:
        module = EncoderModule(**saved["hyper_parameters"])
        module.load_state_dict(saved["state_dict"])
    except (TypeError, KeyError, RuntimeError) as err:
        raise DataError(f"{rundir.file(f'checkpoints/{checkpoint}.ckpt')}: does not fit the run's model "
                        f"({type(err).__name__}: {str(err).splitlines()[0]})") from None
    module.eval()
    return Run(path, config, specs, module.evaluated_encoder, None)


def untrained_run(run: Run) -> Run:
    """The run's model as training started (``checkpoints/init.ckpt``, written by ``neurofit fit`` after the
    readout positions were mapped), in eval mode: the reference against which analyses judge training (what
    the architecture and the data-driven start alone give: attention's distance bias, readouts at the mapped
    RF centres)."""
    return replace(run, encoder=load_run(run.path, "init").encoder)
