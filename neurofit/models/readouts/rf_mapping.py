"""Receptive-field centres from data, to start readout positions where the neurons actually look.

A Gaussian readout whose positions start at random (or at a guessed retinotopic map) spends its first epochs
finding each neuron's receptive field. A response-weighted map of local contrast energy finds it in one pass
over the data: for each neuron, the correlation between its response and the band-pass contrast energy at
every pixel peaks at the RF centre, for simple (phase-sensitive) and complex (phase-invariant) cells alike.
Several spatial scales are tried and the best one per pixel kept, since RFs differ in size and frequency.
With a trained core the search is over its features instead (``ridge_score_maps``): at every pixel, how well a
ridge regression on all the core's channels there predicts the neuron, which is what a readout placed there
can do, so the peak stands out of the noise with far fewer trials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from neurofit.models.readouts.ridge_gcv import RIDGE_GRID, gcv_errors, spectrum


@dataclass(frozen=True)
class RFCentres:
    """Estimated receptive-field centres of N neurons.

    Attributes:
        centres_px: (N, 2) float (x, y) screen pixels, x along the width, y along the height.
        strength: (N,) peak score: correlation with local contrast energy, or held-out variance explained by a
            ridge readout on a core's features (0: no RF found); use it to weight or discard unreliable
            estimates.
    """

    centres_px: np.ndarray
    strength: np.ndarray


def _gaussian_transfer(height: int, width: int, sigma_px: float) -> torch.Tensor:
    """Fourier transfer function (height, width // 2 + 1) of a Gaussian blur with std ``sigma_px``."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return torch.exp(-2 * math.pi**2 * sigma_px**2 * (fx**2 + fy**2))


def _fast_length(n: int) -> int:
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (FFT sizes that are fast)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance along dim 0 (constant columns become 0)."""
    x = x - x.mean(0)
    return x / x.std(0).clamp_min(1e-8)


def contrast_energy(stimulus: torch.Tensor, scales_px: tuple[float, ...]) -> list[torch.Tensor]:
    """Local band-pass contrast energy per scale: (difference of Gaussians at sigma, 2 sigma)^2, blurred by
    sigma.

    stimulus: (T, H, W) grey levels -> one (T, H, W) map per scale. Images are mirror-padded by 3 sigma of
    the largest scale (and on to FFT-friendly sizes) before the FFT, so the filters do not wrap around the
    screen edges; the padded spectrum is computed once for all scales.
    """
    t, h, w = stimulus.shape
    pad = min(int(math.ceil(3 * max(scales_px))), h - 1, w - 1)
    extra_h = min(_fast_length(h + 2 * pad) - h - 2 * pad, h - 1 - pad)
    extra_w = min(_fast_length(w + 2 * pad) - w - 2 * pad, w - 1 - pad)
    x = stimulus - stimulus.mean((1, 2), keepdim=True)
    x = torch.nn.functional.pad(x[:, None], (pad, pad + extra_w, pad, pad + extra_h), mode="reflect")[:, 0]
    size = x.shape[1:]
    spectrum = torch.fft.rfft2(x)
    maps = []
    for sigma in scales_px:
        g1, g2 = _gaussian_transfer(*size, sigma), _gaussian_transfer(*size, 2 * sigma)
        band = torch.fft.irfft2(spectrum * (g1 - g2), s=size)
        energy = torch.fft.irfft2(torch.fft.rfft2(band.square()) * g1, s=size)
        maps.append(energy[:, pad:pad + h, pad:pad + w])
    return maps


def estimate_rf_centres(stimulus: np.ndarray, responses: np.ndarray,
                        scales_px: tuple[float, ...] = (1.0, 2.0, 4.0),
                        refine_radius_px: float = 4.0) -> RFCentres:
    """RF centres from stimulus-response pairs by correlation with local contrast energy.

    Args:
        stimulus: (T, H, W) images (or frames), any grey-level units.
        responses: (T, N) responses to them (for videos: frames aligned with a causal lag by the caller).
        scales_px: DoG scales (pixels) to try; each pixel keeps its best scale.
        refine_radius_px: the centre is the correlation-weighted centroid, above half the peak, within this
            radius of the peak pixel (sub-pixel precision, robust to a single noisy pixel).
    Returns:
        ``RFCentres`` (centres in pixels, peak correlation per neuron).
    """
    stim = torch.as_tensor(np.asarray(stimulus), dtype=torch.float32)
    return centres_from_maps(contrast_energy(stim, scales_px), responses, refine_radius_px)


def centres_from_maps(maps: Iterable[torch.Tensor], responses: np.ndarray,
                      refine_radius_px: float = 4.0) -> RFCentres:
    """RF centres as the peaks of each neuron's response correlation with stimulus feature maps.

    Args:
        maps: (T, H, W) feature maps of the same T stimuli on the screen's pixel grid (contrast energy per
            scale); each pixel keeps the map that correlates best.
        responses: (T, N) responses to those stimuli.
        refine_radius_px: as for ``estimate_rf_centres``.
    Returns:
        ``RFCentres`` (centres in pixels, peak correlation per neuron).
    """
    resp = _standardise(torch.as_tensor(np.asarray(responses), dtype=torch.float32))
    best = None
    for feature in maps:
        t, h, w = feature.shape
        feature = _standardise(feature.reshape(t, h * w))
        corr = resp.T @ feature / t  # (N, H*W)
        best = corr if best is None else torch.maximum(best, corr)
    return centres_from_scores(best.reshape(-1, h, w), refine_radius_px)


def _interpolation(size_out: int, size_in: int) -> torch.Tensor:
    """(size_out, size_in) weights of 1-D linear interpolation with aligned corners (``grid_sample``'s
    ``align_corners=True``, as the Gaussian readout samples)."""
    pos = torch.linspace(0, size_in - 1, size_out) if size_out > 1 else torch.zeros(1)
    low = pos.floor().clamp(max=max(size_in - 2, 0)).long()
    frac = pos - low
    weights = torch.zeros(size_out, size_in)
    weights[torch.arange(size_out), low] = 1 - frac
    if size_in > 1:
        weights[torch.arange(size_out), low + 1] += frac
    return weights


def ridge_score_maps(features: torch.Tensor, responses: np.ndarray, size: tuple[int, int],
                     grid: torch.Tensor = RIDGE_GRID) -> torch.Tensor:
    """How well each neuron's response is predicted linearly from a core's features read at each screen pixel.

    At every pixel the C features there (bilinearly interpolated from the core's grid, as a Gaussian readout
    reads them) are regressed on by ridge with the penalty chosen by GCV, for all neurons at once; the score
    is 1 - GCV error / the intercept-only model's, an estimate of the held-out variance explained.

    Args:
        features: (T, C, h, w) core feature maps of T stimuli. responses: (T, N) responses to them.
        size: (H, W) screen pixels.
    Returns:
        (N, H, W) scores (<= 1; 0 or less where the features there predict nothing).
    """
    t = features.shape[0]
    features = features.float()
    rows, cols = (_interpolation(n, m) for n, m in zip(size, features.shape[2:]))
    y = torch.as_tensor(np.asarray(responses), dtype=torch.float32)
    yc = y - y.mean(0)
    yss = (yc.double() ** 2).sum(0, keepdim=True)  # (1, N)
    null = yss / (t - 1) ** 2
    scores = []
    for row in rows:
        x = torch.einsum("i,tcij,xj->xtc", row, features, cols)  # (W, T, C)
        x = x - x.mean(1, keepdim=True)
        eig, vec = spectrum(x)
        proj = vec.transpose(1, 2) @ (x.transpose(1, 2) @ yc).double()  # (W, C, N)
        errors, _ = gcv_errors(eig, proj, yss, t, grid)
        scores.append(1 - errors.min(0).values / null)  # (W, N)
    return torch.stack(scores).permute(2, 0, 1).float()  # (N, H, W)


def _pixel_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index (H, W) of every screen pixel, float."""
    return torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                          indexing="ij")


