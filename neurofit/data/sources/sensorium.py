"""Convert SENSORIUM 2022 (static images) and 2023 (videos) FileTrees into Recordings, streaming trial blocks.

Each FileTree (folder or ``.zip``) becomes one Recording named after the folder (or the zip's stem):

- ``stimulus``: static (trial, height, width) from ``images`` (1, H, W); dynamic (trial, frame, height, width)
  from ``videos`` (H, W, T).
- ``responses`` (trial, [frame,] neuron), ``behavior`` (trial, [frame,] channel), ``pupil_center``
  (trial, [frame,] 2), all float32 as the contract requires; the source dtype of each is recorded and, where
  float32 cannot hold every source value, an exact copy ``<var>_source`` is kept (see ``provenance``).
- ``response_mask`` (trial, [frame]): False on frames added to pad short videos to the longest (stimulus and
  behaviour padded with 0, responses with NaN), on frames the source itself padded with NaN, and on test
  trials whose responses are withheld (file absent, all NaN, or all zero as in the SENSORIUM 2022 competition
  scans). Nothing is truncated; ``n_frames`` (valid frames) and ``n_frames_source`` (frames in the file) are
  trial coordinates.
- every ``meta/trials`` array is a trial coordinate (``tiers`` -> ``tier``), ``stimulus_id`` copies the stimulus
  identity (``frame_image_id`` or a video id; else a hash of the stimulus content so repeats share it); every
  ``meta/neurons`` array is a neuron coordinate (``unit_ids`` -> ``unit_id``, ``cell_motor_coordinates`` ->
  ``x_um``/``y_um``/``z_um``); ``meta/statistics`` and ``config.json`` are kept bit-exact in attributes.

Trials are read and written in blocks of about ``BLOCK_BYTES`` so a large recording never sits whole in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import xarray as xr

from neurofit.data.recording import RESPONSES_REQUIRED_TIERS, SENSORIUM_BEHAVIOR_CHANNELS, make_recording
from neurofit.data.sources.filetree import open_tree
from neurofit.data.sources.provenance import (
    SOURCE_MAP_ATTR,
    STATISTICS_ATTR,
    encode_array,
    exact_copy_name,
    needs_exact_copy,
)
from neurofit.data.sources.sensorium_layout import (
    DYNAMIC_AXES,
    STATIC_AXES,
    TreeLayout,
    scan_tree,
)
from neurofit.data.store import CHUNK_BYTES, StoreWriter
from neurofit.errors import DataError

#: SENSORIUM 2023 videos and traces are sampled at 30 Hz.
DYNAMIC_FRAME_RATE_HZ = 30.0
#: SENSORIUM 2023 behaviour has two channels (pupil dilation, running speed); 2022 has the three of the contract.
DYNAMIC_BEHAVIOR_CHANNELS = ("pupil_dilation", "running_speed")
#: Target float32 bytes per block of trials held in memory while converting.
BLOCK_BYTES = 64 * 2**20
#: meta/trials arrays that name the stimulus of a trial, in order of preference.
STIMULUS_ID_KEYS = ("frame_image_id", "video_id", "image_id", "colorframeprojector_image_id", "condition_hash",
                    "video_ids", "stimulus_id")
_RESERVED = {"trial", "frame", "neuron", "height", "width", "tier", "stimulus_id", "n_frames", "n_frames_source",
             "unit_id", "x_um", "y_um", "z_um", "behavior_channel", "pupil_axis"}


@dataclass
class ConversionSummary:
    """What one conversion wrote: recording name, layout, sizes, source bytes and wall time (seconds)."""

    name: str
    layout: str
    n_trials: int
    n_neurons: int
    max_frames: int
    source_bytes: int
    seconds: float
    skipped: list[str]

    @property
    def mb_per_s(self) -> float:
        """Source megabytes (2**20 bytes) of trial data converted per second."""
        return self.source_bytes / 2**20 / max(self.seconds, 1e-9)


def convert_sensorium(sources: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False,
                      progress: Callable[[str], None] | None = None) -> list[ConversionSummary]:
    """Convert SENSORIUM FileTrees (folders or zips, layouts auto-detected) into one new store at ``out``.

    Every source is scanned and checked before anything is written; a failure at any point leaves no store.
    Returns one summary per recording, in the order given.
    """
    trees = [open_tree(src) for src in sources]
    try:
        layouts = [scan_tree(tree) for tree in trees]
        names = [layout.tree.name for layout in layouts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataError(f"{out}: several sources would make recordings named {duplicates}; rename one")
        summaries = []
        with StoreWriter(out, overwrite=overwrite) as writer:
            for layout in layouts:
                summaries.append(write_recording(writer, layout))
                if progress is not None:
                    s = summaries[-1]
                    progress(f"{s.name}: {s.layout}, {s.n_trials} trials, {s.n_neurons} neurons, "
                             f"{s.source_bytes / 2**20:.1f} MB in {s.seconds:.1f} s ({s.mb_per_s:.1f} MB/s)")
        return summaries
    finally:
        for tree in trees:
            tree.close()


def write_recording(writer: StoreWriter, layout: TreeLayout) -> ConversionSummary:
    """Stream one checked FileTree into ``writer`` as recording ``layout.tree.name``, block by block."""
    start = time.perf_counter()
    block = _block_trials(layout)
    blocks = [np.arange(first, min(first + block, layout.n_trials)) for first in range(0, layout.n_trials, block)]
    source_bytes = 0
    # the next block is read while the current one is compressed and written (both release the GIL), so at
    # most two blocks are in memory
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_build_block, layout, blocks[0])
        for k in range(len(blocks)):
            ds, nbytes = pending.result()
            if k + 1 < len(blocks):
                pending = pool.submit(_build_block, layout, blocks[k + 1])
            # appends replace the group's attributes, so the (large) provenance attributes ride on the first
            # and last block only: the last write leaves them in place.
            if k in (0, len(blocks) - 1):
                ds.attrs.update(_provenance_attrs(layout))
            writer.append(layout.tree.name, ds)
            source_bytes += nbytes
    return ConversionSummary(layout.tree.name, layout.kind, layout.n_trials, layout.n_neurons, layout.max_frames,
                             source_bytes, time.perf_counter() - start, layout.skipped)


def _block_trials(layout: TreeLayout) -> int:
    """Trials per block: a whole number of store chunks (so appends never split one) within ``BLOCK_BYTES``.

    The chunk size mirrors ``store.trial_chunks``: ``CHUNK_BYTES`` of the largest per-trial variable.
    """
    frames = max(1, layout.max_frames)
    stim = layout.folders[layout.stimulus_key]
    pixels = int(np.prod(stim.shape[1:] if layout.kind == "static" else stim.shape[:2]))
    largest, total = 0, 0
    for key, n in ((layout.stimulus_key, pixels), ("responses", layout.n_neurons)):
        exact = needs_exact_copy(layout.folders[key].dtype)
        largest = max(largest, n * frames * (8 if exact else 4))
        total += n * frames * (12 if exact else 4)
    chunk = max(1, min(layout.n_trials, CHUNK_BYTES // largest))
    return max(chunk, (BLOCK_BYTES // total) // chunk * chunk)


def _build_block(layout: TreeLayout, trials: np.ndarray) -> tuple[xr.Dataset, int]:
    """Read, check and assemble trials ``trials`` as a Recording block; returns it and the source bytes read."""
    arrays: dict[str, list[np.ndarray]] = {key: [] for key in layout.folders}
    masks, lengths, nbytes = [], [], 0
    tiers = layout.tiers
    for index in trials:
        loaded = {key: _load_trial(layout, key, int(index)) for key in layout.folders}
        nbytes += sum(a.nbytes for a in loaded.values() if a is not None)
        mask, length = _check_trial(layout, int(index), loaded, str(tiers[index]))
        masks.append(mask)
        lengths.append(length)
        for key, a in loaded.items():
            arrays[key].append(_to_recording_axes(layout, key, a))
    data = {key: np.stack(values) for key, values in arrays.items()}
    stim_key = layout.stimulus_key
    stimulus_ids = _stimulus_ids(layout, trials, arrays[stim_key])
    trial_coords = {_trial_coord_name(k): v[trials] for k, v in layout.trials.items() if k != "tiers"}
    if layout.kind == "dynamic":
        trial_coords["n_frames"] = np.asarray(lengths, dtype=np.int64)
        trial_coords["n_frames_source"] = layout.folders[stim_key].frames[trials]
    neurons = layout.neurons
    coords = neurons["cell_motor_coordinates"]
    ds = make_recording(
        _as_float32(data[stim_key]),
        _as_float32(data["responses"]),
        name=layout.tree.name,
        source="sensorium2022" if layout.kind == "static" else "sensorium2023",
        unit_id=neurons["unit_ids"], x_um=coords[:, 0], y_um=coords[:, 1], z_um=coords[:, 2],
        tier=layout.trials["tiers"][trials], stimulus_id=stimulus_ids,
        behavior=_as_float32(data["behavior"]) if "behavior" in data else None,
        behavior_channels=_behavior_channels(layout) if "behavior" in data else None,
        pupil_center=(_as_float32(data["pupil_center"])
                      if "pupil_center" in data else None),
        response_mask=np.stack(masks),
        frame_rate_hz=DYNAMIC_FRAME_RATE_HZ if layout.kind == "dynamic" else None,
        neuron_coords={k: v for k, v in neurons.items() if k not in ("unit_ids", "cell_motor_coordinates")},
        trial_coords=trial_coords,
    )
    for key, values in data.items():
        folder = layout.folders[key]
        if needs_exact_copy(folder.dtype):
            var = _var(key)
            ds[exact_copy_name(var)] = (ds[var].dims, values.astype(folder.dtype, copy=False))
    return ds, nbytes


def _var(key: str) -> str:
    return "stimulus" if key in ("images", "videos") else key


def _trial_coord_name(key: str) -> str:
    return f"meta_{key}" if key in _RESERVED else key


def _behavior_channels(layout: TreeLayout) -> tuple[str, ...]:
    n = layout.folders["behavior"].shape[0]
    names = SENSORIUM_BEHAVIOR_CHANNELS if layout.kind == "static" else DYNAMIC_BEHAVIOR_CHANNELS
    return names if n == len(names) else tuple(f"behavior_{i}" for i in range(n))


def _load_trial(layout: TreeLayout, key: str, index: int) -> np.ndarray | None:
    folder = layout.folders[key]
    if not folder.present[index]:
        return None
    return layout.tree.read_npy(f"{folder.path}/{index}.npy")


def _check_trial(layout: TreeLayout, index: int, loaded: dict[str, np.ndarray | None],
                 tier: str) -> tuple[np.ndarray, int]:
    """Reject inf and misplaced NaN, naming the file; return the trial's response mask and valid frame count.

    NaN is the format's marker for missing values in two places only: trailing frames of a video trial (every
    recorded trace NaN from some frame on) and withheld test responses (the whole array NaN). Everywhere else
    the values must be finite.
    """
    tree = layout.tree
    where = {key: tree.where(f"{layout.folders[key].path}/{index}.npy") for key in loaded}
    for key, a in loaded.items():
        if a is not None and a.dtype.kind == "f" and np.isinf(a).any():
            raise DataError(f"{where[key]}: contains inf")
    responses = loaded["responses"]
    withheld = responses is None or bool(np.isnan(responses).all()) or (
        tier not in RESPONSES_REQUIRED_TIERS and not responses.any())
    if withheld and tier in RESPONSES_REQUIRED_TIERS:
        raise DataError(f"{where['responses']}: no responses (all NaN) but trial {index} is in tier {tier!r}")
    traces = {k: a for k, a in loaded.items()
              if a is not None and k != layout.stimulus_key and not (k == "responses" and withheld)}
    if layout.kind == "static":
        for key, a in traces.items():
            if a.dtype.kind == "f" and np.isnan(a).any():
                raise DataError(f"{where[key]}: contains NaN")
        _require_finite(loaded[layout.stimulus_key], where[layout.stimulus_key], None)
        return np.asarray(not withheld), 1
    frames = layout.folders[layout.stimulus_key].frames[index]
    length = _valid_frames(traces, frames)
    for key, a in traces.items():
        _require_finite(a[..., :length], where[key], "frame")
    _require_finite(loaded[layout.stimulus_key][..., :length], where[layout.stimulus_key], "frame")
    mask = np.zeros(layout.max_frames, dtype=bool)
    if not withheld:
        mask[:length] = True
    return mask, length


def _valid_frames(traces: dict[str, np.ndarray], frames: int) -> int:
    """Frames before the trailing run in which every recorded trace is NaN (the source's own padding)."""
    if not traces:
        return frames
    missing = np.ones(frames, dtype=bool)
    for a in traces.values():
        flat = a.reshape(-1, frames)
        missing &= np.isnan(flat).all(axis=0) if a.dtype.kind == "f" else False
    present = np.flatnonzero(~missing)
    return int(present[-1]) + 1 if present.size else 0


def _require_finite(a: np.ndarray, where: str, axis_name: str | None) -> None:
    if a.dtype.kind != "f":
        return
    bad = ~np.isfinite(a)
    if bad.any():
        if axis_name is None:
            raise DataError(f"{where}: contains NaN")
        frame = int(np.flatnonzero(bad.reshape(-1, a.shape[-1]).any(axis=0))[0])
        raise DataError(f"{where}: NaN at {axis_name} {frame}, inside the recorded part of the trial")


def _to_recording_axes(layout: TreeLayout, key: str, a: np.ndarray | None) -> np.ndarray:
    """One trial in Recording axis order: frames first and padded to the longest trial for videos."""
    folder = layout.folders[key]
    if layout.kind == "static":
        if a is None:
            return np.full(folder.shape, np.nan, dtype=_float_of(folder.dtype))
        return a[0] if key == "images" else a
    frames = layout.max_frames
    fill = np.nan if key == "responses" else 0
    if a is None:
        a = np.full(folder.shape[:-1] + (0,), fill, dtype=_float_of(folder.dtype))
    moved = np.moveaxis(a, -1, 0)
    out = np.full((frames,) + moved.shape[1:], fill, dtype=moved.dtype if moved.dtype.kind == "f" or fill == 0
                  else np.float64)
    out[: moved.shape[0]] = moved
    return out


def _float_of(dtype: np.dtype) -> np.dtype:
    """A dtype that can hold NaN and every value of ``dtype`` (for withheld responses)."""
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _as_float32(a: np.ndarray) -> np.ndarray:
    """Contract float32; exactness is kept by the ``_source`` copy where ``needs_exact_copy``."""
    return a.astype(np.float32, copy=False)


def _stimulus_ids(layout: TreeLayout, trials: np.ndarray, stimuli: list[np.ndarray]) -> np.ndarray:
    key = _stimulus_id_key(layout)
    if key is not None:
        return layout.trials[key][trials]
    # no id in meta/trials: identical stimuli get identical ids from a hash of their exact source bytes
    return np.array([hashlib.blake2b(np.ascontiguousarray(s).tobytes(), digest_size=8).hexdigest()
                     for s in stimuli], dtype="<U16")


def _stimulus_id_key(layout: TreeLayout) -> str | None:
    return next((k for k in STIMULUS_ID_KEYS if k in layout.trials and layout.trials[k].ndim == 1), None)


def _provenance_attrs(layout: TreeLayout) -> dict[str, str]:
    """Attributes that make the conversion reversible: source paths, dtypes and axes; statistics; config."""
    axes = STATIC_AXES if layout.kind == "static" else DYNAMIC_AXES
    mapping: dict[str, dict] = {}
    for key, folder in layout.folders.items():
        entry = {"var": _var(key), "dtype": folder.dtype.str, "axes": list(axes[key])}
        if needs_exact_copy(folder.dtype):
            entry["exact"] = exact_copy_name(_var(key))
        mapping[folder.path] = entry
    for key, a in layout.trials.items():
        mapping[f"meta/trials/{key}.npy"] = {"var": "tier" if key == "tiers" else _trial_coord_name(key),
                                              "dtype": a.dtype.str}
    for key, a in layout.neurons.items():
        var = {"unit_ids": "unit_id", "cell_motor_coordinates": ["x_um", "y_um", "z_um"]}.get(key, key)
        mapping[f"meta/neurons/{key}.npy"] = {"var": var, "dtype": a.dtype.str}
    attrs = {
        SOURCE_MAP_ATTR: json.dumps(mapping, sort_keys=True),
        STATISTICS_ATTR: json.dumps({k: encode_array(v) for k, v in layout.statistics.items()}),
        "source_path": layout.tree.label,
        "source_layout": layout.kind,
        "source_config": json.dumps(layout.config, sort_keys=True),
        "stimulus_id_source": _stimulus_id_key(layout) or "content_hash",
    }
    if layout.skipped:
        attrs["skipped_source_folders"] = json.dumps(layout.skipped)
    return attrs

