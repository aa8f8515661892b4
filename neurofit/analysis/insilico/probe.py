"""The model as an in-silico experiment sees it: raw stimuli in, one recording's rates out, differentiable.

An ``ImageProbe`` wraps a static model, images (B, H, W) -> rates (B, N). A ``VideoProbe`` wraps a video
model and shows an image as a flash: ``blank_frames`` frames of mean grey (so a recurrent core leaves its
all-zero start state), then the image for ``flash_frames`` frames; the response is the mean rate over the
flash. Gratings are the one stimulus where time matters: a static probe samples ``phases`` phases of a
still grating, a video probe drifts it at a temporal frequency and analyses ``analysis_frames`` frames after
``settle_frames`` frames past onset. Either way the result is the response over one stimulus cycle, whose
mean (F0) and first harmonic (F1) the tuning analysis uses (``ProbeSettings``).

Rates are in the model's normalised units (responses / training-tier std, ``Encoder.forward``); every
in-silico number is a ratio of rates or a position, so the unit cancels. The behavioural state is the
training mean (behaviour and pupil at their means: the average gain and eye position).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from neurofit.analysis.insilico.settings import ProbeSettings
from neurofit.data.spec import RecordingSpec

#: stimulus (B, [T,] H, W) raw -> rates (B, [T,] N)
Forward = Callable[[torch.Tensor], torch.Tensor]
#: (condition indices (C,), phases (P,) radians) -> contrast frames (C, P, H, W)
FrameMaker = Callable[[np.ndarray, np.ndarray], torch.Tensor]


def modulation(responses: torch.Tensor, cycles: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F0) and first-harmonic amplitude (F1) over axis 1 of responses (C, P, ...) that sample
    ``cycles`` stimulus cycles at equal steps; each (C, ...)."""
    p = responses.shape[1]
    angle = 2 * np.pi * cycles * torch.arange(p, dtype=responses.dtype) / p
    shape = (1, p) + (1,) * (responses.dim() - 2)
    real = (responses * torch.cos(angle).reshape(shape)).mean(1)
    imag = (responses * torch.sin(angle).reshape(shape)).mean(1)
    return responses.mean(1), 2 * torch.sqrt(real**2 + imag**2)


