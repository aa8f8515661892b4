"""Convert a two-photon NWB file into a Recording: ophys responses aligned to stimulus presentations.

What is read (pynwb, an optional extra: ``pip install neurofit[nwb]``):

- **responses**: a ``RoiResponseSeries`` inside a ``DfOverF`` or ``Fluorescence`` container of the processing
  module ``ophys`` (any module if ``ophys`` has none); DfOverF is preferred, ``series=`` picks one by name.
- **neuron positions**: the ROI centroid from the series' ``PlaneSegmentation`` (``image_mask`` weights, or
  ``pixel_mask``/``voxel_mask`` entries), turned into micrometres with the imaging plane's ``grid_spacing`` and
  ``origin_coords`` (and their units). NWB orders image masks as (x, y[, z]); a missing ``grid_spacing``
  is taken as 1 micrometre per pixel and a missing origin as 0, recorded in the ``position_note`` attribute.
  ``unit_id`` is the ROI's id in the PlaneSegmentation, ``area`` the imaging plane's ``location``.
- **presentations**: a stimulus table (``TimeIntervals`` in ``intervals``, including ``trials``) with a
  stimulus-id column (``STIMULUS_ID_COLUMNS``), or else an ``IndexSeries``/``ImageSeries`` in ``stimulus``.
  Images come from the ``IndexSeries``' indexed series or images, from the ``ImageSeries`` itself, or, for a
  table whose ids are frame numbers, from the matching ``stimulus_template`` ImageSeries. Without images the
  Recording has no ``stimulus`` variable.
- **running speed**: the first ``TimeSeries`` named like ``running``/``speed`` in processing or acquisition,
  resampled to the imaging times and aligned like the responses (behaviour channel ``running_speed``).

Alignment (see ``align.Window``): per presentation, the mean over the window (trial, neuron), or the imaging
samples of the window (trial, frame, neuron) at the imaging rate. Tiers come from a ``tier``/``split`` column
or else ``align.assign_tiers``.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neurofit.data.recording import TIERS, make_recording
from neurofit.data.sources.align import (
    DEFAULT_DURATION_S,
    Window,
    assign_tiers,
    resample,
    window_frames,
    window_means,
)
from neurofit.data.store import StoreWriter
from neurofit.errors import DataError

#: Table columns that identify the stimulus of a presentation, in order of preference.
STIMULUS_ID_COLUMNS = ("stimulus_id", "image_id", "frame", "image_index", "frame_index", "stimulus_index",
                       "image_name", "stimulus_name")
#: Table columns that give a trial's split.
TIER_COLUMNS = ("tier", "tiers", "split")
_RUNNING = re.compile(r"running|speed", re.IGNORECASE)
_UM_PER_UNIT = {"meters": 1e6, "meter": 1e6, "m": 1e6, "millimeters": 1e3, "millimeter": 1e3, "mm": 1e3,
                "micrometers": 1.0, "micrometer": 1.0, "microns": 1.0, "micron": 1.0, "um": 1.0, "µm": 1.0}


@dataclass
class Presentations:
    """Stimulus presentations: onsets/stops (seconds), ids, optional images (trial, H, W) and extra columns."""

    source: str
    onsets: np.ndarray
    stops: np.ndarray | None
    stimulus_id: np.ndarray
    images: np.ndarray | None
    tiers: np.ndarray | None


def import_pynwb() -> Any:
    """Import pynwb lazily; a clear ``DataError`` tells how to install it when missing."""
    try:
        import pynwb
    except ImportError:
        raise DataError("reading NWB files needs pynwb: pip install neurofit[nwb]") from None
    return pynwb


def read_nwb(path: str | os.PathLike, window: Window | None = None, series: str | None = None,
             stimulus: str | None = None, name: str | None = None) -> xr.Dataset:
    """Read one NWB file into a validated Recording (see the module docstring for what is used).

    Args:
        path: the ``.nwb`` file.
        window: alignment of responses to presentations (default ``Window()``: means from the onset over the
            median presentation duration).
        series: name of the RoiResponseSeries to use (default: the first in DfOverF, else in Fluorescence).
        stimulus: name of the stimulus table (in ``intervals``) or series (in ``stimulus``) to use.
        name: recording name (default: the file stem).
    Returns:
        A Recording: responses (trial, neuron) or (trial, frame, neuron) float32, stimulus where images exist.
    """
    pynwb = import_pynwb()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        io = pynwb.NWBHDF5IO(str(path), "r")
        nwb = io.read()
    except Exception as err:  # h5py/hdmf raise many types for a file that is not NWB
        raise DataError(f"{path}: not a readable NWB file ({type(err).__name__}: {err})") from None
    try:
        return _build(path, nwb, window or Window(), series, stimulus, name or path.stem)
    finally:
        io.close()


def convert_nwb(path: str | os.PathLike, out: str | os.PathLike, window: Window | None = None,
                series: str | None = None, stimulus: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Convert one NWB file into a new store at ``out`` (atomic); returns a summary dict for printing."""
    start = time.perf_counter()
    ds = read_nwb(path, window, series, stimulus)
    with StoreWriter(out, overwrite=overwrite) as writer:
        writer.add(ds.attrs["name"], ds)
    return {"name": ds.attrs["name"], "n_trials": ds.sizes["trial"], "n_neurons": ds.sizes["neuron"],
            "frames": ds.sizes.get("frame", 0), "seconds": time.perf_counter() - start}


