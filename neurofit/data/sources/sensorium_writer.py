"""Write recordings of a neurofit store as SENSORIUM FileTrees, in the layout the competitions released.

The inverse of ``sensorium.convert_sensorium`` (layouts in ``sensorium_layout``), one ``<i>.npy`` per trial:

- video recordings: SENSORIUM 2023, ``data/videos`` (H, W, T), ``data/responses`` (N, T), ``data/behavior``
  (C, T), ``data/pupil_center`` (2, T), float32. Every file of a recording has the same T (``pad_to``, default
  the store's frame count): the trial's valid frames, then NaN in all four arrays, the release's padding,
  which the converter reads back as the trial's length.
- image recordings: SENSORIUM 2022, ``data/images`` (1, H, W), ``data/responses`` (N,), ``data/behavior``
  (C,), ``data/pupil_center`` (2,), float32, and ``meta/trials/frame_image_id.npy`` from ``stimulus_id``.

A video trial's valid frames run through the last frame ``response_mask`` marks (a gap before it has no
place in the layout and is refused); a trial without recorded responses keeps ``n_frames`` where the store
has it (a converted release), else every frame before the trailing run in which all its inputs are NaN.
Responses are withheld (all NaN), as in the release, on trials without recorded responses and on every tier
but train/validation/oracle, even where the store has them.

Behaviour: the files name no channels. The converter names two (2023) or three (2022) channels with the
SENSORIUM names and any other count ``behavior_<i>``, so where the store has every channel of the layout's
names (2023: pupil dilation, running speed; 2022 adds the dilation's derivative) those are written in that
order; otherwise every channel is written in store order (and reads back under the names the converter gives
that count). A store with the 2022 channels exported as video thus drops the derivative, which 2023 lacks.

Also written: ``meta/trials`` ``tiers`` and ``trial_idx`` (the store's, else 0..n-1); ``meta/neurons``
``unit_ids``, ``cell_motor_coordinates`` (N, 3) x, y, z in micrometres (float64, as stored) and ``area``,
``layer`` where present; ``meta/statistics/<key>/all/<mean|std|min|max|median>.npy`` per element of a trial
file over trials (and frames), NaN ignored, from the written files in float64 as neuralpredictors computes
them; ``config.json`` ``{"links": {}}``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from neurofit.data.recording import RESPONSES_REQUIRED_TIERS, SENSORIUM_BEHAVIOR_CHANNELS, is_video
from neurofit.data.sources.sensorium import DYNAMIC_BEHAVIOR_CHANNELS
from neurofit.data.store import atomic_dir, list_recordings, open_recording, reading
from neurofit.errors import DataError
from neurofit.io import check_output_location

#: Target float32 bytes of one block of trials read from the store at a time.
BLOCK_BYTES = 64 * 2**20
#: Target float64 bytes of the values behind one block of statistics (they need every trial at once).
STAT_BYTES = 256 * 2**20
#: The statistics neuralpredictors reads from ``meta/statistics/<key>/all``, NaN (padding, withheld) ignored.
STATISTICS = {"mean": np.nanmean, "std": np.nanstd, "min": np.nanmin, "max": np.nanmax, "median": np.nanmedian}
_INPUTS = ("stimulus", "behavior", "pupil_center")


def write_sensorium_tree(store_path: str | os.PathLike, recording_name: str, out_dir: str | os.PathLike,
                         pad_to: int | None = None) -> Path:
    """Write recording ``recording_name`` of the store as one FileTree folder ``out_dir``; returns it.

    ``pad_to``: frames T of every video trial file (default the store's frame count; video recordings only).
    ``out_dir`` must not exist or be empty; the tree is built in a hidden sibling and renamed when complete.
    """
    return _export(store_path, out_dir, {recording_name: "."}, pad_to)[0]


def write_sensorium_trees(store_path: str | os.PathLike, out_dir: str | os.PathLike,
                          pad_to: int | None = None) -> list[Path]:
    """Write every recording of the store as a FileTree ``out_dir/<name>`` in one atomic write (a failure in
    any leaves nothing); returns the trees. ``pad_to`` and ``out_dir`` as for ``write_sensorium_tree``."""
    return _export(store_path, out_dir, {name: name for name in list_recordings(store_path)}, pad_to)


def _export(store_path: str | os.PathLike, out_dir: str | os.PathLike, trees: dict[str, str],
            pad_to: int | None) -> list[Path]:
    """Write recording ``name`` at ``out_dir/trees[name]`` for each of ``trees``, all or nothing."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty")
    check_output_location(out)
    # Values are checked first: the converter would refuse a tree with NaN where responses were recorded.
    datasets = {name: open_recording(store_path, name, validate_values=True) for name in trees}
    with atomic_dir(out) as tmp, reading(store_path, "the store"):
        for name, ds in datasets.items():
            _write_tree(ds, tmp / trees[name], pad_to, f"{store_path}: recording {name!r}")
    return [out / trees[name] for name in trees]