def scores_near(scores: torch.Tensor, positions: torch.Tensor, radius_px: float) -> torch.Tensor:
    """Score maps (N, H, W) with every pixel farther than ``radius_px`` from the neuron's ``positions`` (N, 2)
    (grid units, x then y) pushed to -inf-like values, so the peak is searched only near them."""
    n, h, w = scores.shape
    px = (positions.detach().cpu().float() + 1) / 2 * torch.tensor([w - 1.0, h - 1.0])
    yy, xx = _pixel_grid(h, w)
    far = (xx - px[:, 0, None, None]) ** 2 + (yy - px[:, 1, None, None]) ** 2 > radius_px**2
    return scores.masked_fill(far, -1e9)


def centres_from_scores(scores: torch.Tensor, refine_radius_px: float = 4.0) -> RFCentres:
    """RF centres from per-neuron score maps (N, H, W) (a correlation or variance explained per pixel): the
    score-weighted centroid, above half the peak, within ``refine_radius_px`` of each neuron's peak pixel.
    A neuron without a positive peak (no visual drive) gets the screen centre and strength 0; otherwise the
    strength is its peak score."""
    n, h, w = scores.shape
    peak, index = scores.reshape(n, -1).max(1)
    yy, xx = _pixel_grid(h, w)
    py, px = (index // w).float(), (index % w).float()
    near = ((yy - py[:, None, None]) ** 2 + (xx - px[:, None, None]) ** 2) <= refine_radius_px**2
    weight = (scores - 0.5 * peak[:, None, None]).clamp_min(0) * near
    weight = weight / weight.sum((1, 2), keepdim=True).clamp_min(1e-12)
    centres = torch.stack([(weight * xx).sum((1, 2)), (weight * yy).sum((1, 2))], 1)
    found = peak > 0
    centres[~found] = torch.tensor([(w - 1) / 2, (h - 1) / 2])
    return RFCentres(centres.numpy(), peak.clamp_min(0).numpy())
