"""In-silico receptive fields and where they are.

- Gradient RF: d rate / d image at the training images' mean image, one neuron per image of a batch.
- Noise RFs: the responses to white-noise images (pixel std = the training images' RMS contrast) give the
  spike-triggered average (STA, the response-weighted mean contrast) and the response-weighted variance
  (RWV, the covariance of the response with each pixel's squared contrast, the diagonal of the
  spike-triggered covariance). A simple cell's STA is its filter; a complex cell's STA is near zero (its
  energy is even in the stimulus), but its RWV, like a simple cell's, is its filters' energy.
- Centre and size: a 2D isotropic Gaussian plus offset fitted (Levenberg-Marquardt) to an RF's energy map,
  the blurred square of the RF. For noise RFs two maps are fitted, the STA's energy and the RWV (blurred
  more: it is the noisier estimate, pixel noise of squared contrast), and the fit that explains its map
  better (R^2) is kept: the STA's for simple cells, mostly the RWV's for complex ones. The energy of a
  Gabor with envelope std sigma is a Gaussian of std sigma / sqrt(2), so ``sigma_px`` reports sqrt(2)
  times the fitted std, an estimate of the envelope's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import least_squares

from neurofit.analysis.insilico.probe import ImageProbe
from neurofit.analysis.insilico.reference import StimulusStats
from neurofit.analysis.insilico.stimuli import gaussian_blur, white_noise

#: Blur of a squared RF before the fit, pixels (averages out the carrier's ripple).
ENERGY_BLUR_PX = 1.0
#: Blur of the response-weighted variance before the fit, pixels: with 4,000 noise images its pixel noise
#: hid the RF (median centre error of complex cells 1.4 px blurred by 2 px, against several px unblurred).
RWV_BLUR_PX = 2.0


def gradient_rf(probe: ImageProbe, neurons: np.ndarray, base_image: np.ndarray) -> np.ndarray:
    """d rate_k / d image at ``base_image`` (H, W) raw grey levels for each of ``neurons`` (K,) -> (K, H, W)."""
    step = probe.images_per_call
    out = []
    for start in range(0, len(neurons), step):
        cols = torch.as_tensor(np.asarray(neurons[start:start + step]))
        image = torch.as_tensor(base_image, dtype=torch.float32).expand(len(cols), -1, -1).clone()
        image.requires_grad_(True)
        rate = probe.rates(image)[torch.arange(len(cols)), cols].sum()
        out.append(torch.autograd.grad(rate, image)[0])
    return torch.cat(out).numpy()


@dataclass
class NoiseRF:
    """sta, rwv: (K, H, W) response-weighted mean contrast and response-weighted variance of the contrast
    (rate units x grey levels, x grey levels squared); n_images: noise images used."""

    sta: np.ndarray
    rwv: np.ndarray
    n_images: int


def noise_rf(probe: ImageProbe, neurons: np.ndarray, stats: StimulusStats, n_images: int, seed: int = 0,
             desc: str | None = "noise RFs") -> NoiseRF:
    """STA and RWV of ``neurons`` (K,) from ``n_images`` white-noise images (module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    noise = stats.raw(white_noise(generator, n_images, probe.image_shape, stats.rms_contrast))
    rates = torch.as_tensor(probe.evaluate(n_images, lambda index: noise[index], desc=desc)[:, neurons])
    weights = (rates - rates.mean(0)).double() / n_images  # (n, K)
    contrast = (noise - stats.mean_luminance).reshape(n_images, -1).double()
    squared = contrast**2
    sta = weights.T @ contrast
    rwv = weights.T @ (squared - squared.mean(0))
    shape = (len(neurons), *probe.image_shape)
    return NoiseRF(sta.reshape(shape).float().numpy(), rwv.reshape(shape).float().numpy(), n_images)


def energy(rf: np.ndarray) -> np.ndarray:
    """The blurred square of RFs (K, H, W), what ``fit_gaussian`` fits for a filter-like RF."""
    return gaussian_blur(torch.as_tensor(np.asarray(rf, dtype=np.float32)) ** 2, ENERGY_BLUR_PX).numpy()


@dataclass
class GaussianFit:
    """centre_px: (K, 2) x, y pixels; sigma_px: (K,) envelope std estimate (sqrt(2) x the energy's std);
    r2: (K,) fraction of the energy map's variance the fit explains."""

    centre_px: np.ndarray
    sigma_px: np.ndarray
    r2: np.ndarray


def _fit_one(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit b + a exp(-((x - x0)^2 + (y - y0)^2) / (2 s^2)) to one map; returns (x0, y0, s) and R^2."""
    flat = image.ravel().astype(np.float64)
    peak = int(np.argmax(flat))
    base = float(np.median(flat))
    scale = max(float(flat[peak] - base), 1e-12)
    target = (flat - base) / scale  # unit peak: one damping scale suits every map

    def model(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x0, y0, log_s, a, b = p
        s2 = np.exp(2 * log_s)
        d2 = (xs - x0) ** 2 + (ys - y0) ** 2
        g = np.exp(-0.5 * d2 / s2)
        return a * g + b, g

    def residual(p: np.ndarray) -> np.ndarray:
        return model(p)[0] - target

    def jacobian(p: np.ndarray) -> np.ndarray:
        x0, y0, log_s, a, _ = p
        _, g = model(p)
        s2 = np.exp(2 * log_s)
        ag = a * g
        return np.stack([ag * (xs - x0) / s2, ag * (ys - y0) / s2,
                         ag * ((xs - x0) ** 2 + (ys - y0) ** 2) / s2, g, np.ones_like(g)], axis=1)

    start = np.array([xs[peak], ys[peak], np.log(2.0), 1.0, 0.0])
    fit = least_squares(residual, start, jac=jacobian, method="lm", max_nfev=200)
    ss = float(((target - target.mean()) ** 2).sum())
    r2 = 1 - float((fit.fun**2).sum()) / ss if ss > 0 else np.nan
    return fit.x[:3], r2


def noise_fit(noise: NoiseRF) -> GaussianFit:
    """Per neuron, the better-explained (R^2) of the fits to the STA's energy and to the blurred RWV."""
    sta = fit_gaussian(energy(noise.sta))
    rwv = fit_gaussian(gaussian_blur(torch.as_tensor(noise.rwv), RWV_BLUR_PX).numpy())
    pick = sta.r2 >= rwv.r2
    return GaussianFit(np.where(pick[:, None], sta.centre_px, rwv.centre_px),
                       np.where(pick, sta.sigma_px, rwv.sigma_px), np.where(pick, sta.r2, rwv.r2))


def fit_gaussian(energy_maps: np.ndarray) -> GaussianFit:
    """Centre and size of each energy map (K, H, W) (module docstring); a centre the fit moves off the
    screen is clipped to its edge."""
    k, height, width = energy_maps.shape
    ys, xs = (a.ravel().astype(np.float64) for a in np.mgrid[0:height, 0:width])
    params, r2 = zip(*(_fit_one(m, xs, ys) for m in energy_maps), strict=True) if k else ((), ())
    params = np.asarray(params, dtype=np.float64).reshape(k, 3)
    centre = np.stack([params[:, 0].clip(0, width - 1), params[:, 1].clip(0, height - 1)], axis=1)
    return GaussianFit(centre, np.sqrt(2) * np.exp(params[:, 2]), np.asarray(r2, dtype=np.float64))
