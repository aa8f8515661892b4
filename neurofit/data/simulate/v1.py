"""Mouse-V1 digital twin: the embedded default dataset of neurofit and the ground truth for later work.

Every mouse (recording) gets its own neurons drawn from one generative family (``population.py``): cortical
positions, retinotopic Gabor RFs (simple and complex cells), divisive normalisation over a distance-weighted
pool, lateral coupling (``coupling.py``: by cortical distance, or sparse like-to-like by tuning), and
running/pupil gain. Stimuli are natural-statistics images (1/f noise mixed with dead leaves, ``images.py``), or
drifting movies at 30 Hz with ``video=True``. Eye position moves every RF on the screen. Each neuron's drive
carries a private trial-to-trial (movies: frame-to-frame) fluctuation which, by default, enters before the
lateral coupling, so coupled neurons share it (noise correlations follow the coupling; in movies the previous
frame's activity drives coupled neurons); responses are those latent rates times a shared trial gain, with
private calcium-event noise (``noise.py``), so reliabilities span a wide range.

Test stimuli are the same for every mouse and repeated ``test_repeats`` times; train and validation stimuli
differ per mouse. Trials are stored in presentation order, tiers interleaved, with behaviour drifting slowly
across the session; by default (``hold_test_behavior``) the repeats of a test stimulus form one block that
holds its first trial's behaviour, so the repeat-based oracle and FEVE are ceilings. ``stimulus_id``: test
stimuli are 0 .. n_test - 1 in every mouse; the train/validation stimuli of mouse m are (m + 1) * 1e6 + k,
unique across mice.

The ``truth`` Dataset per recording has the noise-free expected ``rates`` (behaviour effects included, no
fluctuations), ``coupling`` and ``norm_pool`` (neuron, neuron_key), the RFs (``rf_center_px``, ``rf_filters``
...), ``cell_type``, gains and noise parameters; its ``neuron`` order matches the recording's. The attribute
``coupling_structure`` (JSON) says what coupling was planted: structure, sign, density, what it depends on and
whether the fluctuations pass through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from threadpoolctl import threadpool_limits

from neurofit.data.recording import SENSORIUM_BEHAVIOR_CHANNELS, make_recording
from neurofit.data.simulate.behavior import Behavior, session_behavior
from neurofit.data.simulate.coupling import coupling_summary
from neurofit.data.simulate.images import drifting_movies, natural_images
from neurofit.data.simulate.noise import calcium_events, private_fluctuations, shared_gain
from neurofit.data.simulate.population import Population, draw_population
from neurofit.data.simulate.responses import (
    Calibration,
    couple_static,
    dynamics,
    linear_responses,
    normalised_drive,
    temporal_filter,
    to_rates,
)
from neurofit.data.simulate.v1_params import V1Params
from neurofit.data.store import StoreWriter, attrs_json
from neurofit.errors import ConfigError

SOURCE = "neurofit.simulate.v1"
#: Stimulus-id block per mouse for train/validation stimuli (test stimuli use ids below it).
ID_BLOCK = 1_000_000
#: Calibration stimuli (shared by all mice) that set each neuron's units; not part of any recording.
CALIBRATION_IMAGES = 500
CALIBRATION_MOVIES = 8
#: Depth of the layer 2/3 - layer 4 border in mouse V1, micrometres.
L4_TOP_UM = 350.0


def simulate_v1(recordings: int = 2, neurons: int = 300, video: bool = False, seed: int = 0,
                preset: str = "calibrated", **overrides) -> dict[str, tuple[xr.Dataset, xr.Dataset]]:
    """Simulate mouse-V1 recordings with ground truth.

    Args:
        recordings: number of mice; recording names are "mouse0", "mouse1", ...
        neurons: neurons per recording.
        video: drifting movies with responses per frame instead of still images.
        seed: everything is a deterministic function of the seed (mouse m's data do not depend on how many
            recordings are simulated, nor its neurons on ``video``).
        preset: name in ``PRESETS`` whose parameters to start from: ``calibrated`` (noise and reliability as in
            SENSORIUM 2022) or ``high-snr`` (the far less noisy defaults before issue #17).
        overrides: fields of ``V1Params`` to change (unknown names or bad values raise ``ConfigError``).
    Returns:
        name -> (Recording, truth). Static: ``stimulus`` (trial, 36, 64), ``responses`` (trial, neuron);
        video: ``stimulus`` (trial, frame, 36, 64), ``responses`` (trial, frame, neuron).
    """
    return dict(iter_v1(recordings, neurons, video, seed, preset, **overrides))


def simulate_v1_store(out: str | os.PathLike, *, recordings: int = 2, neurons: int = 300, video: bool = False,
                      seed: int = 0, preset: str = "calibrated", overwrite: bool = False, **overrides) -> Path:
    """Simulate and write recordings "mouse0", "mouse1", ... (with ``truth`` groups) to a new zarr store.

    Recordings are simulated and written one at a time, so memory holds one mouse. The write is atomic.
    Returns the store path.
    """
    recs = iter_v1(recordings, neurons, video, seed, preset, **overrides)
    with StoreWriter(out, overwrite=overwrite) as writer:
        for name, (ds, truth) in recs:
            writer.add(name, ds, truth=truth)
    return Path(out)


def iter_v1(recordings: int = 2, neurons: int = 300, video: bool = False, seed: int = 0,
            preset: str = "calibrated", **overrides) -> Iterator[tuple[str, tuple[xr.Dataset, xr.Dataset]]]:
    """Like ``simulate_v1`` but yields (name, (recording, truth)) one mouse at a time.

    Arguments are checked now, before the first mouse is simulated.
    """
    params = V1Params.with_overrides(preset, **overrides)
    for label, value, low in (("recordings", recordings, 1), ("neurons", neurons, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"simulate v1: {label}={value!r} must be an integer >= {low}")
    return _iter_mice(int(recordings), int(neurons), bool(video), int(seed), params)


def _iter_mice(recordings: int, neurons: int, video: bool, seed: int,
               p: V1Params) -> Iterator[tuple[str, tuple[xr.Dataset, xr.Dataset]]]:
    shared_ss, mice_ss = np.random.SeedSequence(seed).spawn(2)
    test_ss, calibration_ss = shared_ss.spawn(2)
    n_test = p.test_movies if video else p.test_images
    with _one_thread():
        test = _stimuli(np.random.default_rng(test_ss), n_test, p, video)
        calibration = _stimuli(np.random.default_rng(calibration_ss),
                               CALIBRATION_MOVIES if video else CALIBRATION_IMAGES, p, video)
    for m, mouse_ss in enumerate(mice_ss.spawn(recordings)):
        with _one_thread():
            mouse = _simulate_mouse(m, neurons, video, seed, p, mouse_ss, test, calibration)
        yield f"mouse{m}", mouse


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch and BLAS on one thread, restoring the settings after. The simulator's arrays are small: on a
    shared 2-core machine one thread was twice as fast as two competing ones, and it leaves a core to others."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


def _stimuli(rng: np.random.Generator, n: int, p: V1Params, video: bool) -> np.ndarray:
    """(n, H, W) images or (n, frames, H, W) movies, grey levels."""
    common = dict(exponent=p.spectrum_exponent, leaves_weight=p.leaves_weight, leaves=p.leaves_per_image,
                  radius_px=p.leaf_radius_px, mean_luminance=p.mean_luminance, contrast_rms=p.contrast_rms,
                  contrast_log_sd=p.contrast_log_sd)
    if video:
        return drifting_movies(rng, n, p.frames, p.height, p.width, segment_frames=p.segment_frames,
                               speed_px_per_frame=p.drift_speed_px_per_frame, **common)
    return natural_images(rng, n, p.height, p.width, **common)


def _simulate_mouse(m: int, neurons: int, video: bool, seed: int, p: V1Params, mouse_ss: np.random.SeedSequence,
                    test: np.ndarray, calibration: np.ndarray) -> tuple[xr.Dataset, xr.Dataset]:
    # Separate streams: changing the number of trials never changes the neurons, and vice versa.
    # Streams added later come last: spawn(k)'s first children do not depend on k, so earlier data reproduce.
    neuron_ss, temporal_ss, stimulus_ss, behavior_ss, noise_ss, structure_ss, fluctuation_ss = mouse_ss.spawn(7)
    pop = draw_population(np.random.default_rng(neuron_ss), np.random.default_rng(temporal_ss), neurons, p,
                          np.random.default_rng(structure_ss))
    calib = _calibrate(pop, calibration, p, video)

    stim_rng = np.random.default_rng(stimulus_ss)
    n_train, n_val = (p.train_movies, p.validation_movies) if video else (p.train_images, p.validation_images)
    n_own, n_test = n_train + n_val, len(test)
    own = _stimuli(stim_rng, n_own, p, video)
    which, shown = _presentation_order(stim_rng, n_own, n_test, p)
    tier = np.where(which < n_train, "train", np.where(which < n_own, "validation", "test"))
    stimulus_id = np.where(which < n_own, (m + 1) * ID_BLOCK + which, which - n_own).astype(np.int64)
    stimulus = _gather(own, test, which)
    n_trials = len(which)

    dt_s = 1.0 / p.frame_rate_hz if video else p.trial_interval_s
    lead = (n_trials, p.frames) if video else (n_trials,)
    beh = session_behavior(np.random.default_rng(behavior_ss), int(np.prod(lead)), dt_s, p)
    beh = beh.take((shown[:, None] * p.frames + np.arange(p.frames)).ravel() if video else shown)
    frames = stimulus.reshape(-1, p.height, p.width)
    linear = linear_responses(frames, beh.eye_shift_px, pop.filters, p.mean_luminance)
    if video:
        linear = temporal_filter(linear.reshape(*lead, neurons, 2), pop.kernel)
    u = normalised_drive(linear, pop, calib.linear_sd, p.norm_exponent)
    activity = _couple(u, pop, p, video)
    log_gain = beh.log_gain(pop.run_gain, pop.pupil_gain).reshape(activity.shape)
    rates = to_rates(activity, log_gain, pop, calib.mean_activity)
    latent = rates
    if p.fluctuation_cv > 0:
        fluctuation = private_fluctuations(np.random.default_rng(fluctuation_ss), lead, neurons, p.fluctuation_cv,
                                           dt_s if video else None, p.fluctuation_tau_s)
        noisy = (_couple(u * fluctuation, pop, p, video) if p.fluctuation_through_coupling
                 else activity * fluctuation)
        latent = to_rates(noisy, log_gain, pop, calib.mean_activity)

    noise_rng = np.random.default_rng(noise_ss)
    gain = shared_gain(noise_rng, int(np.prod(lead)), p.shared_gain_cv, dt_s if video else None,
                       p.shared_gain_tau_s).reshape(lead)
    responses = calcium_events(noise_rng, latent * gain[..., None], pop.event_size * pop.response_scale,
                               p.event_shape)

    name = f"mouse{m}"
    ds = make_recording(
        stimulus, responses, name=name, source=SOURCE, unit_id=np.arange(neurons, dtype=np.int64),
        x_um=pop.x_um, y_um=pop.y_um, z_um=pop.z_um, tier=tier, stimulus_id=stimulus_id,
        behavior=beh.channels().reshape(*lead, 3), behavior_channels=SENSORIUM_BEHAVIOR_CHANNELS,
        pupil_center=beh.pupil_center.reshape(*lead, 2),
        frame_rate_hz=p.frame_rate_hz if video else None,
        neuron_coords={"area": np.full(neurons, "V1"), "layer": np.where(pop.z_um < L4_TOP_UM, "L2/3", "L4")},
        trial_coords={"trial_idx": np.arange(n_trials, dtype=np.int64)},
        attrs={"seed": seed, "mouse_index": m},
    )
    return ds, _truth(ds, pop, rates, gain, beh, lead, p, seed, video)


def _presentation_order(rng: np.random.Generator, n_own: int, n_test: int,
                        p: V1Params) -> tuple[np.ndarray, np.ndarray]:
    """Trials in presentation order over one session.

    Returns per trial the stimulus index (< n_own: the mouse's own train/validation stimuli, else n_own + test
    index) and the trial whose behaviour it shows: itself, or with ``hold_test_behavior`` the first trial of its
    block of test repeats. Own stimuli and test repeats (or whole test blocks) are interleaved at random.
    """
    if not p.hold_test_behavior:
        which = np.concatenate([np.arange(n_own), n_own + np.repeat(np.arange(n_test), p.test_repeats)])
        return which[rng.permutation(len(which))], np.arange(len(which))
    unit = rng.permutation(n_own + n_test)
    size = np.where(unit < n_own, 1, p.test_repeats)
    return np.repeat(unit, size), np.repeat(np.cumsum(size) - size, size)


def _gather(own: np.ndarray, test: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Stack stimuli in presentation order; indices >= len(own) refer to ``test`` (avoids a joined copy)."""
    out = np.empty((len(which),) + own.shape[1:], dtype=np.float32)
    is_own = which < len(own)
    out[is_own] = own[which[is_own]]
    out[~is_own] = test[which[~is_own] - len(own)]
    return out


def _calibrate(pop: Population, calibration: np.ndarray, p: V1Params, video: bool) -> Calibration:
    """Put each neuron in natural-stimulus units using the shared calibration stimuli (no eye shift, unit gain)."""
    flat = calibration.reshape(-1, p.height, p.width)
    linear = linear_responses(flat, np.zeros((len(flat), 2)), pop.filters, p.mean_luminance)
    if video:
        linear = temporal_filter(linear.reshape(len(calibration), p.frames, -1, 2), pop.kernel)
    axes = tuple(range(linear.ndim - 2))
    linear_sd = np.sqrt(0.5 * (linear**2).sum(-1).mean(axes)).astype(np.float64)
    linear_sd = np.maximum(linear_sd, 1e-6)
    activity = _couple(normalised_drive(linear, pop, linear_sd, p.norm_exponent), pop, p, video)
    return Calibration(linear_sd=linear_sd, mean_activity=np.maximum(activity.mean(axes), 1e-6))


def _couple(u: np.ndarray, pop: Population, p: V1Params, video: bool) -> np.ndarray:
    """Normalised drive (trial, [frame,] N) -> activity after the lateral coupling (movies: with the dynamics
    and adaptation over frames)."""
    if video:
        return dynamics(u, pop, _adaptation_decay(p))
    return couple_static(u, pop.coupling, p.coupling_steps)


def _adaptation_decay(p: V1Params) -> float:
    """Per-frame decay of the adaptation trace."""
    return float(np.exp(-1.0 / (p.frame_rate_hz * p.adaptation_tau_s)))


def _truth(ds: xr.Dataset, pop: Population, rates: np.ndarray, gain: np.ndarray, beh: Behavior,
           lead: tuple[int, ...], p: V1Params, seed: int, video: bool) -> xr.Dataset:
    """Ground truth aligned with the recording: same ``neuron`` order, ``neuron_key`` for matrices."""
    lead_dims = ("trial", "frame") if video else ("trial",)
    neuron = ("neuron",)
    data_vars = {
        "rates": (lead_dims + neuron, rates),
        "shared_gain": (lead_dims, gain.astype(np.float32)),
        "eye_shift_px": (lead_dims + ("screen_axis",), beh.eye_shift_px.reshape(*lead, 2).astype(np.float32)),
        "coupling": (("neuron", "neuron_key"), pop.coupling.astype(np.float32)),
        "norm_pool": (("neuron", "neuron_key"), pop.norm_pool.astype(np.float32)),
        "rf_center_px": (("neuron", "screen_axis"), pop.rf_center_px),
        "rf_filters": (("neuron", "quadrature", "height", "width"), pop.filters),
        "rf_orientation_rad": (neuron, pop.orientation_rad),
        "rf_spatial_frequency_cpp": (neuron, pop.sf_cpp),
        "rf_phase_rad": (neuron, pop.phase_rad),
        "rf_sigma_px": (neuron, pop.sigma_px),
        "rf_aspect": (neuron, pop.aspect),
        "cell_type": (neuron, np.where(pop.complex_cell, "complex", "simple")),
        "norm_sigma": (neuron, pop.norm_sigma),
        "run_gain": (neuron, pop.run_gain),
        "pupil_gain": (neuron, pop.pupil_gain),
        "response_scale": (neuron, pop.response_scale),
        "baseline_fraction": (neuron, pop.baseline_fraction),
        "event_size": (neuron, pop.event_size),
    }
    if video:
        data_vars["temporal_kernel"] = (("neuron", "lag"), pop.kernel)
        data_vars["adaptation_strength"] = (neuron, pop.adaptation_strength)
    unit_id = ds["unit_id"].values
    coords = {
        "unit_id": ("neuron", unit_id),
        "neuron_key": ("neuron_key", unit_id),
        "x_um": ("neuron", pop.x_um), "y_um": ("neuron", pop.y_um), "z_um": ("neuron", pop.z_um),
        "screen_axis": ("screen_axis", np.array(["x", "y"])),
        "quadrature": ("quadrature", np.array(["even", "odd"])),
        "tier": ("trial", ds["tier"].values),
        "stimulus_id": ("trial", ds["stimulus_id"].values),
    }
    attrs = {"name": ds.attrs["name"], "source": SOURCE, "seed": seed,
             "retinotopy_px_from_um": attrs_json(pop.retinotopy), "params": attrs_json(dataclasses.asdict(p)),
             "coupling_structure": attrs_json(coupling_summary(pop.coupling, p))}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