def _build(path: Path, nwb: Any, window: Window, series_name: str | None, stimulus: str | None,
           name: str) -> xr.Dataset:
    series = _find_series(path, nwb, series_name)
    times = _timestamps(series)
    values = np.asarray(series.data[:])
    values = values[:, None] if values.ndim == 1 else values
    if values.ndim != 2 or values.shape[0] != len(times):
        raise DataError(f"{path}: series {series.name!r} has data shape {values.shape} for {len(times)} times")
    if not np.isfinite(values).all():
        raise DataError(f"{path}: series {series.name!r} contains NaN or inf")
    rows = np.asarray(series.rois.data[:])
    table = series.rois.table
    if len(rows) != values.shape[1]:
        raise DataError(f"{path}: series {series.name!r} has {values.shape[1]} ROIs of data but {len(rows)} rois")
    positions, note = _roi_positions_um(path, table, rows)
    pres = _find_presentations(path, nwb, stimulus)
    duration = window.duration_s
    if duration is None:
        duration = float(np.median(pres.stops - pres.onsets)) if pres.stops is not None else DEFAULT_DURATION_S
    rate = float(series.rate) if getattr(series, "rate", None) else float(1.0 / np.median(np.diff(times)))
    running = _find_running(nwb)
    behavior = None
    if window.frames:
        n_frames = max(1, int(round(duration * rate)))
        responses, mask = window_frames(times, values, pres.onsets, window.offset_s, n_frames)
        if running is not None:
            behavior, _ = window_frames(times, resample(*running, times), pres.onsets, window.offset_s, n_frames)
    else:
        responses, mask = window_means(times, values, pres.onsets, window.offset_s, duration)
        if running is not None:
            behavior, _ = window_means(times, resample(*running, times), pres.onsets, window.offset_s, duration)
    if behavior is not None:
        behavior = np.nan_to_num(behavior, nan=0.0)  # NaN only where the window is empty, masked like responses
    stimulus_images = pres.images
    if stimulus_images is not None and window.frames:
        stimulus_images = np.repeat(stimulus_images[:, None], responses.shape[1], axis=1)
    tiers = pres.tiers if pres.tiers is not None else assign_tiers(pres.stimulus_id)
    # A presentation whose window holds no imaging sample (past the end of the recording) has nothing to
    # train or score on: tier "none" keeps it in the store, visibly unused.
    tiers = np.where(mask.reshape(len(tiers), -1).any(axis=1), tiers, "none")
    plane = table.imaging_plane
    attrs = {"source_path": str(path), "series": series.name, "presentations": pres.source,
             "window_offset_s": float(window.offset_s), "window_duration_s": float(duration),
             "window_mode": "frames" if window.frames else "mean"}
    if note:
        attrs["position_note"] = note
    return make_recording(
        stimulus_images, responses, name=name, source="nwb", unit_id=np.asarray(table.id[:])[rows],
        x_um=positions[:, 0], y_um=positions[:, 1], z_um=positions[:, 2], tier=tiers,
        stimulus_id=pres.stimulus_id, behavior=behavior,
        behavior_channels=("running_speed",) if behavior is not None else None, response_mask=mask,
        frame_rate_hz=rate if window.frames else None,
        neuron_coords={"area": np.full(len(rows), str(getattr(plane, "location", "") or "unknown"))},
        trial_coords={"onset_s": pres.onsets}, attrs=attrs)


