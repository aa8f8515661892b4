"""Settings of the in-silico experiments and their defaults, in one light module (no torch) so that the
command line can show the defaults without loading a model stack."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProbeSettings:
    """How stimuli reach the model. phases: samples of one cycle of a still grating (static models; >= 3);
    batch_size: model frames per call. Video models: temporal_frequencies of the drifting gratings, Hz;
    blank_frames of mean grey before every stimulus (the recurrent state leaves its zero start);
    flash_frames an image is shown for; settle_frames after a grating's onset before its analysis_frames
    (choose them so that every frequency makes whole cycles: 30 frames at 30 Hz for 1, 2, 4, 8 Hz)."""

    phases: int = 4
    batch_size: int = 256
    temporal_frequencies: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    blank_frames: int = 10
    flash_frames: int = 10
    settle_frames: int = 10
    analysis_frames: int = 30


@dataclass(frozen=True)
class MEISettings:
    """starts: random starts per neuron; iterations: gradient steps; step_size: first step as a fraction of
    the norm (> 0); blur_sigma_px: Gaussian blur of the gradient, pixels (0: none); norm: L2 norm of the
    contrast image, grey levels (None: ``StimulusStats.disc_norm()``); seed: of the starts."""

    starts: int = 3
    iterations: int = 20
    step_size: float = 0.3
    blur_sigma_px: float = 1.0
    norm: float | None = None
    seed: int = 0


def _log_grid(low: float, high: float, n: int, digits: int = 4) -> tuple[float, ...]:
    return tuple(round(low * (high / low) ** (i / (n - 1)), digits) for i in range(n))


@dataclass(frozen=True)
class TuningSettings:
    """orientations: equally spaced in [0, pi); spatial_frequencies: cycles/pixel (default 10 from 0.025 to
    0.35, around the simulator's 0.04-0.28); sizes_px: window diameters of the size tuning, pixels, ascending
    (the largest covers a 36 x 64 screen from anywhere near its middle); window_sigmas: diameter of the
    windowed orientation gratings in units of the neuron's in-silico RF sigma."""

    orientations: int = 16
    spatial_frequencies: tuple[float, ...] = _log_grid(0.025, 0.35, 10)
    sizes_px: tuple[float, ...] = (4.0, 6.0, 9.0, 13.0, 19.0, 28.0, 42.0, 80.0)
    window_sigmas: float = 4.0


@dataclass(frozen=True)
class Settings:
    """Everything ``neurofit insilico`` runs with. noise_images: white-noise images for the noise RFs;
    train_images: training images whose mean (and largest) rate is the MEI activations' reference."""

    probe: ProbeSettings = field(default_factory=ProbeSettings)
    mei: MEISettings = field(default_factory=MEISettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)
    noise_images: int = 4000
    train_images: int = 1000
