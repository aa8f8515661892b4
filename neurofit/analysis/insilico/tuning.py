"""Grating tuning: full-field gratings over orientation x spatial frequency (x temporal frequency for video
models), then gratings windowed at each neuron's in-silico RF centre: orientation at the preferred spatial
(and temporal) frequency, and size at the preferred orientation.

Every condition is a cycle of phase (``ImageProbe.grating_modulation``: still phases or a drift), giving the
mean response F0 and the first harmonic F1. Responses are taken relative to the blank screen (the response
to mean grey), so a neuron's baseline counts neither as tuning nor as unmodulated drive:

- preferred orientation: half the angle of sum_o w_o exp(2 i theta_o), w = max(F0 - blank, 0) at the
  preferred spatial frequency; the orientation selectivity index is that vector's length over sum w;
- preferred spatial frequency: the peak over the grid, refined by a parabola in log frequency;
- modulation ratio F1 / (F0 - blank) of the optimal grating (> 1: simple cell; Skottun et al. 1991);
- surround suppression index 1 - max(F0 - blank at the largest size, 0) / (peak F0 - blank over sizes), in
  [0, 1] (a large grating that drives the neuron below its blank rate counts as full suppression).

Gratings have the training images' RMS contrast (amplitude sqrt(2) x RMS contrast) inside their window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurofit.analysis.insilico.probe import ImageProbe
from neurofit.analysis.insilico.reference import StimulusStats
from neurofit.analysis.insilico.settings import TuningSettings
from neurofit.analysis.insilico.stimuli import gratings

#: Smallest window of the windowed orientation gratings, pixels (a couple of cycles at mid frequencies).
MIN_WINDOW_PX = 6.0
#: Denominator floor of F1 / (F0 - blank), relative to the largest |F0 - blank| of the neuron.
_F0_FLOOR = 1e-3


@dataclass
class Tuning:
    """Grating responses of K neurons and what they say.

    Grids: grid_orientation_rad (O,), grid_sf_cpp (F,), grid_tf_hz (T,) (NaN for a static model),
    grid_size_px (Z,).
    Responses (model rates): blank (K,); fullfield_f0 / fullfield_f1 (K, O, F, T); windowed_f0 /
    windowed_f1 (K, O) at the RF centre, in a window of window_px (K,) diameter; size_f0 / size_f1 (K, Z).
    Summaries (K,): fullfield_orientation_rad, fullfield_osi, fullfield_sf_cpp, fullfield_tf_hz,
    fullfield_f1_f0; orientation_rad and osi (windowed), f1_f0 (windowed, at the preferred size),
    preferred_size_px and ssi.
    """

    grid_orientation_rad: np.ndarray
    grid_sf_cpp: np.ndarray
    grid_tf_hz: np.ndarray
    grid_size_px: np.ndarray
    blank: np.ndarray
    fullfield_f0: np.ndarray
    fullfield_f1: np.ndarray
    window_px: np.ndarray
    windowed_f0: np.ndarray
    windowed_f1: np.ndarray
    size_f0: np.ndarray
    size_f1: np.ndarray
    fullfield_orientation_rad: np.ndarray
    fullfield_osi: np.ndarray
    fullfield_sf_cpp: np.ndarray
    fullfield_tf_hz: np.ndarray
    fullfield_f1_f0: np.ndarray
    orientation_rad: np.ndarray
    osi: np.ndarray
    f1_f0: np.ndarray
    preferred_size_px: np.ndarray
    ssi: np.ndarray


@dataclass
class _Conditions:
    """One grating per entry (C,): orientation, sf, centre (C, 2), diameter, tf (NaN: static), and the
    neuron column whose rate is wanted (None: all neurons)."""

    orientation: np.ndarray
    sf: np.ndarray
    centre: np.ndarray
    diameter: np.ndarray
    tf: np.ndarray
    column: np.ndarray | None = None


def _respond(probe: ImageProbe, cond: _Conditions, amplitude: float, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """F0 and F1 of every condition, (C,) with columns else (C, N); conditions are grouped by temporal
    frequency, each group one call of the probe."""
    n = len(cond.orientation)
    shape = (n,) if cond.column is not None else (n, probe.n_neurons)
    f0, f1 = np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32)
    for tf in np.unique(cond.tf):
        rows = np.flatnonzero(cond.tf == tf) if np.isfinite(tf) else np.flatnonzero(~np.isfinite(cond.tf))

        def frames(index: np.ndarray, phases: np.ndarray, rows: np.ndarray = rows) -> torch.Tensor:
            pick = rows[index]
            return gratings(cond.orientation[pick], cond.sf[pick], phases, cond.centre[pick],
                            cond.diameter[pick], amplitude, probe.image_shape)

        columns = None if cond.column is None else cond.column[rows]
        f0[rows], f1[rows] = probe.grating_modulation(len(rows), frames, float(tf) if np.isfinite(tf) else None,
                                                      columns, desc)
    return f0, f1


def preferred_orientation(drive: np.ndarray, orientation_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vector-average preferred orientation in [0, pi) and selectivity in [0, 1] of drives (..., O) (negative
    drives count as 0; a neuron without drive gets NaN)."""
    w = np.maximum(drive, 0)
    vector = (w * np.exp(2j * orientation_rad)).sum(-1)
    total = w.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        osi = np.where(total > 0, np.abs(vector) / total, np.nan)
    return np.where(total > 0, np.mod(np.angle(vector) / 2, np.pi), np.nan), osi


