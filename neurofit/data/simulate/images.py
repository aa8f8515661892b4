"""Natural-statistics stimuli: 1/f noise mixed with dead leaves (occluding objects), still or drifting.

Both components are scale invariant (amplitude spectrum close to 1/f), and the leaves add the sharp, occluding
edges that pure 1/f noise lacks, so that phase structure matters as in natural scenes. Images come out as
float32 grey levels in 0..255 like the raw SENSORIUM images.
"""

from __future__ import annotations

import numpy as np
import torch

from neurofit.data.simulate.translate import drift_scene


def pink_noise(rng: np.random.Generator, n: int, height: int, width: int, exponent: float = 1.0) -> np.ndarray:
    """Random-phase noise with amplitude spectrum exactly 1/f**exponent, periodic on the canvas.

    Returns:
        (n, height, width) float32, each image with zero mean and unit standard deviation.
    """
    white = torch.from_numpy(rng.standard_normal((n, height, width), dtype=np.float32))
    spec = torch.fft.rfft2(white)
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    freq = torch.sqrt(fx**2 + fy**2)
    amplitude = torch.where(freq > 0, freq.clamp_min(1e-6) ** -exponent, torch.zeros(()))
    # With a fixed amplitude spectrum every image has the same variance (Parseval), so scale analytically.
    # Half-spectrum columns other than DC and Nyquist stand for two conjugate coefficients.
    doubled = torch.full((width // 2 + 1,), 2.0)
    doubled[0] = 1.0
    if width % 2 == 0:
        doubled[-1] = 1.0
    variance = float((amplitude**2 * doubled).sum()) / (height * width) ** 2
    # Keep only the phase of the white noise.
    spec = spec * (amplitude / np.sqrt(variance) / spec.abs().clamp_min(1e-12))
    return torch.fft.irfft2(spec, s=(height, width)).numpy()


def dead_leaves(rng: np.random.Generator, n: int, height: int, width: int, leaves: int,
                radius_px: tuple[float, float], periodic: bool = False) -> np.ndarray:
    """Occluding random ellipses with uniform grey levels over a uniform grey background.

    Radii follow a power law with density ~ r**-3 between ``radius_px`` (the scale-invariant dead-leaves
    model); later leaves occlude earlier ones, and a half-pixel blur anti-aliases the edges. Returns
    (n, height, width) float32 with zero mean and unit standard deviation per image. ``periodic`` wraps
    leaves around the edges so the image tiles seamlessly (for drifting scenes).
    """
    r_min, r_max = radius_px
    # Inverse CDF of p(r) ~ r**-3 on [r_min, r_max].
    radius = (r_min**-2 - rng.random((n, leaves)) * (r_min**-2 - r_max**-2)) ** -0.5
    aspect = rng.uniform(1.0, 3.0, (n, leaves))
    angle = rng.uniform(0, np.pi, (n, leaves))
    margin = 0.0 if periodic else r_min
    cx = rng.uniform(-margin, width + margin, (n, leaves))
    cy = rng.uniform(-margin, height + margin, (n, leaves))
    grey = rng.standard_normal((n, leaves + 1)).astype(np.float32)
    # Painting order: large leaves at the back so the small ones are not mostly hidden.
    rank = np.argsort(np.argsort(-radius, axis=1), axis=1)
    semi_major = radius * np.sqrt(aspect)
    semi_minor = radius / np.sqrt(aspect)
    # Each leaf only touches its bounding box; boxes of one size are drawn in one tensor op.
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    half_x = np.ceil(np.sqrt((semi_major * cos_a) ** 2 + (semi_minor * sin_a) ** 2)).astype(np.int64)
    half_y = np.ceil(np.sqrt((semi_major * sin_a) ** 2 + (semi_minor * cos_a) ** 2)).astype(np.int64)
    top = torch.zeros(n * height * width + 1, dtype=torch.int64)  # 0 = background, k + 1 = leaf of rank k
    box = half_x * 64 + half_y
    for key in np.unique(box):
        img, leaf = np.nonzero(box == key)
        hx, hy = int(key) // 64, int(key) % 64
        px = torch.from_numpy(np.round(cx[img, leaf]).astype(np.int64))[:, None, None] + torch.arange(-hx, hx + 1)
        py = (torch.from_numpy(np.round(cy[img, leaf]).astype(np.int64))[:, None, None]
              + torch.arange(-hy, hy + 1)[:, None])
        dx = px - _col(cx[img, leaf])
        dy = py - _col(cy[img, leaf])
        c, s = _col(cos_a[img, leaf]), _col(sin_a[img, leaf])
        a, b = _col(semi_major[img, leaf]), _col(semi_minor[img, leaf])
        # Row and column terms are computed separately and only summed at full patch size.
        u = dx * (c / a) + dy * (s / a)
        v = dy * (c / b) - dx * (s / b)
        inside = u * u + v * v <= 1.0
        if periodic:
            px, py = px.remainder(width), py.remainder(height)
            flat = (torch.from_numpy(img)[:, None, None] * height + py) * width + px
        else:
            valid = ((px >= 0) & (px < width)) & ((py >= 0) & (py < height))
            flat = (torch.from_numpy(img)[:, None, None] * height + py) * width + px
            # Off-image pixels go to a spare slot at the end instead of being selected out (much faster).
            flat = torch.where(valid, flat, n * height * width)
        prio = torch.from_numpy(rank[img, leaf] + 1)[:, None, None] * inside
        top.scatter_reduce_(0, flat.reshape(-1), prio.reshape(-1), reduce="amax")
    # Map painting rank back to the leaf's grey level (column 0 is the background).
    by_rank = np.zeros((n, leaves + 1), dtype=np.float32)
    by_rank[:, 0] = grey[:, 0]
    np.put_along_axis(by_rank, rank + 1, grey[:, 1:], axis=1)
    canvas = torch.gather(torch.from_numpy(by_rank), 1, top[:-1].view(n, height * width))
    return _standardise(_blur(canvas.view(n, height, width))).numpy()


def _blur(img: torch.Tensor) -> torch.Tensor:
    """Separable [0.2, 0.6, 0.2] blur with replicated borders (anti-aliases hard edges)."""
    for dim in (1, 2):
        first = img.narrow(dim, 0, 1)
        last = img.narrow(dim, img.shape[dim] - 1, 1)
        before = torch.cat([first, img.narrow(dim, 0, img.shape[dim] - 1)], dim)
        after = torch.cat([img.narrow(dim, 1, img.shape[dim] - 1), last], dim)
        img = 0.6 * img + 0.2 * (before + after)
    return img


def natural_images(rng: np.random.Generator, n: int, height: int, width: int, *, exponent: float,
                   leaves_weight: float, leaves: int, radius_px: tuple[float, float], mean_luminance: float,
                   contrast_rms: float, contrast_log_sd: float) -> np.ndarray:
    """Still natural-statistics images.

    Each image is a mix of 1/f noise and dead leaves, given an RMS contrast drawn log-normally around
    ``contrast_rms`` (grey levels) and clipped to 0..255. The 1/f component is drawn on a larger canvas and
    cropped so that its periodicity does not show. Returns (n, height, width) float32 grey levels.
    """
    pad = max(8, int(radius_px[1]))
    noise = pink_noise(rng, n, height + 2 * pad, width + 2 * pad, exponent)[:, pad:pad + height, pad:pad + width]
    leaves_img = dead_leaves(rng, n, height, width, leaves, radius_px)
    mix = _mix(noise, leaves_img, leaves_weight)
    contrast = contrast_rms * np.exp(contrast_log_sd * rng.standard_normal(n))
    return _to_grey(mix, contrast[:, None, None], mean_luminance)


def drifting_movies(rng: np.random.Generator, n: int, frames: int, height: int, width: int, *, exponent: float,
                    leaves_weight: float, leaves: int, radius_px: tuple[float, float], mean_luminance: float,
                    contrast_rms: float, contrast_log_sd: float, segment_frames: int,
                    speed_px_per_frame: tuple[float, float]) -> np.ndarray:
    """Movies of natural-statistics scenes drifting at constant velocity, with cuts to new scenes.

    Scene lengths are geometric with mean ``segment_frames``; each scene is a seamlessly periodic texture on
    a canvas twice the screen size, translated with sub-pixel accuracy and cropped. Returns
    (n, frames, height, width) float32 grey levels.
    """
    ch, cw = 2 * height, 2 * width
    # Scene index of every frame: a cut after each frame with probability 1/segment_frames.
    cuts = rng.random((n, frames)) < 1.0 / segment_frames
    cuts[:, 0] = True
    scene_of_frame = np.cumsum(cuts.ravel()) - 1
    n_scenes = int(scene_of_frame[-1]) + 1
    scenes = _mix(pink_noise(rng, n_scenes, ch, cw, exponent),
                  dead_leaves(rng, n_scenes, ch, cw, leaves, radius_px, periodic=True), leaves_weight)
    speed = rng.uniform(*speed_px_per_frame, n_scenes)
    direction = rng.uniform(0, 2 * np.pi, n_scenes)
    contrast = contrast_rms * np.exp(contrast_log_sd * rng.standard_normal(n_scenes))
    starts = np.flatnonzero(cuts.ravel())
    stops = np.append(starts[1:], n * frames)
    scene_t = torch.from_numpy(scenes)
    origin = ((ch - height) // 2, (cw - width) // 2)
    movie = np.empty((n * frames, height, width), dtype=np.float32)
    for s, (start, stop) in enumerate(zip(starts, stops)):
        t = np.arange(stop - start)
        movie[start:stop] = drift_scene(scene_t[s], speed[s] * np.cos(direction[s]) * t,
                                        speed[s] * np.sin(direction[s]) * t, (height, width), origin).numpy()
    grey = _to_grey(movie, contrast[scene_of_frame][:, None, None], mean_luminance)
    return grey.reshape(n, frames, height, width)


def _mix(noise: np.ndarray, leaves_img: np.ndarray, leaves_weight: float) -> np.ndarray:
    """Mix two unit-variance components with the given variance share of the leaves; unit variance out."""
    mix = np.sqrt(1.0 - leaves_weight) * noise + np.sqrt(leaves_weight) * leaves_img
    return _standardise(torch.from_numpy(mix)).numpy()


def _to_grey(img: np.ndarray, contrast: np.ndarray, mean_luminance: float) -> np.ndarray:
    """Scale unit-variance images to grey levels in place (movies are large)."""
    img = np.asarray(img, dtype=np.float32)
    img *= contrast.astype(np.float32)
    img += np.float32(mean_luminance)
    return np.clip(img, 0.0, 255.0, out=img)


def _standardise(img: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit standard deviation per image (first axis)."""
    flat = img.reshape(img.shape[0], -1).float()
    var, mean = torch.var_mean(flat, dim=1, keepdim=True)
    return ((flat - mean) * torch.rsqrt(var.clamp_min(1e-12))).reshape(img.shape)


def _col(a: np.ndarray) -> torch.Tensor:
    """(n,) parameters as an (n, 1, 1) tensor that broadcasts over image rows and columns."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None, None]
