"""One mouse's simulated V1 population: cortical positions, retinotopic Gabor RFs, pools, coupling, gains."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofit.data.simulate.coupling import draw_coupling
from neurofit.data.simulate.v1_params import V1Params


@dataclass(frozen=True)
class Population:
    """Fixed per-neuron parameters of one recording (N neurons, stimulus H x W pixels).

    Attributes:
        x_um, y_um, z_um: (N,) cortical position, micrometres.
        retinotopy: (2, 3) affine map from cortical (x_um, y_um, 1) to screen (x_px, y_px) RF centre.
        rf_center_px: (N, 2) RF centre (x, y) in pixels at the mean eye position.
        orientation_rad, sf_cpp, phase_rad, sigma_px, aspect: (N,) Gabor orientation (radians, direction of
            the carrier), spatial frequency (cycles/pixel), phase (radians), envelope sigma (pixels) and
            elongation along the bars.
        complex_cell: (N,) True for complex cells (quadrature energy), False for simple cells.
        filters: (N, 2, H, W) float32 zero-mean unit-norm Gabor pair (even, odd); simple cells use the first.
        norm_sigma: (N,) semi-saturation constant, in units of the drive's natural-image standard deviation.
        norm_pool: (N, N) normalisation weights, Gaussian in cortical distance, rows summing to 1.
        coupling: (N, N) lateral coupling (row i receives from column j), zero diagonal, largest absolute
            row sum ``coupling_strength``.
        run_gain, pupil_gain: (N,) log-gain at full running / per standard deviation of pupil size.
        response_scale: (N,) mean response, arbitrary units; baseline_fraction: (N,) its stimulus-independent
            part; event_size: (N,) calcium event size relative to ``response_scale``.
        kernel: (N, K) causal temporal kernel over frames (video mode), unit L2 norm, lag 0 first.
        adaptation_strength: (N,) divisive adaptation strength (video mode).
    """

    x_um: np.ndarray
    y_um: np.ndarray
    z_um: np.ndarray
    retinotopy: np.ndarray
    rf_center_px: np.ndarray
    orientation_rad: np.ndarray
    sf_cpp: np.ndarray
    phase_rad: np.ndarray
    sigma_px: np.ndarray
    aspect: np.ndarray
    complex_cell: np.ndarray
    filters: np.ndarray
    norm_sigma: np.ndarray
    norm_pool: np.ndarray
    coupling: np.ndarray
    run_gain: np.ndarray
    pupil_gain: np.ndarray
    response_scale: np.ndarray
    baseline_fraction: np.ndarray
    event_size: np.ndarray
    kernel: np.ndarray
    adaptation_strength: np.ndarray


def draw_population(rng: np.random.Generator, temporal_rng: np.random.Generator, neurons: int,
                    p: V1Params, structure_rng: np.random.Generator) -> Population:
    """Draw one mouse's neurons from the generative family.

    ``rng`` draws everything a static recording uses; ``temporal_rng`` draws the video-only parameters, so
    the same seed gives the same neurons with and without ``video``; ``structure_rng`` draws which pairs
    the ``tuning`` coupling structure connects (``coupling.py``), so the neurons are the same whatever
    coupling is planted.
    """
    x_um = rng.uniform(0, p.field_um, neurons)
    y_um = rng.uniform(0, p.field_um, neurons)
    z_um = rng.uniform(*p.depth_um, neurons)
    retinotopy = _retinotopy(rng, p)
    centre = (retinotopy @ np.stack([x_um, y_um, np.ones(neurons)])).T
    centre = centre + p.rf_scatter_px * rng.standard_normal((neurons, 2))
    orientation = rng.uniform(0, np.pi, neurons)
    sigma = np.exp(rng.uniform(*np.log(p.rf_sigma_px), neurons))
    sf = rng.uniform(*p.rf_cycles_per_sigma, neurons) / sigma
    phase = rng.uniform(0, 2 * np.pi, neurons)
    aspect = rng.uniform(*p.rf_aspect, neurons)
    complex_cell = rng.random(neurons) < p.complex_fraction
    distance = _distance(x_um, y_um, z_um)
    pool = np.exp(-0.5 * (distance / p.norm_length_um) ** 2)
    pool /= pool.sum(1, keepdims=True)
    log_scale = np.log(p.response_scale[0]) + p.response_scale[1] * rng.standard_normal(neurons)
    return Population(
        x_um=x_um, y_um=y_um, z_um=z_um, retinotopy=retinotopy, rf_center_px=centre,
        orientation_rad=orientation, sf_cpp=sf, phase_rad=phase, sigma_px=sigma, aspect=aspect,
        complex_cell=complex_cell,
        filters=gabor_pairs(centre, orientation, sf, phase, sigma, aspect, p.height, p.width),
        norm_sigma=rng.uniform(*p.norm_sigma, neurons),
        norm_pool=pool,
        coupling=draw_coupling(rng, structure_rng, distance, orientation, p),
        run_gain=p.run_gain[0] + p.run_gain[1] * rng.standard_normal(neurons),
        pupil_gain=p.pupil_gain[0] + p.pupil_gain[1] * rng.standard_normal(neurons),
        response_scale=np.exp(log_scale),
        baseline_fraction=rng.uniform(*p.baseline_fraction, neurons),
        event_size=np.exp(rng.uniform(*np.log(p.event_size), neurons)),
        kernel=temporal_kernels(temporal_rng, neurons, p),
        adaptation_strength=temporal_rng.uniform(*p.adaptation_strength, neurons),
    )


def gabor_pairs(centre: np.ndarray, orientation: np.ndarray, sf: np.ndarray, phase: np.ndarray,
                sigma: np.ndarray, aspect: np.ndarray, height: int, width: int) -> np.ndarray:
    """Even/odd Gabor pairs on the pixel grid, each with zero mean (no response to luminance) and unit norm.

    Args:
        centre: (N, 2) centres (x, y) in pixels; the other arguments are (N,) as in ``Population``.
    Returns:
        (N, 2, height, width) float32.
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx = xs[None] - centre[:, 0, None, None]
    dy = ys[None] - centre[:, 1, None, None]
    cos_o, sin_o = np.cos(orientation)[:, None, None], np.sin(orientation)[:, None, None]
    along = dx * cos_o + dy * sin_o  # across the bars, the carrier direction
    across = -dx * sin_o + dy * cos_o  # along the bars, where the envelope is elongated
    s = sigma[:, None, None]
    env = np.exp(-0.5 * (along**2 + (across / aspect[:, None, None]) ** 2) / s**2)
    carrier = 2 * np.pi * sf[:, None, None] * along + phase[:, None, None]
    pair = np.stack([env * np.cos(carrier), env * np.sin(carrier)], axis=1)
    # Project out the envelope so a uniform luminance change drives nothing (low-frequency Gabors have DC).
    env_sum = env.sum((1, 2))[:, None, None, None]
    pair -= env[:, None] * (pair.sum((2, 3), keepdims=True) / np.maximum(env_sum, 1e-12))
    pair /= np.maximum(np.sqrt((pair**2).sum((2, 3), keepdims=True)), 1e-12)
    return pair.astype(np.float32)


