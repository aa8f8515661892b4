"""The simulator's own noise-free response stage as a probe, so a grating experiment can be run on the
planted model itself: what a perfect model would show under the same stimuli (static stores only).

It chains the simulator's functions (neurofit/data/simulate/responses.py) on the truth's parameters: Gabor
filtering at the mean eye position (a plain projection: ``linear_responses`` would resample every image
for an eye shift of zero, which made this reference cost as much as a model's experiments), simple/complex
drive over the pool-normalised denominator, lateral coupling. The result is the
coupled activity, without the behavioural gain and the baseline, which scale and offset each neuron's rate
and so change no blank-subtracted ratio (F1/F0, suppression index). The drive's unit, each filter's
RMS response to natural images (the simulator's calibration), is re-estimated on the training images, which
come from the same distribution. Forward only: no MEIs or gradients through it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import torch
import xarray as xr

from neurofit.analysis.insilico.probe import ImageProbe
from neurofit.analysis.insilico.settings import ProbeSettings
from neurofit.data.simulate.responses import couple_static, normalised_drive


def planted_probe(truth: xr.Dataset, train_images: np.ndarray, mean_luminance: float,
                  settings: ProbeSettings) -> ImageProbe | None:
    """An ``ImageProbe`` of every neuron of a static truth (columns in the truth's neuron order), or None
    where the truth has no static response stage (videos add temporal filtering and adaptation)."""
    needed = ("rf_filters", "cell_type", "norm_pool", "norm_sigma", "coupling")
    if "temporal_kernel" in truth or any(name not in truth for name in needed) or "params" not in truth.attrs:
        return None
    params = json.loads(truth.attrs["params"])
    filters = truth["rf_filters"].values.astype(np.float32)
    # The envelopes' far tails hold subnormal floats, which made the projection about 10x slower on CPU.
    filters[np.abs(filters) < np.finfo(np.float32).tiny] = 0.0
    bank = torch.as_tensor(filters.reshape(len(filters) * 2, -1)).T.contiguous()  # (pixels, N * 2): even, odd
    population = SimpleNamespace(complex_cell=truth["cell_type"].values.astype(str) == "complex",
                                 norm_pool=truth["norm_pool"].values, norm_sigma=truth["norm_sigma"].values)
    coupling = truth["coupling"].values
    screen_mean = float(params["mean_luminance"])

    def linear(images: torch.Tensor) -> np.ndarray:  # (B, H, W) grey levels -> (B, N, 2) filter outputs
        contrast = images.reshape(len(images), -1).float() - screen_mean
        return (contrast @ bank).reshape(len(images), -1, 2).numpy()

    calibration = linear(torch.as_tensor(train_images))
    linear_sd = np.maximum(np.sqrt(0.5 * (calibration**2).sum(-1).mean(0)), 1e-6)

    def forward(images: torch.Tensor) -> torch.Tensor:
        drive = normalised_drive(linear(images.detach()), population, linear_sd, params["norm_exponent"])
        return torch.as_tensor(couple_static(drive, coupling, params["coupling_steps"]))

    return ImageProbe(forward, len(filters), tuple(filters.shape[-2:]), mean_luminance, settings)