def _write_tree(ds: xr.Dataset, root: Path, pad_to: int | None, label: str) -> None:
    """Write one recording as a FileTree at ``root``; ``label`` names the recording in errors."""
    if "stimulus" not in ds.data_vars:
        raise DataError(f"{label}: has no stimulus; the SENSORIUM layout needs images or videos")
    video = is_video(ds)
    if pad_to is not None and not video:
        raise DataError(f"{label}: pad_to applies to video recordings only")
    tiers = ds["tier"].values.astype(str)
    mask = (ds["response_mask"].values if "response_mask" in ds.data_vars
            else np.ones(ds["responses"].shape[:-1], dtype=bool))
    # validate() already refused trials of RESPONSES_REQUIRED_TIERS with nothing recorded
    recorded = mask.reshape(len(tiers), -1).any(axis=1)
    withheld = ~recorded | ~np.isin(tiers, RESPONSES_REQUIRED_TIERS)
    lengths, frames = None, None
    if video:
        lengths = _valid_frames(ds, mask, recorded, label)
        frames = ds.sizes["frame"] if pad_to is None else pad_to
        if frames < 1:
            raise DataError(f"{label}: pad_to must be at least 1 frame, got {frames}")
        if lengths.max() > frames:
            trial = int(np.argmax(lengths))
            raise DataError(f"{label}: pad_to={frames} is shorter than trial {trial} ({lengths[trial]} valid "
                            "frames)")
    folders = {"videos" if video else "images": ds["stimulus"], "responses": ds["responses"]}
    if "behavior" in ds.data_vars:
        folders["behavior"] = ds["behavior"].isel(behavior_channel=_behavior_channels(ds, video))
    if "pupil_center" in ds.data_vars:
        folders["pupil_center"] = ds["pupil_center"]
    blocks = _trial_blocks(ds)
    for key, var in folders.items():
        folder = root / "data" / key
        folder.mkdir(parents=True)
        for block in blocks:
            values = var.isel(trial=block).values.astype(np.float32, copy=False)
            if key == "responses":
                values[withheld[block]] = np.nan
            for offset, trial in enumerate(range(block.start, block.stop)):
                np.save(folder / f"{trial}.npy", _release_trial(values[offset], video, lengths, frames, trial))
        for stat, value in _statistics(folder, len(tiers), video).items():
            _save(root / f"meta/statistics/{key}/all/{stat}.npy", value)
    _write_meta(ds, root, video)
    (root / "config.json").write_text(json.dumps({"links": {}}))


def _valid_frames(ds: xr.Dataset, mask: np.ndarray, recorded: np.ndarray, label: str) -> np.ndarray:
    """(trial,) valid frames of each video trial (rules in the module docstring)."""
    lengths = _extent(mask)
    gap = recorded & (mask.sum(axis=1) < lengths)
    if gap.any():
        trial = int(np.flatnonzero(gap)[0])
        raise DataError(f"{label}: trial {trial} has unrecorded frames (response_mask False) before its last "
                        "recorded one; the SENSORIUM layout can only leave a trial's end unrecorded")
    unrecorded = np.flatnonzero(~recorded)
    if "n_frames" in ds.coords:
        lengths[unrecorded] = ds["n_frames"].values[unrecorded]
    elif len(unrecorded):
        finite = np.zeros((len(unrecorded), ds.sizes["frame"]), dtype=bool)
        for var in _INPUTS:
            if var in ds.data_vars:
                values = ds[var].isel(trial=unrecorded).values
                finite |= np.isfinite(values).reshape(finite.shape + (-1,)).any(axis=2)
        lengths[unrecorded] = _extent(finite)
    return lengths