def _find_series(path: Path, nwb: Any, wanted: str | None) -> Any:
    """The RoiResponseSeries to use, from DfOverF (preferred) or Fluorescence containers."""
    from pynwb.ophys import DfOverF, Fluorescence

    modules = list(nwb.processing.values())
    modules.sort(key=lambda m: m.name != "ophys")
    found: list[Any] = []
    for kind in (DfOverF, Fluorescence):
        for module in modules:
            for container in module.data_interfaces.values():
                if isinstance(container, kind):
                    found.extend(container.roi_response_series.values())
    if not found:
        raise DataError(f"{path}: no ophys data (no RoiResponseSeries in a DfOverF or Fluorescence container of "
                        "a processing module)")
    if wanted is None:
        return found[0]
    for series in found:
        if series.name == wanted:
            return series
    raise DataError(f"{path}: no RoiResponseSeries named {wanted!r} (has {[s.name for s in found]})")


def _timestamps(series: Any) -> np.ndarray:
    if series.timestamps is not None:
        return np.asarray(series.timestamps[:], dtype=np.float64)
    n = series.data.shape[0]
    return float(series.starting_time or 0.0) + np.arange(n) / float(series.rate)


def _roi_positions_um(path: Path, table: Any, rows: np.ndarray) -> tuple[np.ndarray, str]:
    """(roi, 3) centroids in micrometres and a note on any assumption made."""
    columns = set(table.colnames)
    centroids = np.zeros((len(rows), 3))
    for k, row in enumerate(rows):
        if "image_mask" in columns:
            mask = np.asarray(table["image_mask"].data[int(row)], dtype=np.float64)
            idx = np.nonzero(mask)
            weights = mask[idx]
            coords = np.stack(idx, axis=1).astype(np.float64)
        elif "pixel_mask" in columns or "voxel_mask" in columns:
            entries = table["pixel_mask" if "pixel_mask" in columns else "voxel_mask"][int(row)]
            arr = np.array([tuple(e) for e in entries], dtype=np.float64)
            coords, weights = arr[:, :-1], arr[:, -1]
        else:
            raise DataError(f"{path}: PlaneSegmentation {table.name!r} has no image_mask, pixel_mask or "
                            "voxel_mask")
        if weights.sum() <= 0:
            raise DataError(f"{path}: ROI {row} of {table.name!r} has an empty mask")
        centroids[k, : coords.shape[1]] = (coords * weights[:, None]).sum(0) / weights.sum()
    plane = table.imaging_plane
    notes = []
    spacing = getattr(plane, "grid_spacing", None)
    if spacing is None:
        spacing_um = np.ones(3)
        notes.append("imaging plane has no grid_spacing: positions assume 1 micrometre per pixel")
    else:
        spacing_um = np.ones(3)
        spacing = np.asarray(spacing, dtype=np.float64)
        spacing_um[: len(spacing)] = spacing * _um_per(plane.grid_spacing_unit, path)
    origin = getattr(plane, "origin_coords", None)
    origin_um = np.zeros(3)
    if origin is None:
        notes.append("imaging plane has no origin_coords: positions are relative to pixel (0, 0)")
    else:
        origin = np.asarray(origin, dtype=np.float64)
        origin_um[: len(origin)] = origin * _um_per(plane.origin_coords_unit, path)
    return origin_um + centroids * spacing_um, "; ".join(notes)


def _um_per(unit: str | None, path: Path) -> float:
    key = (unit or "meters").strip().lower()
    if key not in _UM_PER_UNIT:
        raise DataError(f"{path}: unknown length unit {unit!r} for the imaging plane")
    return _UM_PER_UNIT[key]


def _find_presentations(path: Path, nwb: Any, wanted: str | None) -> Presentations:
    tables = dict(nwb.intervals or {})
    stimuli = dict(nwb.stimulus or {})
    if wanted is not None:
        if wanted in tables:
            return _from_table(path, nwb, wanted, tables[wanted])
        if wanted in stimuli:
            return _from_series(path, wanted, stimuli[wanted])
        raise DataError(f"{path}: no stimulus table or series named {wanted!r} (tables {sorted(tables)}, "
                        f"series {sorted(stimuli)})")
    ranked = sorted(tables, key=lambda n: ("presentation" not in n and "stimulus" not in n, n))
    for table_name in ranked:
        if any(c in tables[table_name].colnames for c in STIMULUS_ID_COLUMNS):
            return _from_table(path, nwb, table_name, tables[table_name])
    from pynwb.image import ImageSeries, IndexSeries

    for kind in (IndexSeries, ImageSeries):
        for series_name, series in stimuli.items():
            if isinstance(series, kind):
                return _from_series(path, series_name, series)
    raise DataError(f"{path}: no stimulus presentations (no table in intervals with a column among "
                    f"{list(STIMULUS_ID_COLUMNS)}, and no IndexSeries or ImageSeries in stimulus)")