def temporal_kernels(rng: np.random.Generator, neurons: int, p: V1Params) -> np.ndarray:
    """Biphasic causal kernels k(t) = f(t; tau) - b f(t; 2 tau) with f(t; tau) = (t/tau)^2 exp(-t/tau).

    Returns (N, kernel_frames), lag 0 first, each with unit L2 norm.
    """
    tau = rng.uniform(*p.kernel_tau_s, neurons)[:, None]
    biphasic = rng.uniform(*p.kernel_biphasic, neurons)[:, None]
    # Half-frame offset: a frame's light acts over its whole duration, so lag 0 already drives a little.
    t = (np.arange(p.kernel_frames)[None, :] + 0.5) / p.frame_rate_hz
    lobe = (t / tau) ** 2 * np.exp(-t / tau)
    slow = (t / (2 * tau)) ** 2 * np.exp(-t / (2 * tau))
    kernel = lobe / lobe.max(1, keepdims=True) - biphasic * slow / slow.max(1, keepdims=True)
    return kernel / np.sqrt((kernel**2).sum(1, keepdims=True))


def _retinotopy(rng: np.random.Generator, p: V1Params) -> np.ndarray:
    """Mouse-specific affine cortex-to-screen map: rotation, magnification and offset from the screen centre."""
    angle = np.deg2rad(rng.uniform(-p.retinotopy_rotation_deg, p.retinotopy_rotation_deg))
    rotation = p.px_per_um * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    offset = rng.uniform(-1, 1, 2) * np.asarray(p.retinotopy_offset_px)
    screen_centre = np.array([(p.width - 1) / 2, (p.height - 1) / 2])
    translation = screen_centre + offset - rotation @ np.full(2, p.field_um / 2)
    return np.concatenate([rotation, translation[:, None]], axis=1)


def _distance(x_um: np.ndarray, y_um: np.ndarray, z_um: np.ndarray) -> np.ndarray:
    pos = np.stack([x_um, y_um, z_um], axis=1)
    return np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