def _extent(flags: np.ndarray) -> np.ndarray:
    """(trial,) frames up to and including the last True of each row of (trial, frame) ``flags``; 0 if none."""
    last = flags.shape[1] - np.argmax(flags[:, ::-1], axis=1)
    return np.where(flags.any(axis=1), last, 0)


def _behavior_channels(ds: xr.Dataset, video: bool) -> list[int]:
    """Store channels to write, in file order (rule in the module docstring)."""
    names = [str(c) for c in ds["behavior_channel"].values]
    layout = DYNAMIC_BEHAVIOR_CHANNELS if video else SENSORIUM_BEHAVIOR_CHANNELS
    if set(layout) <= set(names):
        return [names.index(c) for c in layout]
    return list(range(len(names)))


def _trial_blocks(ds: xr.Dataset) -> list[slice]:
    """Slices of trials whose largest variable has about ``BLOCK_BYTES``, whole store chunks each (every
    variable shares the trial chunks) so no chunk is decoded twice."""
    n = ds.sizes["trial"]
    chunk = int(ds["responses"].encoding.get("chunks", (1,))[0])
    per_trial = max(ds[var][0].size * 4 for var in ("stimulus", "responses"))
    block = max(chunk, BLOCK_BYTES // per_trial // chunk * chunk)
    return [slice(start, min(start + block, n)) for start in range(0, n, block)]


def _release_trial(a: np.ndarray, video: bool, lengths: np.ndarray | None, frames: int | None,
                   trial: int) -> np.ndarray:
    """One trial from store axes ([frame,] ...) to its file: frames last, valid ones then NaN (videos); the
    image gets its channel axis (1, H, W)."""
    if not video:
        return a[None] if a.ndim == 2 else a
    length = int(lengths[trial])
    out = np.full(a.shape[1:] + (frames,), np.nan, dtype=np.float32)
    out[..., :length] = np.moveaxis(a[:length], 0, -1)
    return out


def _statistics(folder: Path, n_trials: int, video: bool) -> dict[str, np.ndarray]:
    """Statistics of each element of a trial file of ``folder`` over trials (and frames, for videos), read in
    blocks of elements so the float64 values of a block stay within ``STAT_BYTES``."""
    first = np.load(folder / "0.npy", mmap_mode="r")
    shape = first.shape[:-1] if video else first.shape
    elements = int(np.prod(shape))
    width = first.size // elements  # values per element in one file: T for videos, 1 for images
    step = max(1, STAT_BYTES // (n_trials * width * 8))
    parts: dict[str, list[np.ndarray]] = {stat: [] for stat in STATISTICS}
    for start in range(0, elements, step):
        values = np.empty((min(step, elements - start), n_trials * width))
        for i in range(n_trials):
            # one file mapped at a time: thousands of trials would exhaust the open-file limit
            trial = np.load(folder / f"{i}.npy", mmap_mode="r").reshape(elements, width)
            values[:, i * width:(i + 1) * width] = trial[start:start + step]
        # an element without any value (responses when every trial is withheld) gets NaN, without a warning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for stat, fn in STATISTICS.items():
                parts[stat].append(fn(values, axis=1))
    return {stat: np.concatenate(p).reshape(shape).astype(np.float32) for stat, p in parts.items()}


def _write_meta(ds: xr.Dataset, root: Path, video: bool) -> None:
    n_trials = ds.sizes["trial"]
    trials = {"tiers": ds["tier"].values,
              "trial_idx": ds["trial_idx"].values if "trial_idx" in ds.coords else np.arange(n_trials)}
    if not video:
        trials["frame_image_id"] = ds["stimulus_id"].values
    neurons = {"unit_ids": ds["unit_id"].values,
               "cell_motor_coordinates": np.column_stack([ds[c].values for c in ("x_um", "y_um", "z_um")])}
    neurons.update({key: ds[key].values for key in ("area", "layer") if key in ds.coords})
    for folder, arrays in (("trials", trials), ("neurons", neurons)):
        for key, value in arrays.items():
            _save(root / f"meta/{folder}/{key}.npy", value)


def _save(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # strings may come back from zarr as object arrays, which a .npy can only hold pickled (readers refuse)
    np.save(path, a.astype(str) if a.dtype.kind == "O" else a, allow_pickle=False)