def peak_log_interpolated(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Location of the maximum of values (K, G) over an increasing positive grid (G,), refined by a parabola
    through the peak and its neighbours in log(grid) (grid value at the ends)."""
    logs = np.log(grid)
    best = values.argmax(-1)
    out = logs[best].astype(np.float64)
    inner = (best > 0) & (best < len(grid) - 1)
    k = np.flatnonzero(inner)
    if len(k):
        i = best[k]
        x = np.stack([logs[i - 1], logs[i], logs[i + 1]], 1)
        y = np.stack([values[k, i - 1], values[k, i], values[k, i + 1]], 1).astype(np.float64)
        # Vertex of the parabola through three points, kept between the outer two.
        num = (x[:, 1] - x[:, 0]) ** 2 * (y[:, 1] - y[:, 2]) - (x[:, 1] - x[:, 2]) ** 2 * (y[:, 1] - y[:, 0])
        den = (x[:, 1] - x[:, 0]) * (y[:, 1] - y[:, 2]) - (x[:, 1] - x[:, 2]) * (y[:, 1] - y[:, 0])
        with np.errstate(invalid="ignore", divide="ignore"):
            vertex = x[:, 1] - 0.5 * num / den
        out[k] = np.clip(np.where(np.isfinite(vertex), vertex, x[:, 1]), x[:, 0], x[:, 2])
    return np.exp(out)


def modulation_ratio(f0: np.ndarray, f1: np.ndarray, blank: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """F1 / (F0 - blank), the denominator floored at ``_F0_FLOOR`` x ``scale`` (a neuron's largest drive)."""
    return f1 / np.maximum(f0 - blank, _F0_FLOOR * np.maximum(scale, 1e-12))


def grating_tuning(probe: ImageProbe, neurons: np.ndarray, centre_px: np.ndarray, sigma_px: np.ndarray,
                   stats: StimulusStats, settings: TuningSettings) -> Tuning:
    """The experiments of the module docstring for ``neurons`` (K,) with in-silico RF centres (K, 2) x/y
    pixels and sizes (K,) pixels (the windows)."""
    k = len(neurons)
    height, width = probe.image_shape
    amplitude = float(np.sqrt(2) * stats.rms_contrast)
    ori = np.arange(settings.orientations) * np.pi / settings.orientations
    sf = np.asarray(settings.spatial_frequencies, dtype=np.float64)
    tf = np.array([np.nan if t is None else t for t in probe.temporal_frequencies], dtype=np.float64)
    sizes = np.asarray(settings.sizes_px, dtype=np.float64)
    blank_image = torch.full((1, height, width), stats.mean_luminance)
    with torch.no_grad():
        blank = probe.rates(blank_image)[0].numpy()[neurons]

    # Full field: one set of gratings for every neuron.
    o, f, t = (g.ravel() for g in np.meshgrid(np.arange(len(ori)), np.arange(len(sf)), np.arange(len(tf)),
                                               indexing="ij"))
    screen = np.tile([(width - 1) / 2, (height - 1) / 2], (len(o), 1))
    full = _Conditions(ori[o], sf[f], screen, np.full(len(o), np.inf), tf[t])
    ff_f0, ff_f1 = (x[:, neurons].T.reshape(k, len(ori), len(sf), len(tf))
                    for x in _respond(probe, full, amplitude, "full-field gratings"))
    ff_drive = ff_f0 - blank[:, None, None, None]
    best = np.array(np.unravel_index(ff_drive.reshape(k, -1).argmax(1), ff_drive.shape[1:])).T  # (K, 3)
    rows = np.arange(k)
    ff_ori, ff_osi = preferred_orientation(ff_drive[rows, :, best[:, 1], best[:, 2]], ori)
    ff_sf = peak_log_interpolated(ff_drive[rows, best[:, 0], :, best[:, 2]], sf)
    ff_scale = np.abs(ff_drive).reshape(k, -1).max(1)
    ff_ratio = modulation_ratio(ff_f0[rows, best[:, 0], best[:, 1], best[:, 2]],
                                ff_f1[rows, best[:, 0], best[:, 1], best[:, 2]], blank, ff_scale)
    pref_tf = tf[best[:, 2]]

    # Windowed at the RF: orientation at the preferred frequencies.
    window = np.maximum(settings.window_sigmas * sigma_px, MIN_WINDOW_PX)
    n, m = np.repeat(rows, len(ori)), np.tile(np.arange(len(ori)), k)
    windowed = _Conditions(ori[m], ff_sf[n], centre_px[n], window[n], pref_tf[n], np.asarray(neurons)[n])
    w_f0, w_f1 = (x.reshape(k, len(ori)) for x in _respond(probe, windowed, amplitude, "windowed gratings"))
    w_drive = w_f0 - blank[:, None]
    w_ori, w_osi = preferred_orientation(w_drive, ori)
    w_ori_filled = np.where(np.isfinite(w_ori), w_ori, ori[w_drive.argmax(1)])

    # Size at the preferred orientation (windowed) and spatial frequency.
    n, m = np.repeat(rows, len(sizes)), np.tile(np.arange(len(sizes)), k)
    sized = _Conditions(w_ori_filled[n], ff_sf[n], centre_px[n], sizes[m], pref_tf[n], np.asarray(neurons)[n])
    s_f0, s_f1 = (x.reshape(k, len(sizes)) for x in _respond(probe, sized, amplitude, "size tuning"))
    s_drive = s_f0 - blank[:, None]
    peak = s_drive.argmax(1)
    peak_drive = s_drive[rows, peak]
    with np.errstate(invalid="ignore", divide="ignore"):
        ssi = np.where(peak_drive > 0, 1 - np.maximum(s_drive[:, -1], 0) / peak_drive, np.nan)
    ratio = modulation_ratio(s_f0[rows, peak], s_f1[rows, peak], blank, np.abs(s_drive).max(1))
    return Tuning(
        grid_orientation_rad=ori, grid_sf_cpp=sf, grid_tf_hz=tf, grid_size_px=sizes, blank=blank,
        fullfield_f0=ff_f0, fullfield_f1=ff_f1, window_px=window, windowed_f0=w_f0, windowed_f1=w_f1,
        size_f0=s_f0, size_f1=s_f1, fullfield_orientation_rad=ff_ori, fullfield_osi=ff_osi,
        fullfield_sf_cpp=ff_sf, fullfield_tf_hz=pref_tf, fullfield_f1_f0=ff_ratio,
        orientation_rad=w_ori, osi=w_osi, f1_f0=ratio, preferred_size_px=sizes[peak], ssi=ssi)
