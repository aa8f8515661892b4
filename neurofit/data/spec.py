"""RecordingSpec: what a model must know about a recording (sizes, neuron ids and positions, input
statistics). It is computed once from the training tier and saved with every checkpoint, so a fitted model
is self-contained: it takes raw stimuli and behaviour and predicts responses in the recording's units."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from neurofit.data.recording import is_video


@dataclass
class RecordingSpec:
    """Sizes, identities and normalisation statistics of one recording.

    stats holds lists (JSON-friendly): ``stimulus_mean``/``stimulus_std`` (scalars, pixel units),
    ``response_mean``/``response_std`` (N,), ``behavior_mean``/``behavior_std`` (C_b,),
    ``pupil_mean``/``pupil_std`` (2,), all over the training tier."""

    name: str
    n_neurons: int
    unit_id: list
    coords_um: list  # (N, 3) micrometres
    image_shape: tuple[int, int] | None
    video: bool
    behavior_channels: list[str]
    has_pupil: bool
    frame_rate_hz: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for checkpoints and JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecordingSpec:
        d = dict(d)
        if d.get("image_shape") is not None:
            d["image_shape"] = tuple(d["image_shape"])
        return cls(**d)


def _moments(arrays, axis_keep: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Streaming mean and std over blocks (Chan's parallel update), per last axis or overall."""
    n, mean, m2 = 0, 0.0, 0.0
    for block in arrays:
        x = np.asarray(block, dtype=np.float64)
        x = x.reshape(-1, x.shape[-1]) if axis_keep is not None else x.reshape(-1, 1)
        x = x[np.isfinite(x).all(axis=1)]
        if not len(x):
            continue
        bn, bmean = len(x), x.mean(axis=0)
        bm2 = ((x - bmean) ** 2).sum(axis=0)
        delta = bmean - mean
        total = n + bn
        mean = mean + delta * bn / total
        m2 = m2 + bm2 + delta**2 * n * bn / total
        n = total
    std = np.sqrt(m2 / max(n - 1, 1))
    return np.atleast_1d(mean), np.atleast_1d(std)


def _masked_blocks(ds: xr.Dataset, var: str, trials: np.ndarray, block: int = 256):
    """Yield the variable over the given trials in blocks, with masked (unrecorded) entries set to NaN."""
    for start in range(0, len(trials), block):
        idx = trials[start:start + block]
        x = np.asarray(ds[var].isel(trial=idx).values, dtype=np.float64)
        if "response_mask" in ds.data_vars:
            mask = np.asarray(ds["response_mask"].isel(trial=idx).values, dtype=bool)
            x = np.where(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x, np.nan)
        yield x


def spec_from_recording(ds: xr.Dataset, name: str, train_trials: np.ndarray) -> RecordingSpec:
    """Build a RecordingSpec, with statistics over ``train_trials`` (integer trial indices)."""
    stats: dict[str, Any] = {}
    if "stimulus" in ds.data_vars:
        m, s = _moments(_masked_blocks(ds, "stimulus", train_trials), None)
        stats["stimulus_mean"], stats["stimulus_std"] = float(m[0]), float(max(s[0], 1e-6))
    m, s = _moments(_masked_blocks(ds, "responses", train_trials), axis_keep=-1)
    stats["response_mean"] = m.tolist()
    # Neurons that never fire in training would divide by 0; a floor of 1% of the median std keeps them finite.
    floor = max(float(np.median(s)) * 0.01, 1e-6)
    stats["response_std"] = np.maximum(s, floor).tolist()
    for var, key in (("behavior", "behavior"), ("pupil_center", "pupil")):
        if var in ds.data_vars:
            m, s = _moments(_masked_blocks(ds, var, train_trials), axis_keep=-1)
            stats[f"{key}_mean"], stats[f"{key}_std"] = m.tolist(), np.maximum(s, 1e-6).tolist()
    coords = np.stack([ds[c].values.astype(np.float64) for c in ("x_um", "y_um", "z_um")], axis=1)
    image_shape = (int(ds.sizes["height"]), int(ds.sizes["width"])) if "stimulus" in ds.data_vars else None
    return RecordingSpec(
        name=name,
        n_neurons=int(ds.sizes["neuron"]),
        unit_id=ds["unit_id"].values.tolist(),
        coords_um=coords.tolist(),
        image_shape=image_shape,
        video=is_video(ds),
        behavior_channels=ds["behavior_channel"].values.tolist() if "behavior" in ds.data_vars else [],
        has_pupil="pupil_center" in ds.data_vars,
        frame_rate_hz=ds.attrs.get("frame_rate_hz"),
        stats=stats,
    )
