"""What the training stimuli look like, which sets the scale of every in-silico stimulus: the mean
luminance (the blank screen), the typical contrast (the MEI norm, the noise and grating contrast) and the
range of grey levels the model was trained on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from neurofit.data.datamodule import load_arrays

#: Diameter of the disc whose typical training-image contrast energy is the default MEI norm, pixels: about
#: the extent (+-2 sigma) of the larger simulated RFs. Spread over a whole image, the MEI norm of a full
#: training image (about 3.4 x larger on 36 x 64 images) clips at the grey-level range inside the RF and
#: spreads beyond it (median MEI-filter correlation 0.53 there, 0.86 at this norm, 0.89 at half of it).
MEI_NORM_DIAMETER_PX = 16.0
#: Video recordings: frames sampled per training movie read (movies are long; a few dozen give the statistics).
FRAMES_PER_MOVIE = 50


@dataclass(frozen=True)
class StimulusStats:
    """Scales of one recording's training stimuli, grey levels.

    mean_luminance: mean over pixels and images (the blank screen); contrast_norm: median over images of the
    L2 norm of (image - mean_luminance), the fixed norm of an MEI; low, high: the range of grey levels;
    mean_image: (H, W) per-pixel mean, where the gradient receptive field is taken.
    """

    mean_luminance: float
    contrast_norm: float
    low: float
    high: float
    mean_image: np.ndarray

    @property
    def rms_contrast(self) -> float:
        """Per-pixel RMS contrast of a typical training image, grey levels."""
        return self.contrast_norm / np.sqrt(self.mean_image.size)

    def disc_norm(self, diameter_px: float = MEI_NORM_DIAMETER_PX) -> float:
        """The L2 contrast norm a typical training image has inside a disc of ``diameter_px`` pixels: RMS
        contrast x sqrt(disc area), grey levels; the default MEI norm."""
        return self.rms_contrast * float(np.sqrt(np.pi * (diameter_px / 2) ** 2))

    def raw(self, contrast: torch.Tensor) -> torch.Tensor:
        """Contrast images (grey levels about the mean luminance) -> raw images clipped to the training range."""
        return (contrast + self.mean_luminance).clamp(self.low, self.high)


def training_images(data: str | os.PathLike, recording: str, max_images: int, seed: int = 0) -> np.ndarray:
    """Up to ``max_images`` training-tier images (n, H, W), float32 grey levels; for videos, frames drawn at
    random, ``FRAMES_PER_MOVIE`` from each of as many training movies as needed."""
    arrays = load_arrays(data, recording, in_memory=False)
    trials = arrays.trials("train")
    rng = np.random.default_rng(seed)
    stimulus = arrays.arrays["stimulus"]
    video = len(stimulus.array.shape) == 4
    wanted = -(-max_images // FRAMES_PER_MOVIE) if video else max_images
    chosen = np.sort(rng.choice(trials, min(len(trials), wanted), replace=False))
    images = arrays.read(chosen)["stimulus"]
    if video:
        frames = rng.integers(0, images.shape[1], (len(chosen), FRAMES_PER_MOVIE))
        images = np.take_along_axis(images, frames[:, :, None, None], axis=1).reshape(-1, *images.shape[2:])
    images = np.asarray(images, dtype=np.float32)
    return images[np.isfinite(images).all(axis=(1, 2))]


def stimulus_stats(images: np.ndarray) -> StimulusStats:
    """``StimulusStats`` of training images (n, H, W)."""
    mean = float(images.mean())
    norms = np.sqrt(((images - mean) ** 2).sum(axis=(1, 2)))
    return StimulusStats(mean_luminance=mean, contrast_norm=float(np.median(norms)), low=float(images.min()),
                         high=float(images.max()), mean_image=images.mean(0))
