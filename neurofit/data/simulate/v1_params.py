"""Parameters of the mouse-V1 digital twin, all in one frozen dataclass with units in the field names/docs, and
named presets of them (``PRESETS``; datasets/simulated_v1.md gives the calibration and its sources)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from neurofit.errors import ConfigError


@dataclass(frozen=True)
class V1Params:
    """Every knob of the simulated mouse V1 (defaults: the ``calibrated`` preset, the embedded benchmark dataset).

    Screen geometry is in pixels of the 36 x 64 SENSORIUM-sized stimulus, cortex in micrometres, time in
    seconds or frames, responses in arbitrary units like deconvolved calcium traces. Pairs ``(low, high)``
    are ranges that per-neuron or per-stimulus values are drawn from.
    """

    # --- sizes -------------------------------------------------------------------------------------------
    height: int = 36
    """Stimulus height, pixels."""
    width: int = 64
    """Stimulus width, pixels."""
    train_images: int = 4000
    """Static mode: distinct training images per mouse (different for every mouse)."""
    validation_images: int = 500
    """Static mode: distinct validation images per mouse."""
    test_images: int = 100
    """Static mode: test images, identical for every mouse."""
    test_repeats: int = 10
    """Presentations of every test image or movie (oracle and ceilings need >= 2; SENSORIUM uses 10)."""
    train_movies: int = 300
    """Video mode: training movies per mouse."""
    validation_movies: int = 40
    """Video mode: validation movies per mouse."""
    test_movies: int = 10
    """Video mode: test movies, identical for every mouse."""
    frames: int = 150
    """Video mode: frames per movie (SENSORIUM 2023 scores frames after the first 50)."""
    frame_rate_hz: float = 30.0
    """Video mode: frame rate, Hz."""
    trial_interval_s: float = 0.9
    """Static mode: time between image onsets (500 ms image + blank), seconds; sets how fast behaviour drifts."""
    hold_test_behavior: bool = True
    """Show the repeats of each test image (movie) back to back as one block and hold behaviour (running, pupil,
    eye position) at the block's first trial (movie: frame by frame), so that repeats differ only by noise and
    the repeat-based oracle and FEVE are ceilings; otherwise test repeats are interleaved like all trials."""

    # --- stimuli -----------------------------------------------------------------------------------------
    mean_luminance: float = 128.0
    """Mean grey level of the 0..255 stimulus."""
    contrast_rms: float = 45.0
    """Median RMS contrast of an image, grey levels."""
    contrast_log_sd: float = 0.35
    """Standard deviation of log RMS contrast across images (natural scenes vary in contrast)."""
    spectrum_exponent: float = 1.0
    """Amplitude spectrum falls as 1/f**spectrum_exponent."""
    leaves_weight: float = 0.7
    """Share of the dead-leaves (occlusion, edges) component in the image mix; the rest is 1/f noise."""
    leaves_per_image: int = 100
    """Occluding ellipses painted per image (enough to cover it about twice)."""
    leaf_radius_px: tuple[float, float] = (2.0, 24.0)
    """Range of leaf radii, pixels; radii follow a power law (density ~ r**-3, scale invariant)."""
    segment_frames: int = 50
    """Video mode: mean frames before a cut to a new drifting scene."""
    drift_speed_px_per_frame: tuple[float, float] = (0.2, 1.5)
    """Video mode: range of scene drift speeds, pixels per frame (direction uniform)."""

    # --- cortex and receptive fields ---------------------------------------------------------------------
    field_um: float = 600.0
    """Side of the square imaged field of cortex, micrometres."""
    depth_um: tuple[float, float] = (150.0, 400.0)
    """Range of cortical depths, micrometres."""
    px_per_um: float = 0.035
    """Retinotopic magnification: screen pixels per micrometre of cortex."""
    retinotopy_rotation_deg: float = 25.0
    """Mouse-specific rotation of the cortex-to-screen map is drawn from +-this, degrees."""
    retinotopy_offset_px: tuple[float, float] = (6.0, 3.0)
    """Mouse-specific offset of the map from the screen centre is drawn from +-this (x, y), pixels."""
    rf_scatter_px: float = 1.5
    """Standard deviation of RF centres around the retinotopic map, pixels."""
    rf_sigma_px: tuple[float, float] = (2.0, 4.5)
    """Range (log-uniform) of the Gabor envelope standard deviation, pixels."""
    rf_cycles_per_sigma: tuple[float, float] = (0.2, 0.55)
    """Range of spatial frequency times envelope sigma (how many subfields an RF has)."""
    rf_aspect: tuple[float, float] = (1.0, 1.8)
    """Range of envelope elongation along the bars."""
    complex_fraction: float = 0.5
    """Fraction of complex cells (quadrature energy); the rest are simple cells (rectified linear)."""

    # --- normalisation and coupling ----------------------------------------------------------------------
    norm_exponent: float = 2.0
    """Exponent n of divisive normalisation r = d**n / (sigma**n + sum_j P_ij d_j**n)."""
    norm_sigma: tuple[float, float] = (0.4, 1.2)
    """Range of the semi-saturation constant sigma, in units of the drive's natural-image standard deviation."""
    norm_length_um: float = 150.0
    """Gaussian length scale of the normalisation pool over cortical distance, micrometres."""
    coupling_length_um: float = 80.0
    """Gaussian length scale of excitatory lateral coupling, micrometres."""
    inhibition_length_um: float = 220.0
    """Gaussian length scale of the weaker, broader inhibitory coupling, micrometres."""
    inhibition_ratio: float = 0.15
    """Peak inhibitory weight relative to the peak excitatory weight."""
    coupling_strength: float = 0.6
    """Largest summed absolute coupling input of any neuron (< 1 makes the recurrence a stable contraction)."""
    coupling_steps: int = 2
    """Static mode: recurrent steps r <- relu(u + C r)."""
    coupling_structure: str = "distance"
    """Planted lateral coupling (``coupling.py``): ``distance`` (dense; excitatory centre, inhibitory surround, by
    cortical distance) or ``tuning`` (sparse, positive, like-to-like by orientation preference, independent of
    distance)."""
    coupling_density: float = 0.03
    """``tuning`` structure: mean fraction of ordered neuron pairs that are connected."""
    coupling_tuning_kappa: float = 2.0
    """``tuning`` structure: connection probability ~ exp(kappa cos 2(theta_i - theta_j)) (0: random graph)."""

    # --- behaviour ---------------------------------------------------------------------------------------
    run_bout_s: float = 12.0
    """Mean duration of a running bout, seconds."""
    rest_bout_s: float = 20.0
    """Mean duration of a stationary period, seconds."""
    run_speed_cm_s: float = 12.0
    """Median running speed during a bout, cm/s."""
    pupil_diameter_px: float = 20.0
    """Resting pupil diameter, camera pixels."""
    pupil_running_px: float = 8.0
    """Pupil dilation at full arousal from running, camera pixels."""
    pupil_center_sd_px: float = 3.0
    """Standard deviation of eye position (pupil centre), camera pixels."""
    pupil_center_mean_px: tuple[float, float] = (320.0, 240.0)
    """Mean eye position (x, y), camera pixels."""
    shift_px_per_camera_px: float = 0.5
    """How far RFs move on the screen per camera pixel of eye movement."""
    run_gain: tuple[float, float] = (0.3, 0.2)
    """Mean and standard deviation across neurons of the log-gain at full running."""
    pupil_gain: tuple[float, float] = (0.15, 0.1)
    """Mean and standard deviation across neurons of the log-gain per ``pupil_running_px`` of dilation."""

    # --- responses and noise -----------------------------------------------------------------------------
    response_scale: tuple[float, float] = (1.0, 0.5)
    """Median and log standard deviation across neurons of the mean response (arbitrary units)."""
    baseline_fraction: tuple[float, float] = (0.05, 0.4)
    """Range of the stimulus-independent response as a fraction of the mean response."""
    event_size: tuple[float, float] = (0.8, 35.0)
    """Range (log-uniform) of the calcium event size relative to the neuron's mean response; small events
    mean many events per response and high reliability, large events unreliable neurons (calibrated so that
    single-trial r / r to average of a prediction is as in SENSORIUM 2022)."""
    event_shape: float = 1.0
    """Gamma shape of one event's amplitude (1: exponential amplitudes, coefficient of variation 1)."""
    shared_gain_cv: float = 0.2
    """Coefficient of variation of the unobserved gain shared by all neurons on a trial (or frame)."""
    shared_gain_tau_s: float = 0.5
    """Video mode: time constant of the shared gain fluctuation, seconds."""
    fluctuation_cv: float = 0.3
    """Coefficient of variation of a private multiplicative fluctuation of every neuron's drive on every trial
    (video: frame), mean 1 (0: none, the simulator before issue #22)."""
    fluctuation_through_coupling: bool = True
    """Private fluctuations enter before the lateral coupling, so they propagate to coupled neurons (noise
    correlations follow the coupling and, in movies, the previous frame's activity drives coupled neurons);
    false: they multiply each neuron's coupled activity and stay private."""
    fluctuation_tau_s: float = 0.1
    """Video mode: time constant of the private fluctuations (AR(1) in log over frames), seconds."""

    # --- temporal dynamics (video mode) ------------------------------------------------------------------
    kernel_frames: int = 10
    """Length of the causal temporal kernel, frames."""
    kernel_tau_s: tuple[float, float] = (0.02, 0.045)
    """Range of the time constant of the biphasic temporal kernel, seconds (peaks near 2 tau)."""
    kernel_biphasic: tuple[float, float] = (0.3, 0.8)
    """Range of the negative lobe's weight relative to the positive lobe."""
    adaptation_tau_s: float = 0.4
    """Time constant of the adaptation trace (recent own activity), seconds."""
    adaptation_strength: tuple[float, float] = (0.3, 1.5)
    """Range of divisive adaptation strength per unit of normalised activity."""

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def with_overrides(cls, preset: str = "calibrated", **overrides: Any) -> V1Params:
        """A preset's values with some fields replaced; unknown presets or names raise ``ConfigError``."""
        if preset not in PRESETS:
            raise ConfigError(f"simulate v1: unknown preset {preset!r}; known: {sorted(PRESETS)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"simulate v1: unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**{**PRESETS[preset], **overrides})