def _from_table(path: Path, nwb: Any, name: str, table: Any) -> Presentations:
    column = next((c for c in STIMULUS_ID_COLUMNS if c in table.colnames), None)
    if column is None:
        raise DataError(f"{path}: stimulus table {name!r} has no stimulus-id column among "
                        f"{list(STIMULUS_ID_COLUMNS)}")
    onsets = np.asarray(table["start_time"].data[:], dtype=np.float64)
    stops = np.asarray(table["stop_time"].data[:], dtype=np.float64) if "stop_time" in table.colnames else None
    ids = np.asarray(table[column].data[:])
    tiers = None
    tier_column = next((c for c in TIER_COLUMNS if c in table.colnames), None)
    if tier_column is not None:
        tiers = np.asarray(table[tier_column].data[:]).astype(str)
        unknown = sorted(set(tiers.tolist()) - set(TIERS))
        if unknown:
            raise DataError(f"{path}: column {tier_column!r} of {name!r} has unknown tier(s) {unknown}; "
                            f"allowed: {list(TIERS)}")
    images = None
    templates = dict(nwb.stimulus_template or {})
    template = templates.get(name.replace("_presentations", "")) or (
        next(iter(templates.values())) if len(templates) == 1 else None)
    if template is not None and ids.dtype.kind in "iu" and getattr(template, "data", None) is not None:
        images = _images_by_index(path, template.data, ids)
    return Presentations(f"intervals/{name}", onsets, stops, ids, images, tiers)


def _from_series(path: Path, name: str, series: Any) -> Presentations:
    from pynwb.image import IndexSeries

    onsets = _timestamps(series)
    if isinstance(series, IndexSeries):
        ids = np.asarray(series.data[:])
        images = None
        if series.indexed_timeseries is not None:
            images = _images_by_index(path, series.indexed_timeseries.data, ids)
        elif series.indexed_images is not None:
            container = series.indexed_images
            ordered = (list(container.order_of_images.data) if container.order_of_images is not None
                       else list(container.images.values()))
            images = _images_by_index(path, [np.asarray(img.data) for img in ordered], ids)
    else:
        ids = np.arange(len(onsets))
        images = np.asarray(series.data[:]) if series.data is not None else None
        images = _check_grey(path, images) if images is not None else None
    # each sample is one presentation, shown until the next; the last lasts the median interval
    last = float(np.median(np.diff(onsets))) if len(onsets) > 1 else DEFAULT_DURATION_S
    stops = np.append(onsets[1:], onsets[-1] + last) if len(onsets) else onsets
    return Presentations(f"stimulus/{name}", onsets, stops, ids, images, None)


def _images_by_index(path: Path, data: Any, ids: np.ndarray) -> np.ndarray:
    """Images ``data[i]`` for every id ``i``, reading each distinct image once."""
    unique, inverse = np.unique(ids, return_inverse=True)
    if unique.size and (unique.min() < 0 or unique.max() >= len(data)):
        raise DataError(f"{path}: stimulus index {int(unique.max())} is outside the {len(data)} stimulus images")
    distinct = np.stack([np.asarray(data[int(i)]) for i in unique])
    return _check_grey(path, distinct)[inverse.ravel()]


def _check_grey(path: Path, images: np.ndarray) -> np.ndarray:
    if images.ndim != 3:
        raise DataError(f"{path}: stimulus images have shape {images.shape[1:]}; only grey (height, width) "
                        "images are supported")
    return images


def _find_running(nwb: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(times, values (T, 1)) of the first TimeSeries named like running/speed, or None."""
    from pynwb import TimeSeries
    from pynwb.ophys import RoiResponseSeries

    containers = [c for module in nwb.processing.values() for c in module.data_interfaces.values()]
    containers += list(nwb.acquisition.values())
    candidates = []
    for container in containers:
        candidates.append(container)
        candidates.extend(getattr(container, "time_series", {}).values())
    for ts in candidates:
        if isinstance(ts, TimeSeries) and not isinstance(ts, RoiResponseSeries) and _RUNNING.search(ts.name):
            values = np.asarray(ts.data[:], dtype=np.float64)
            if values.ndim == 1:
                return _timestamps(ts), values[:, None]
    return None
