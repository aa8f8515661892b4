"""Every in-silico experiment on one probe: responses to training images (the reference for MEI
activations), gradient and noise RFs with their fitted centres, MEIs, and grating tuning windowed at the
noise RF's centre (which, with the response-weighted variance, finds simple and complex cells alike)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from neurofit.analysis.insilico.mei import MEIs, optimise_meis, start_similarity
from neurofit.analysis.insilico.probe import ImageProbe
from neurofit.analysis.insilico.reference import StimulusStats
from neurofit.analysis.insilico.rf import (
    GaussianFit,
    NoiseRF,
    energy,
    fit_gaussian,
    gradient_rf,
    noise_fit,
    noise_rf,
)
from neurofit.analysis.insilico.settings import Settings
from neurofit.analysis.insilico.tuning import Tuning, grating_tuning

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """What one model shows for K neurons.

    train_mean, train_max: (K,) mean and largest rate over the training images; meis; mei_similarity (K,)
    mean pairwise correlation of the starts; gradient (K, H, W) d rate / d image at the mean image; noise;
    fits: {"mei", "gradient", "noise"} -> GaussianFit of the best MEI's contrast energy, the gradient RF's
    energy and the noise RF (``noise_fit``); tuning; wall_s: seconds per experiment.
    """

    train_mean: np.ndarray
    train_max: np.ndarray
    meis: MEIs
    mei_similarity: np.ndarray
    gradient: np.ndarray
    noise: NoiseRF
    fits: dict[str, GaussianFit]
    tuning: Tuning
    wall_s: dict[str, float]


def analyse(probe: ImageProbe, neurons: np.ndarray, stats: StimulusStats, train_images: np.ndarray,
            settings: Settings, seed: int = 0) -> Analysis:
    """Run every experiment on ``neurons`` (K,) probe columns; ``train_images`` (n, H, W) raw."""
    wall: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        wall[name] = round(now - clock, 2)
        clock = now

    images = torch.as_tensor(train_images)
    rates = probe.evaluate(len(images), lambda index: images[index], desc="training images")[:, neurons]
    lap("training_images")
    gradient = gradient_rf(probe, neurons, stats.mean_image)
    noise = noise_rf(probe, neurons, stats, settings.noise_images, seed)
    lap("receptive_fields")
    meis = optimise_meis(probe, neurons, stats, settings.mei)
    lap("meis")
    fits = {"mei": fit_gaussian(energy(meis.best() - stats.mean_luminance)),
            "gradient": fit_gaussian(energy(gradient)), "noise": noise_fit(noise)}
    lap("rf_fits")
    tuning = grating_tuning(probe, neurons, fits["noise"].centre_px, fits["noise"].sigma_px, stats,
                            settings.tuning)
    lap("tuning")
    log.info("in-silico experiments on %d neurons: %s s", len(neurons), wall)
    return Analysis(train_mean=rates.mean(0), train_max=rates.max(0), meis=meis,
                    mei_similarity=start_similarity(meis.images), gradient=gradient, noise=noise, fits=fits,
                    tuning=tuning, wall_s=wall)