@dataclass
class ImageProbe:
    """A static model of N neurons. ``forward``: raw images (B, H, W) -> rates (B, N), differentiable;
    ``mean_luminance``: the grey level of the blank screen."""

    forward: Forward
    n_neurons: int
    image_shape: tuple[int, int]
    mean_luminance: float
    settings: ProbeSettings = field(default_factory=ProbeSettings)

    @property
    def temporal_frequencies(self) -> tuple[float | None, ...]:
        """Drift frequencies of the gratings, Hz; None: still gratings."""
        return (None,)

    @property
    def images_per_call(self) -> int:
        """Images per model call (``batch_size`` frames)."""
        return self.settings.batch_size

    def rates(self, images: torch.Tensor) -> torch.Tensor:
        """Raw images (B, H, W) -> rates (B, N), keeping the graph (one model call)."""
        return self.forward(images)

    def evaluate(self, n: int, make: Callable[[np.ndarray], torch.Tensor], columns: np.ndarray | None = None,
                 desc: str | None = None) -> np.ndarray:
        """Rates for ``n`` stimuli built batch by batch (``make(indices) -> raw images``), without gradients;
        (n, N), or (n,) with ``columns`` (n,): the rate of neuron ``columns[i]`` for stimulus i."""
        step = self.images_per_call
        out = []
        with torch.no_grad():
            for start in tqdm(range(0, n, step), desc=desc, disable=desc is None, leave=False):
                index = np.arange(start, min(n, start + step))
                rates = self.rates(make(index))
                out.append(rates if columns is None else rates[torch.arange(len(index)), columns[index]])
        return torch.cat(out).numpy()

    def grating_modulation(self, n: int, frames: FrameMaker, temporal_frequency: float | None,
                           columns: np.ndarray | None = None,
                           desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """F0 and F1 of the rates to ``n`` grating conditions over one cycle of phase; (n, N) each, or (n,)
        with ``columns``. ``frames(conditions, phases)`` gives contrast frames (C, P, H, W)."""
        per = self.settings.phases
        phases = 2 * np.pi * np.arange(per) / per

        def make(index: np.ndarray) -> torch.Tensor:  # the conditions a batch of images touches, then a slice
            conditions = np.arange(index[0] // per, index[-1] // per + 1)
            images = frames(conditions, phases).reshape(-1, *self.image_shape)
            offset = index[0] - conditions[0] * per
            return images[offset:offset + len(index)] + self.mean_luminance

        cols = None if columns is None else np.repeat(columns, per)
        rates = torch.as_tensor(self.evaluate(n * per, make, cols, desc))
        f0, f1 = modulation(rates.reshape(n, per, *rates.shape[1:]), 1.0)
        return f0.numpy(), f1.numpy()


@dataclass
class VideoProbe(ImageProbe):
    """A video model; ``forward``: raw movies (B, T, H, W) -> rates (B, T, N). Images are flashed, gratings
    drift (module docstring)."""

    frame_rate_hz: float = 30.0

    @property
    def temporal_frequencies(self) -> tuple[float | None, ...]:
        return tuple(self.settings.temporal_frequencies)

    @property
    def images_per_call(self) -> int:
        s = self.settings
        return max(1, s.batch_size // (s.blank_frames + max(s.flash_frames, s.settle_frames + s.analysis_frames)))

    def _with_blank(self, movies: torch.Tensor) -> torch.Tensor:
        blank = torch.full((movies.shape[0], self.settings.blank_frames, *self.image_shape), self.mean_luminance,
                           dtype=movies.dtype)
        return torch.cat([blank, movies], dim=1)

    def rates(self, images: torch.Tensor) -> torch.Tensor:
        """Raw images (B, H, W) flashed -> mean rate over the flash (B, N), keeping the graph."""
        movies = images.unsqueeze(1).expand(-1, self.settings.flash_frames, -1, -1)
        return self.forward(self._with_blank(movies))[:, self.settings.blank_frames:].mean(1)

    def grating_modulation(self, n: int, frames: FrameMaker, temporal_frequency: float | None,
                           columns: np.ndarray | None = None,
                           desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """F0 and F1 (at the drift frequency) of the rates over the analysis frames of ``n`` gratings drifting
        at ``temporal_frequency`` Hz; (n, N) each, or (n,) with ``columns``."""
        s = self.settings
        frames_shown = np.arange(s.settle_frames + s.analysis_frames)
        phases = 2 * np.pi * temporal_frequency * frames_shown / self.frame_rate_hz
        cycles = temporal_frequency * s.analysis_frames / self.frame_rate_hz
        f0s, f1s = [], []
        with torch.no_grad():
            for start in tqdm(range(0, n, self.images_per_call), desc=desc, disable=desc is None, leave=False):
                index = np.arange(start, min(n, start + self.images_per_call))
                movies = self._with_blank(frames(index, phases) + self.mean_luminance)
                rates = self.forward(movies)[:, s.blank_frames + s.settle_frames:]
                if columns is not None:
                    rates = rates[torch.arange(len(index)), :, columns[index]]
                f0, f1 = modulation(rates, cycles)
                f0s.append(f0)
                f1s.append(f1)
        return torch.cat(f0s).numpy(), torch.cat(f1s).numpy()


def encoder_forward(encoder: torch.nn.Module, spec: RecordingSpec) -> Forward:
    """The encoder's rates for recording ``spec.name`` at the training-mean behaviour and eye position:
    raw stimulus (B, [T,] H, W) -> (B, [T,] N) normalised rates."""
    stats = spec.stats

    def forward(stimulus: torch.Tensor) -> torch.Tensor:
        lead = stimulus.shape[:-2]
        behavior = pupil = None
        if spec.behavior_channels:
            behavior = torch.as_tensor(stats["behavior_mean"], dtype=stimulus.dtype).expand(*lead, -1)
        if spec.has_pupil:
            pupil = torch.as_tensor(stats["pupil_mean"], dtype=stimulus.dtype).expand(*lead, -1)
        return encoder(spec.name, stimulus, behavior, pupil)

    return forward


def probe_for(encoder: torch.nn.Module, spec: RecordingSpec, mean_luminance: float,
              settings: ProbeSettings) -> ImageProbe:
    """An ``ImageProbe``, or a ``VideoProbe`` for a video recording, of one recording of a fitted encoder."""
    common = dict(forward=encoder_forward(encoder, spec), n_neurons=spec.n_neurons,
                  image_shape=tuple(spec.image_shape), mean_luminance=mean_luminance, settings=settings)
    if spec.video:
        return VideoProbe(**common, frame_rate_hz=spec.frame_rate_hz or 30.0)
    return ImageProbe(**common)
