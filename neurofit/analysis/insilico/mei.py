"""Most exciting inputs (Walker et al. 2019) by projected gradient ascent on the stimulus.

Every start of every neuron is one image of one batch, and the objective is the sum over images of image
k's rate of its own neuron k: images do not interact, so the sum's gradient is each image's own gradient
and one backward pass serves hundreds of neurons. Each step:

1. the gradient of each image's objective, blurred with a Gaussian of ``blur_sigma_px`` (suppresses the
   pixel-scale patterns that gradient ascent through a CNN otherwise grows; Walker et al. blur the gradient
   the same way) and scaled to unit L2 norm per image, so every neuron moves at the same pace whatever the
   scale of its rate;
2. a step of ``step_size`` times the norm (the angle, in radians, the image turns by on its sphere),
   decaying to 0 along a half cosine over the iterations;
3. projection back onto the constraint: contrast (image - mean luminance) rescaled to the fixed L2 ``norm``,
   then clipped to the training range of grey levels. The default norm is the contrast energy a typical
   training image has within an RF-sized disc (``StimulusStats.disc_norm``, ``MEI_NORM_DIAMETER_PX``): an
   MEI concentrates its energy in the RF, and a whole image's energy there exceeds the grey-level range.

Starts are white noise blurred like the gradient, at the same norm, from seeded generators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from neurofit.analysis.insilico.probe import ImageProbe
from neurofit.analysis.insilico.reference import StimulusStats
from neurofit.analysis.insilico.settings import MEISettings
from neurofit.analysis.insilico.stimuli import gaussian_blur


@dataclass
class MEIs:
    """images: (K, S, H, W) raw grey levels, start s of neuron k; rates: (K, S) the neuron's rate to it;
    norm: the contrast norm used, grey levels."""

    images: np.ndarray
    rates: np.ndarray
    norm: float

    def best(self) -> np.ndarray:
        """(K, H, W) the start that drove its neuron most."""
        return self.images[np.arange(len(self.images)), self.rates.argmax(1)]


def _project(contrast: torch.Tensor, norm: float, stats: StimulusStats) -> torch.Tensor:
    """Rescale each contrast image (B, H, W) to L2 ``norm``, then clip to the training range."""
    scale = norm / contrast.flatten(1).norm(dim=1).clamp_min(1e-12)
    contrast = contrast * scale[:, None, None]
    return (contrast + stats.mean_luminance).clamp(stats.low, stats.high) - stats.mean_luminance


def _unit(gradient: torch.Tensor) -> torch.Tensor:
    return gradient / gradient.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None]


def optimise_meis(probe: ImageProbe, neurons: np.ndarray, stats: StimulusStats, settings: MEISettings,
                  desc: str | None = "MEIs") -> MEIs:
    """MEIs of ``neurons`` (K,) column indices of the probe, ``settings.starts`` each (module docstring)."""
    norm = settings.norm if settings.norm is not None else stats.disc_norm()
    targets = np.repeat(np.asarray(neurons), settings.starts)
    shape = probe.image_shape
    generator = torch.Generator().manual_seed(settings.seed)
    start = _project(gaussian_blur(torch.randn((len(targets), *shape), generator=generator),
                                   settings.blur_sigma_px), norm, stats)
    step = probe.images_per_call
    chunks = [slice(i, i + step) for i in range(0, len(targets), step)]
    images, rates = [], []
    with tqdm(total=len(chunks) * settings.iterations, desc=desc, disable=desc is None, leave=False) as bar:
        for chunk in chunks:
            contrast = start[chunk]
            rows = torch.arange(len(contrast))
            cols = torch.as_tensor(targets[chunk])
            for it in range(settings.iterations):
                contrast.requires_grad_(True)
                objective = probe.rates(contrast + stats.mean_luminance)[rows, cols].sum()
                (gradient,) = torch.autograd.grad(objective, contrast)
                size = settings.step_size * 0.5 * (1 + np.cos(np.pi * it / settings.iterations)) * norm
                with torch.no_grad():
                    moved = contrast + size * _unit(gaussian_blur(gradient, settings.blur_sigma_px))
                contrast = _project(moved, norm, stats)
                bar.update()
            with torch.no_grad():
                rates.append(probe.rates(contrast + stats.mean_luminance)[rows, cols])
            images.append(contrast + stats.mean_luminance)
    k, s = len(neurons), settings.starts
    return MEIs(torch.cat(images).reshape(k, s, *shape).numpy(), torch.cat(rates).reshape(k, s).numpy(), norm)


def start_similarity(images: np.ndarray) -> np.ndarray:
    """Mean pairwise Pearson correlation between the starts of each neuron's MEIs (K, S, H, W) -> (K,);
    NaN with a single start."""
    k, s = images.shape[:2]
    flat = images.reshape(k, s, -1).astype(np.float64)
    flat = flat - flat.mean(-1, keepdims=True)
    flat /= np.maximum(np.linalg.norm(flat, axis=-1, keepdims=True), 1e-12)
    gram = np.einsum("ksp,ktp->kst", flat, flat)
    pairs = np.triu_indices(s, 1)
    return gram[:, pairs[0], pairs[1]].mean(1) if s > 1 else np.full(k, np.nan)