#: Named parameter sets, as changes from the defaults. ``calibrated`` (the defaults): noise and reliability as in
#: SENSORIUM 2022 and behaviour held over each block of test repeats (issue #17), private fluctuations passing
#: through the coupling (issue #22); ``calibrated-noise-free-coupling``: the calibrated defaults before issue #22
#: (coupling acts on noise-free drives only), number for number; ``high-snr``: the defaults before issue #17, far
#: less noisy, with test repeats interleaved, so earlier results reproduce exactly.
PRESETS: dict[str, dict[str, Any]] = {
    "calibrated": {},
    "calibrated-noise-free-coupling": {"fluctuation_cv": 0.0},
    "high-snr": {"hold_test_behavior": False, "event_size": (0.03, 8.0), "event_shape": 2.0,
                 "fluctuation_cv": 0.0},
}
#: Values of ``coupling_structure``.
COUPLING_STRUCTURES = ("distance", "tuning")


def _check(p: V1Params) -> None:
    def fail(field: str, why: str) -> None:
        raise ConfigError(f"simulate v1: {field}={getattr(p, field)!r} {why}")

    positive_ints = ("height", "width", "train_images", "validation_images", "test_images", "train_movies",
                     "validation_movies", "test_movies", "frames", "leaves_per_image", "segment_frames",
                     "kernel_frames", "coupling_steps")
    for field in positive_ints:
        value = getattr(p, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(field, "must be a positive integer")
    for field in ("hold_test_behavior", "fluctuation_through_coupling"):
        if not isinstance(getattr(p, field), bool):
            fail(field, "must be true or false")
    if p.coupling_structure not in COUPLING_STRUCTURES:
        fail("coupling_structure", f"must be one of {COUPLING_STRUCTURES}")
    if not 0 < p.coupling_density <= 1:
        fail("coupling_density", "must lie in (0, 1]")
    if isinstance(p.test_repeats, bool) or not isinstance(p.test_repeats, int) or p.test_repeats < 2:
        fail("test_repeats", "must be an integer >= 2 (oracle correlations need repeats)")
    if p.height < 8 or p.width < 8:
        fail("height" if p.height < 8 else "width", "must be at least 8 pixels")
    positive = ("frame_rate_hz", "trial_interval_s", "mean_luminance", "contrast_rms", "field_um", "px_per_um",
                "norm_exponent", "norm_length_um", "coupling_length_um", "inhibition_length_um", "run_bout_s",
                "rest_bout_s", "run_speed_cm_s", "pupil_diameter_px", "shared_gain_tau_s", "adaptation_tau_s",
                "event_shape", "shift_px_per_camera_px", "pupil_center_sd_px", "fluctuation_tau_s")
    for field in positive:
        if not getattr(p, field) > 0:
            fail(field, "must be > 0")
    nonneg = ("contrast_log_sd", "spectrum_exponent", "rf_scatter_px", "retinotopy_rotation_deg",
              "inhibition_ratio", "pupil_running_px", "shared_gain_cv", "fluctuation_cv", "coupling_tuning_kappa")
    for field in nonneg:
        if not getattr(p, field) >= 0:
            fail(field, "must be >= 0")
    for field in ("leaves_weight", "complex_fraction"):
        if not 0 <= getattr(p, field) <= 1:
            fail(field, "must lie in [0, 1]")
    if not 0 <= p.coupling_strength < 1:
        fail("coupling_strength", "must lie in [0, 1) for a stable recurrence")
    ranges = ("leaf_radius_px", "drift_speed_px_per_frame", "depth_um", "rf_sigma_px", "rf_cycles_per_sigma",
              "rf_aspect", "norm_sigma", "baseline_fraction", "event_size", "kernel_tau_s", "kernel_biphasic",
              "adaptation_strength")
    for field in ranges:
        low, high = _pair(p, field, fail)
        if not 0 <= low <= high:
            fail(field, "must be a (low, high) pair with 0 <= low <= high")
    for field in ("leaf_radius_px", "rf_sigma_px", "event_size", "kernel_tau_s", "norm_sigma"):
        if getattr(p, field)[0] <= 0:
            fail(field, "must have a positive lower end")
    for field in ("run_gain", "pupil_gain", "response_scale"):
        _, spread = _pair(p, field, fail)
        if spread < 0:
            fail(field, "must be a (centre, spread) pair with spread >= 0")
    if p.response_scale[0] <= 0:
        fail("response_scale", "must have a positive median")
    for field in ("retinotopy_offset_px", "pupil_center_mean_px"):
        _pair(p, field, fail)


def _pair(p: V1Params, field: str, fail) -> tuple[float, float]:
    value = getattr(p, field)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        fail(field, "must be a pair of numbers")
    return float(value[0]), float(value[1])
