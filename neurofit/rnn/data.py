"""Multi-region activity for the data-constrained RNN: load, check and normalise.

Two inputs are accepted: a neurofit store whose Recording has ``responses`` (trial, frame, neuron), a
``region`` neuron coordinate and optionally ``inputs`` (trial, frame, input_channel); or an npz with
``rates`` (neuron, time) or (trial, neuron, time), ``regions`` (neuron,) strings, ``dt`` in seconds and
optionally ``inputs`` (time, channels) or (trial, time, channels), ``region_names`` (regions that must
each have units) and ``reset_points`` (sample indices inside every trial where the model's state is set back
to the data's, CURBD's ``resetPoints`` for trials concatenated in one series). Problems raise ``DataError``
naming the file.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurofit.errors import DataError

#: CURBD scales activity so its largest magnitude is just inside tanh's range.
RATE_CEILING = 0.999
#: A fit needs the data to span at least this many unit time constants.
MIN_TIME_CONSTANTS = 3.0


@dataclass
class Normalization:
    """The recorded transform ``normalised = clip((raw - offset) * scale, -clip, clip)``, per neuron.

    Attributes:
        kind: ``none``, ``max``, ``max_clip``, ``region`` or ``zscore``.
        offset, scale: (neuron,) arrays.
        clip: bound of the normalised values (``max_clip``), or None.
    """

    kind: str
    offset: np.ndarray
    scale: np.ndarray
    clip: float | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalise (trial, neuron, time) activity."""
        out = (x - self.offset[:, None]) * self.scale[:, None]
        return out if self.clip is None else np.clip(out, -self.clip, self.clip)

    def invert(self, x: np.ndarray) -> np.ndarray:
        """Back to raw units, (trial, neuron, time) (clipped values stay clipped)."""
        return x / self.scale[:, None] + self.offset[:, None]

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-friendly form."""
        return {"kind": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist(), "clip": self.clip}


@dataclass
class RNNData:
    """Normalised multi-region activity.

    Attributes:
        rates: (trial, neuron, time) float32 normalised activity.
        regions: (neuron,) region label per unit.
        region_names: regions in order of first appearance.
        dt: sampling step, seconds.
        inputs: (trial, time, channel) float32 known inputs, or None.
        input_channels: channel names.
        normalization: the transform applied to the raw activity.
        source: the file it came from (for messages).
        unit_ids: (neuron,) identifiers.
        reset_points: sorted sample indices (0 < p < n_samples) inside every trial where the model's state is
            set to the data's, besides each trial's start.
        first_sample: where these samples start in the trial (a part cut by ``time_slice``: its trial-locked
            inferred inputs are the whole trial's at these times).
        trial_samples: samples of the whole trial (None: ``n_samples``).
    """

    rates: np.ndarray
    regions: np.ndarray
    region_names: tuple[str, ...]
    dt: float
    inputs: np.ndarray | None
    input_channels: tuple[str, ...]
    normalization: Normalization
    source: str
    unit_ids: np.ndarray
    reset_points: tuple[int, ...] = ()
    first_sample: int = 0
    trial_samples: int | None = None

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return self.rates.shape[0]

    @property
    def n_units(self) -> int:
        """Number of units (recorded neurons)."""
        return self.rates.shape[1]

    @property
    def n_samples(self) -> int:
        """Samples per trial."""
        return self.rates.shape[2]

    def region_index(self) -> np.ndarray:
        """(neuron,) index of each unit's region in ``region_names``."""
        lookup = {name: i for i, name in enumerate(self.region_names)}
        return np.array([lookup[r] for r in self.regions])

    def check_duration(self, tau: float) -> None:
        """``DataError`` if trials last fewer than ``MIN_TIME_CONSTANTS`` time constants ``tau`` (seconds)."""
        duration = self.n_samples * self.dt
        if duration < MIN_TIME_CONSTANTS * tau:
            raise DataError(f"{self.source}: time series too short: {self.n_samples} samples x {self.dt:g} s = "
                            f"{duration:g} s, fewer than {MIN_TIME_CONSTANTS:g} time constants (tau = {tau:g} s)")

    def trial_slice(self, start: int, stop: int) -> RNNData:
        """Trials [start, stop) whole (their inputs with them)."""
        inputs = None if self.inputs is None else self.inputs[start:stop]
        return dataclasses.replace(self, rates=self.rates[start:stop], inputs=inputs)

    def time_slice(self, start: int, stop: int) -> RNNData:
        """Samples [start, stop) of every trial (inputs and reset points with them), placed in the trial."""
        inputs = None if self.inputs is None else self.inputs[:, start:stop]
        resets = tuple(p - start for p in self.reset_points if start < p < stop)
        return dataclasses.replace(self, rates=self.rates[..., start:stop], inputs=inputs, reset_points=resets,
                                   first_sample=self.first_sample + start,
                                   trial_samples=self.trial_samples or self.n_samples)


def load_rnn_data(path: str | os.PathLike, normalize: str = "max", recording: str | None = None) -> RNNData:
    """Load a store (``*.zarr``) or an npz, check it and normalise it.

    Args:
        path: the data file.
        normalize: ``none``, ``max``, ``region`` or ``zscore`` (see ``Normalization``).
        recording: recording name inside a store (default: the first).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".npz":
        raw = _read_npz(path)
    else:
        from neurofit.data.store import reading

        with reading(path, "the recording"):
            raw = _read_store(path, recording)
    rates, regions, dt, inputs, channels, region_names, unit_ids, resets = raw
    source = str(path)
    if rates.ndim == 2:
        rates = rates[None]
    if rates.ndim != 3:
        raise DataError(f"{source}: rates must be (neuron, time) or (trial, neuron, time), "
                        f"got shape {rates.shape}")
    if len(regions) != rates.shape[1]:
        raise DataError(f"{source}: regions has {len(regions)} labels but rates has {rates.shape[1]} neurons")
    if not np.all(np.isfinite(rates)):
        bad = np.argwhere(~np.isfinite(rates))[0]
        raise DataError(f"{source}: rates contain NaN or inf (first at trial {bad[0]}, neuron {bad[1]}, "
                        f"time {bad[2]})")
    if not np.isfinite(dt) or dt <= 0:
        raise DataError(f"{source}: dt must be a positive number of seconds, got {dt}")
    if any(str(r) == "" for r in regions):
        raise DataError(f"{source}: {sum(str(r) == '' for r in regions)} neuron(s) have an empty region label")
    inputs = _check_inputs(inputs, rates.shape, source)
    present = tuple(dict.fromkeys(str(r) for r in regions))
    missing = [n for n in (region_names or ()) if n not in present]
    if missing:
        raise DataError(f"{source}: region(s) {missing} have no units")
    if rates.shape[2] < 2:
        raise DataError(f"{source}: time series too short: {rates.shape[2]} sample(s) per trial, a fit needs at "
                        "least 2")
    if np.ptp(rates) == 0:
        raise DataError(f"{source}: rates are constant ({rates.flat[0]:g} everywhere), nothing to fit")
    regions = np.asarray([str(r) for r in regions])
    norm = make_normalization(rates, regions, normalize, source)
    return RNNData(rates=norm.apply(rates).astype(np.float32), regions=regions, region_names=present, dt=float(dt),
                   inputs=inputs, input_channels=channels if inputs is not None else (), normalization=norm,
                   source=source, unit_ids=unit_ids if unit_ids is not None else np.arange(rates.shape[1]),
                   reset_points=_check_resets(resets, rates.shape[2], source))


def _check_resets(resets: np.ndarray | None, n_samples: int, source: str) -> tuple[int, ...]:
    """Sorted, unique reset points (integers inside the trial); ``DataError`` for any other value."""
    if resets is None:
        return ()
    points = np.asarray(resets).ravel()
    fractional = points[points != np.round(points)]
    if fractional.size:
        raise DataError(f"{source}: reset_points must be whole sample indices, got {fractional[:3].tolist()}")
    bad = sorted({int(p) for p in points if not 0 <= p < n_samples})
    if bad:
        raise DataError(f"{source}: reset_points {bad[:5]} past the end of the {n_samples}-sample trials "
                        f"(valid: 0 to {n_samples - 1})")
    return tuple(sorted({int(p) for p in points} - {0}))


def _check_inputs(inputs: np.ndarray | None, shape: tuple[int, ...], source: str) -> np.ndarray | None:
    if inputs is None:
        return None
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim == 2:
        inputs = np.broadcast_to(inputs[None], (shape[0],) + inputs.shape).copy()
    if inputs.ndim != 3 or inputs.shape[:2] != (shape[0], shape[2]):
        raise DataError(f"{source}: inputs must be (time, channels) or (trial, time, channels) matching "
                        f"{shape[0]} trial(s) x {shape[2]} samples, got shape {inputs.shape}")
    if not np.all(np.isfinite(inputs)):
        raise DataError(f"{source}: inputs contain NaN or inf")
    return inputs


def _read_npz(path: Path) -> tuple:
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable npz ({type(err).__name__}: {err})") from None
    try:
        with npz:
            missing = [k for k in ("rates", "regions", "dt") if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing} (has {npz.files})")
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # a damaged member, or object arrays
        raise DataError(f"{path}: cannot read its arrays ({type(err).__name__}: {err})") from None
    inputs = _numeric(arrays, "inputs", path) if "inputs" in arrays else None
    channels = (tuple(str(c) for c in arrays["input_channels"]) if "input_channels" in arrays
                else tuple(f"input_{i}" for i in range(0 if inputs is None else inputs.shape[-1])))
    names = tuple(str(n) for n in arrays["region_names"]) if "region_names" in arrays else None
    dt = _numeric(arrays, "dt", path)
    if dt.ndim != 0 and dt.size != 1:
        raise DataError(f"{path}: dt must be one number (seconds per sample), got shape {dt.shape}")
    resets = _numeric(arrays, "reset_points", path) if "reset_points" in arrays else None
    return (_numeric(arrays, "rates", path), np.asarray(arrays["regions"]).astype(str), float(dt.reshape(())),
            inputs, channels, names, None, resets)


def _numeric(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    """A numeric array of the npz as float64; text or other non-numeric dtypes are refused, not parsed."""
    a = arrays[key]
    if a.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} must be numeric, got dtype {a.dtype}")
    return np.asarray(a, dtype=np.float64)


def _read_store(path: Path, recording: str | None) -> tuple:
    from neurofit.data.store import list_recordings, open_recording

    name = recording or list_recordings(path)[0]
    ds = open_recording(path, name)
    label = f"{path}:{name}"
    if "frame" not in ds["responses"].dims:
        raise DataError(f"{label}: the RNN fit needs time series (responses with a 'frame' dimension)")
    if "region" not in ds.coords:
        raise DataError(f"{label}: no 'region' neuron coordinate (which region each neuron is in)")
    rates = np.asarray(ds["responses"].transpose("trial", "neuron", "frame").values, dtype=np.float64)
    inputs = channels = None
    if "inputs" in ds.data_vars:
        inputs = np.asarray(ds["inputs"].transpose("trial", "frame", "input_channel").values)
        channels = tuple(str(c) for c in ds["input_channel"].values)
    return (rates, ds["region"].values.astype(str), 1.0 / float(ds.attrs["frame_rate_hz"]), inputs,
            channels or (), None, ds["unit_id"].values, None)


def make_normalization(rates: np.ndarray, regions: np.ndarray, kind: str, source: str) -> Normalization:
    """The transform of ``kind`` fitted to raw (trial, neuron, time) ``rates``.

    ``max`` and ``region`` divide by the largest magnitude (overall or per region) and multiply by
    ``RATE_CEILING`` so tanh can be inverted; ``max_clip`` divides by the largest value and clips to
    +-``RATE_CEILING``, as CURBD's ``trainMultiRegionRNN``; ``zscore`` subtracts each neuron's mean and divides
    by its standard deviation (a silent neuron keeps scale 1).
    """
    n = rates.shape[1]
    offset, scale = np.zeros(n), np.ones(n)
    if kind == "max":
        scale[:] = RATE_CEILING / _positive_peak(np.abs(rates).max(), source, "all neurons")
    elif kind == "max_clip":
        peak = float(rates.max())
        if peak <= 0:
            raise DataError(f"{source}: the largest value is {peak:g}; max_clip normalisation divides by it, so "
                            "it must be positive (use max)")
        scale[:] = 1.0 / peak
        return Normalization(kind, offset, scale, RATE_CEILING)
    elif kind == "region":
        for name in dict.fromkeys(regions):
            idx = regions == name
            scale[idx] = RATE_CEILING / _positive_peak(np.abs(rates[:, idx]).max(), source, f"region {name!r}")
    elif kind == "zscore":
        offset = rates.mean(axis=(0, 2))
        std = rates.std(axis=(0, 2))
        scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 1.0)
    elif kind != "none":
        raise DataError(f"{source}: unknown normalisation {kind!r}")
    return Normalization(kind, offset, scale)


def _positive_peak(peak: float, source: str, what: str) -> float:
    if peak <= 0:
        raise DataError(f"{source}: {what} are silent (all activity is zero); cannot normalise by the max")
    return float(peak)
