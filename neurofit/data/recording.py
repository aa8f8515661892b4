"""The Recording: one xarray.Dataset per recording (a contract: docs/data-contract.md, section "The Recording").

Dims: ``trial``, ``neuron``; videos and time series add ``frame``; images have ``height`` and ``width``.
Data variables:

- ``stimulus``      (trial, [frame,] height, width) float32, pixel intensities as the source gives them;
  required for models of sensory responses, absent for multi-region time series without an image stimulus
- ``inputs``        (trial, [frame,] input_channel) float32, optional known external inputs (task events)
- ``responses``     (trial, [frame,] neuron) float32, one response per neuron per trial (or frame)
- ``behavior``      (trial, [frame,] behavior_channel) float32, optional (SENSORIUM order: pupil dilation,
  its derivative, running speed)
- ``pupil_center``  (trial, [frame,] 2) float32, optional, eye position in camera pixels
- ``response_mask`` (trial, [frame]) bool, optional: False marks padded frames and trials without recorded
  responses; responses there may be NaN and are excluded from losses and metrics

Neuron coordinates: ``unit_id`` (unique), ``x_um``, ``y_um``, ``z_um`` (cortical position, micrometres),
optionally ``area``, ``layer``, ``region``. Trial coordinates: ``tier`` and ``stimulus_id`` (repeats of one
stimulus share it). Attrs: ``name``, ``source``, ``format_version`` and, for time series, ``frame_rate_hz``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from neurofit.errors import DataError

FORMAT_VERSION = "1"
#: Tiers a Recording may use. The SENSORIUM 2023 tiers are kept as the source names them.
TIERS = (
    "train",
    "validation",
    "test",
    "final_test",
    "oracle",
    "live_test_main",
    "live_test_bonus",
    "final_test_main",
    "final_test_bonus",
    "none",
)
#: Tiers whose trials are held out for testing (``neurofit evaluate --tier test`` uses the first).
TEST_TIERS = ("test", "live_test_main", "live_test_bonus", "final_test", "final_test_main", "final_test_bonus",
              "oracle")
#: Tiers used for validation (early stopping), first present wins: SENSORIUM 2023 has no "validation"
#: tier and its baseline validates on the repeated "oracle" videos.
VALIDATION_TIERS = ("validation", "oracle")
#: Tiers whose trials must have recorded responses (every other tier may have them withheld).
RESPONSES_REQUIRED_TIERS = ("train", "validation", "oracle")
NEURON_COORDS = ("unit_id", "x_um", "y_um", "z_um")
TRIAL_COORDS = ("tier", "stimulus_id")
SENSORIUM_BEHAVIOR_CHANNELS = ("pupil_dilation", "pupil_dilation_derivative", "running_speed")


def is_video(ds: xr.Dataset) -> bool:
    """True when the recording has a ``frame`` dimension (videos or time series)."""
    return "frame" in ds["responses"].dims


def make_recording(
    stimulus: np.ndarray | None,
    responses: np.ndarray,
    *,
    name: str,
    source: str,
    unit_id: np.ndarray,
    x_um: np.ndarray,
    y_um: np.ndarray,
    z_um: np.ndarray,
    tier: np.ndarray,
    stimulus_id: np.ndarray,
    behavior: np.ndarray | None = None,
    behavior_channels: tuple[str, ...] | None = None,
    pupil_center: np.ndarray | None = None,
    inputs: np.ndarray | None = None,
    input_channels: tuple[str, ...] | None = None,
    response_mask: np.ndarray | None = None,
    frame_rate_hz: float | None = None,
    neuron_coords: Mapping[str, np.ndarray] | None = None,
    trial_coords: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build and validate a Recording from arrays.

    Args:
        stimulus: (trial, [frame,] height, width) images or videos, or None (time series without images).
        responses: (trial, [frame,] neuron) responses.
        unit_id, x_um, y_um, z_um: (neuron,) identifiers and cortical positions in micrometres.
        tier, stimulus_id: (trial,) split labels and stimulus identities.
        behavior: (trial, [frame,] channel); pupil_center: (trial, [frame,] 2); response_mask: (trial, [frame]);
        inputs: (trial, [frame,] channel) known external inputs.
        frame_rate_hz: sampling rate for videos/time series.
        neuron_coords, trial_coords: extra per-neuron / per-trial coordinates (e.g. ``area``, ``trial_idx``).
        attrs: extra dataset attributes (e.g. source statistics as JSON strings).
    Returns:
        A validated ``xarray.Dataset``. Arrays are stored as given (no dtype change for coordinates);
        ``stimulus``/``responses``/``behavior``/``pupil_center`` are float32 as the contract requires.
    """
    video = responses.ndim == 3
    lead = ("trial", "frame") if video else ("trial",)
    data_vars: dict[str, tuple] = {"responses": (lead + ("neuron",), _as_f32(responses))}
    if stimulus is not None:
        data_vars["stimulus"] = (lead + ("height", "width"), _as_f32(stimulus))
    coords: dict[str, tuple] = {
        "unit_id": ("neuron", np.asarray(unit_id)),
        "x_um": ("neuron", np.asarray(x_um, dtype=np.float64)),
        "y_um": ("neuron", np.asarray(y_um, dtype=np.float64)),
        "z_um": ("neuron", np.asarray(z_um, dtype=np.float64)),
        "tier": ("trial", np.asarray(tier).astype(str)),
        "stimulus_id": ("trial", np.asarray(stimulus_id)),
    }
    if behavior is not None:
        channels = behavior_channels or tuple(f"behavior_{i}" for i in range(behavior.shape[-1]))
        data_vars["behavior"] = (lead + ("behavior_channel",), _as_f32(behavior))
        coords["behavior_channel"] = ("behavior_channel", np.asarray(channels, dtype=str))
    if pupil_center is not None:
        data_vars["pupil_center"] = (lead + ("pupil_axis",), _as_f32(pupil_center))
        coords["pupil_axis"] = ("pupil_axis", np.array(["x", "y"]))
    if inputs is not None:
        channels = input_channels or tuple(f"input_{i}" for i in range(inputs.shape[-1]))
        data_vars["inputs"] = (lead + ("input_channel",), _as_f32(inputs))
        coords["input_channel"] = ("input_channel", np.asarray(channels, dtype=str))
    if response_mask is not None:
        data_vars["response_mask"] = (lead, np.asarray(response_mask, dtype=bool))
    for key, value in (neuron_coords or {}).items():
        coords[key] = ("neuron", np.asarray(value))
    for key, value in (trial_coords or {}).items():
        coords[key] = ("trial", np.asarray(value))
    ds_attrs: dict[str, Any] = {"name": name, "source": source, "format_version": FORMAT_VERSION}
    if frame_rate_hz is not None:
        ds_attrs["frame_rate_hz"] = float(frame_rate_hz)
    ds_attrs.update(attrs or {})
    ds = xr.Dataset(data_vars, coords=coords, attrs=ds_attrs)
    validate(ds)
    return ds


