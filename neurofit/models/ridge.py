"""Ridge-regression baseline: responses as a linear function of (normalised) pixels, one model per
recording, regularisation chosen per neuron by efficient leave-one-out cross-validation (scikit-learn's
RidgeCV). A floor that any stimulus-driven model should clear."""

from __future__ import annotations

import os

import numpy as np
from sklearn.linear_model import RidgeCV

from neurofit.errors import ConfigError
from neurofit.io import save_npz


class RidgePredictor:
    """Per recording: pred = W @ pixels + b, pixels z-scored with training statistics.

    Args: alphas: candidate ridge penalties; downsample: average-pool factor applied to images first
    (fewer features, faster; 1 = full resolution)."""

    def __init__(self, alphas: list[float] | None = None, downsample: int = 1) -> None:
        self.alphas = np.asarray(alphas or np.logspace(0, 6, 13), dtype=np.float64)
        self.downsample = int(downsample)
        self.params: dict[str, dict[str, np.ndarray]] = {}

    def _features(self, stimulus: np.ndarray, mean: float, std: float) -> np.ndarray:
        if stimulus.ndim != 3:
            raise ConfigError("the ridge baseline models static images (trial, height, width), not videos")
        x = (np.asarray(stimulus, dtype=np.float64) - mean) / std
        k = self.downsample
        if k > 1:
            t, h, w = x.shape
            x = x[:, : h // k * k, : w // k * k].reshape(t, h // k, k, w // k, k).mean(axis=(2, 4))
        return x.reshape(len(x), -1)

    def fit_recording(self, name: str, stimulus: np.ndarray, responses: np.ndarray) -> None:
        """Fit one recording. stimulus (trial, H, W) raw pixels; responses (trial, N)."""
        mean, std = float(stimulus.mean()), float(stimulus.std() + 1e-6)
        model = RidgeCV(alphas=self.alphas, alpha_per_target=True)
        model.fit(self._features(stimulus, mean, std), np.asarray(responses, dtype=np.float64))
        self.params[name] = {"coef": model.coef_.astype(np.float32),
                             "intercept": model.intercept_.astype(np.float32),
                             "alpha": np.asarray(model.alpha_), "stim": np.array([mean, std])}

    def predict(self, recording: str, stimulus: np.ndarray, behavior: np.ndarray | None = None,
                pupil_center: np.ndarray | None = None) -> np.ndarray:
        """Predicted responses (trial, N) in recording units."""
        p = self.params[recording]
        x = self._features(stimulus, *p["stim"])
        return x @ p["coef"].T.astype(np.float64) + p["intercept"]

    def save(self, path: str | os.PathLike) -> None:
        """Write all recordings' weights to one .npz, atomically."""
        flat = {f"{name}/{key}": value for name, p in self.params.items() for key, value in p.items()}
        flat["downsample"] = np.array(self.downsample)
        save_npz(path, **flat)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RidgePredictor:
        with np.load(path) as data:
            model = cls(downsample=int(data["downsample"]))
            for key in data.files:
                if "/" in key:
                    name, field = key.split("/", 1)
                    model.params.setdefault(name, {})[field] = data[key]
        return model