def _as_f32(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == np.float32 else a.astype(np.float32)


def validate(ds: xr.Dataset, name: str | None = None, check_values: bool = True) -> None:
    """Check a Recording against the contract; raise ``DataError`` naming the recording and the problem.

    Args:
        ds: the recording.
        name: how to call it in messages (defaults to ``ds.attrs['name']``).
        check_values: also scan responses for NaN/inf outside ``response_mask`` (reads the data; set False
            for a quick structural check of a store larger than memory).
    """
    label = name or ds.attrs.get("name", "<unnamed>")

    def fail(problem: str) -> None:
        raise DataError(f"recording {label!r}: {problem}")

    if "responses" not in ds.data_vars:
        fail("missing data variable 'responses'")
    for attr in ("name", "source", "format_version"):
        if attr not in ds.attrs:
            fail(f"missing attribute {attr!r}")
    rdims = ds["responses"].dims
    if rdims not in (("trial", "neuron"), ("trial", "frame", "neuron")):
        fail(f"responses must have dims (trial, [frame,] neuron), got {rdims}")
    video = "frame" in rdims
    lead = ("trial", "frame") if video else ("trial",)
    if "stimulus" in ds.data_vars and ds["stimulus"].dims != lead + ("height", "width"):
        fail(f"stimulus must have dims {lead + ('height', 'width')}, got {ds['stimulus'].dims}")
    if video and "frame_rate_hz" not in ds.attrs:
        fail("time-series recordings need the attribute 'frame_rate_hz'")
    expected = {"behavior": lead + ("behavior_channel",), "pupil_center": lead + ("pupil_axis",),
                "inputs": lead + ("input_channel",), "response_mask": lead}
    for var, dims in expected.items():
        if var in ds.data_vars and ds[var].dims != dims:
            fail(f"{var} must have dims {dims}, got {ds[var].dims}")
    for var in ("stimulus", "responses", "behavior", "pupil_center", "inputs"):
        if var in ds.data_vars and ds[var].dtype != np.float32:
            fail(f"{var} must be float32, got {ds[var].dtype}")
    if "response_mask" in ds.data_vars and ds["response_mask"].dtype != bool:
        fail(f"response_mask must be bool, got {ds['response_mask'].dtype}")
    for coord in NEURON_COORDS:
        if coord not in ds.coords or ds[coord].dims != ("neuron",):
            fail(f"missing neuron coordinate {coord!r} (one value per neuron, {ds.sizes['neuron']} neurons)")
    for coord in TRIAL_COORDS:
        if coord not in ds.coords or ds[coord].dims != ("trial",):
            fail(f"missing trial coordinate {coord!r} (one value per trial, {ds.sizes['trial']} trials)")
    unit_id = ds["unit_id"].values
    if len(np.unique(unit_id)) != len(unit_id):
        fail("unit_id values are not unique")
    for coord in ("x_um", "y_um", "z_um"):
        if not np.all(np.isfinite(ds[coord].values)):
            fail(f"neuron coordinate {coord!r} has NaN or inf values")
    unknown = sorted(set(np.unique(ds["tier"].values).tolist()) - set(TIERS))
    if unknown:
        fail(f"unknown tier(s) {unknown}; allowed: {list(TIERS)}")
    if check_values:
        _check_finite(ds, fail)


def first_unfinite_recorded(responses: np.ndarray, mask: np.ndarray | None) -> int | None:
    """Index of the first trial whose responses (trial, [frame,] neuron) hold NaN or inf where ``mask``
    (trial, [frame]; None: everywhere) says they were recorded, else None."""
    bad = ~np.isfinite(responses)
    if mask is not None:
        bad &= mask[..., None]
    return int(np.argwhere(bad)[0][0]) if bad.any() else None


def _check_finite(ds: xr.Dataset, fail) -> None:
    """Responses must be finite wherever the mask says they were recorded; inputs must be finite everywhere
    that responses are used. Scans trial blocks so a store larger than memory can be checked."""
    n_trials = ds.sizes["trial"]
    step = max(1, int(2**26 // max(1, np.prod([s for d, s in ds["responses"].sizes.items() if d != "trial"]))))
    for start in range(0, n_trials, step):
        block = ds.isel(trial=slice(start, start + step))
        resp = np.asarray(block["responses"].values)
        mask = (np.asarray(block["response_mask"].values) if "response_mask" in block.data_vars
                else np.ones(resp.shape[:-1], dtype=bool))
        row = first_unfinite_recorded(resp, mask)
        if row is not None:
            fail(f"responses contain NaN or inf at trial {start + row} (where response_mask is True)")
        tiers = np.asarray(block["tier"].values).astype(str)
        empty = np.isin(tiers, RESPONSES_REQUIRED_TIERS) & ~mask.reshape(len(tiers), -1).any(axis=1)
        if empty.any():
            trial = start + int(np.flatnonzero(empty)[0])
            fail(f"response_mask is False for every frame of trial {trial} (tier '{tiers[trial - start]}'); "
                 f"{list(RESPONSES_REQUIRED_TIERS)} trials need recorded responses (tier 'none' keeps it)")
        for var in ("stimulus", "behavior", "pupil_center", "inputs"):
            if var not in block.data_vars:
                continue
            values = np.asarray(block[var].values)
            vmask = mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
            bad = ~np.isfinite(values) & vmask
            if bad.any():
                where = np.argwhere(bad)[0]
                at = f"trial {start + int(where[0])}" + (f", frame {int(where[1])}" if mask.ndim == 2 else "")
                fail(f"{var} contains NaN or inf at {at}, where response_mask is True (only masked frames, "
                     "e.g. the padding of a trial, may be missing)")
