"""Scan and check a SENSORIUM FileTree before any data is converted.

Layouts (neuralpredictors ``FileTreeDataset`` / ``MovieFileTreeDataset``; one ``<i>.npy`` per trial ``i``):

- **static** (SENSORIUM 2022): ``data/images`` (1, H, W), ``data/responses`` (N,), ``data/behavior`` (3,),
  ``data/pupil_center`` (2,).
- **dynamic** (SENSORIUM 2023): ``data/videos`` (H, W, T), ``data/responses`` (N, T), ``data/behavior`` (2, T),
  ``data/pupil_center`` (2, T); T (frames at 30 Hz) may differ between trials.

Both have ``meta/trials/*.npy`` (one value per trial; ``tiers.npy`` required), ``meta/neurons/*.npy`` (one
value per neuron; ``unit_ids.npy`` and ``cell_motor_coordinates.npy`` (N, 3) in micrometres required),
``meta/statistics/<key>/<all|stimulus_frame>/<stat>.npy`` and an optional ``config.json`` whose ``"links"``
rename data folders. Only ``.npy`` headers are read here, so scanning a large archive is quick.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from neurofit.data.recording import RESPONSES_REQUIRED_TIERS, TIERS
from neurofit.data.sources.filetree import FileTree
from neurofit.errors import DataError

#: Recording variable for each data folder, and the axis order of one trial file per layout.
DATA_KEYS = {"images": "stimulus", "videos": "stimulus", "responses": "responses", "behavior": "behavior",
             "pupil_center": "pupil_center"}
STATIC_AXES = {"images": ("channel", "height", "width"), "responses": ("neuron",),
               "behavior": ("behavior_channel",), "pupil_center": ("pupil_axis",)}
DYNAMIC_AXES = {"videos": ("height", "width", "frame"), "responses": ("neuron", "frame"),
                "behavior": ("behavior_channel", "frame"), "pupil_center": ("pupil_axis", "frame")}
_TRIAL_FILE = re.compile(r"^(\d+)\.npy$")


@dataclass
class DataFolder:
    """One ``data/<key>`` folder: per-trial file presence, the common trial shape and dtype."""

    key: str
    path: str
    dtype: np.dtype
    #: Shape of one trial file with the frame axis (dynamic layout) set to -1.
    shape: tuple[int, ...]
    present: np.ndarray
    #: Frames per trial (dynamic layout; 0 where the file is absent).
    frames: np.ndarray | None = None


@dataclass
class TreeLayout:
    """Everything needed to convert one FileTree, checked for consistency."""

    tree: FileTree
    kind: str
    n_trials: int
    n_neurons: int
    folders: dict[str, DataFolder]
    trials: dict[str, np.ndarray]
    neurons: dict[str, np.ndarray]
    statistics: dict[str, np.ndarray]
    config: dict
    skipped: list[str] = field(default_factory=list)

    @property
    def stimulus_key(self) -> str:
        """``images`` (static) or ``videos`` (dynamic)."""
        return "images" if self.kind == "static" else "videos"

    @property
    def max_frames(self) -> int:
        """Longest trial in frames (dynamic layout); shorter trials are padded to it."""
        return int(self.folders["videos"].frames.max()) if self.kind == "dynamic" else 0

    @property
    def tiers(self) -> np.ndarray:
        """(trial,) tier labels as ``str``."""
        return self.trials["tiers"].astype(str)


def scan_tree(tree: FileTree) -> TreeLayout:
    """Detect the layout of ``tree`` and check it; raises ``DataError`` naming the file and the problem."""
    config = _read_config(tree)
    links = config.get("links") or {}
    if not tree.is_dir("data"):
        raise DataError(f"{tree.where('data')}: missing folder (not a SENSORIUM FileTree?)")
    kind = _detect_kind(tree, links)
    trials = _read_meta(tree, "meta/trials", required=("tiers",))
    n_trials = len(trials["tiers"])
    _check_lengths(tree, "meta/trials", trials, n_trials, "trials (the length of tiers.npy)")
    tiers = trials["tiers"].astype(str)
    unknown = sorted(set(np.unique(tiers).tolist()) - set(TIERS))
    if unknown:
        raise DataError(f"{tree.where('meta/trials/tiers.npy')}: unknown tier(s) {unknown}; "
                        f"allowed: {list(TIERS)}")
    axes = STATIC_AXES if kind == "static" else DYNAMIC_AXES
    folders = {key: _scan_folder(tree, key, _resolve(links, key), axes[key], n_trials, kind == "dynamic")
               for key in axes if key in ("images", "videos", "responses") or tree.is_dir(_resolve(links, key))}
    _check_withheld(tree, folders["responses"], tiers)
    if kind == "dynamic":
        _check_frames_agree(tree, folders)
    n_neurons = folders["responses"].shape[0]
    neurons = _read_meta(tree, "meta/neurons", required=("unit_ids", "cell_motor_coordinates"))
    _check_lengths(tree, "meta/neurons", neurons, n_neurons, "neurons (the length of data/responses files)")
    if neurons["cell_motor_coordinates"].shape != (n_neurons, 3):
        got = neurons["cell_motor_coordinates"].shape
        raise DataError(f"{tree.where('meta/neurons/cell_motor_coordinates.npy')}: expected shape "
                        f"({n_neurons}, 3) (x, y, z in micrometres), got {got}")
    statistics = _read_statistics(tree)
    known = {_resolve(links, k).split("/", 1)[1] for k in axes}
    skipped = [f"data/{name}" for name in tree.listdir("data") if name not in known]
    return TreeLayout(tree, kind, n_trials, n_neurons, folders, trials, neurons, statistics, config, skipped)


def _read_config(tree: FileTree) -> dict:
    if not tree.is_file("config.json"):
        return {}
    try:
        config = json.loads(tree.read_text("config.json"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{tree.where('config.json')}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise DataError(f"{tree.where('config.json')}: expected a JSON object")
    return config


def _resolve(links: dict, key: str) -> str:
    """``data/<key>`` after the config's ``"links"`` renaming (neuralpredictors ``resolve_data_path``)."""
    return f"data/{links.get(key, key)}"


def _detect_kind(tree: FileTree, links: dict) -> str:
    has_images = tree.is_dir(_resolve(links, "images"))
    has_videos = tree.is_dir(_resolve(links, "videos"))
    if has_images and has_videos:
        raise DataError(f"{tree.where('data')}: has both images/ and videos/; cannot tell static from dynamic")
    if not (has_images or has_videos):
        raise DataError(f"{tree.where('data')}: missing folder images/ (SENSORIUM 2022) or videos/ "
                        "(SENSORIUM 2023)")
    return "static" if has_images else "dynamic"


def _read_meta(tree: FileTree, folder: str, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not tree.is_dir(folder):
        raise DataError(f"{tree.where(folder)}: missing folder")
    arrays = {name[:-4]: tree.read_npy(f"{folder}/{name}") for name in tree.listdir(folder)
              if name.endswith(".npy")}
    for name in required:
        if name not in arrays:
            raise DataError(f"{tree.where(f'{folder}/{name}.npy')}: missing file")
    return arrays


def _check_lengths(tree: FileTree, folder: str, arrays: dict[str, np.ndarray], n: int, what: str) -> None:
    for name, a in arrays.items():
        if a.ndim == 0 or a.shape[0] != n:
            raise DataError(f"{tree.where(f'{folder}/{name}.npy')}: has shape {a.shape} but there are {n} {what}")


def _scan_folder(tree: FileTree, key: str, path: str, axes: tuple[str, ...], n_trials: int,
                 dynamic: bool) -> DataFolder:
    if not tree.is_dir(path):
        raise DataError(f"{tree.where(path)}: missing folder")
    present = np.zeros(n_trials, dtype=bool)
    for name in tree.listdir(path):
        match = _TRIAL_FILE.match(name)
        if not match:
            raise DataError(f"{tree.where(f'{path}/{name}')}: unexpected file (trial files are named <i>.npy)")
        index = int(match.group(1))
        if index >= n_trials:
            raise DataError(f"{tree.where(f'{path}/{name}')}: trial {index} has no entry in meta/trials "
                            f"({n_trials} trials)")
        present[index] = True
    if key != "responses" and not present.all():
        missing = int(np.flatnonzero(~present)[0])
        raise DataError(f"{tree.where(f'{path}/{missing}.npy')}: missing file")
    frames = np.zeros(n_trials, dtype=np.int64) if dynamic else None
    ref: tuple[tuple[int, ...], np.dtype, str] | None = None
    for index in np.flatnonzero(present):
        rel = f"{path}/{index}.npy"
        shape, dtype = tree.npy_header(rel)
        if len(shape) != len(axes):
            raise DataError(f"{tree.where(rel)}: expected {len(axes)} axes {axes}, got shape {shape}")
        if dtype.kind not in "biuf":
            raise DataError(f"{tree.where(rel)}: dtype {dtype} is not numeric")
        fixed = shape[:-1] + (-1,) if dynamic else shape
        if ref is None:
            ref = (fixed, dtype, rel)
        elif fixed != ref[0]:
            raise DataError(f"{tree.where(rel)}: shape {shape} does not match {ref[2]} (shape {ref[0]}; "
                            "-1 = frames)")
        elif dtype != ref[1]:
            raise DataError(f"{tree.where(rel)}: dtype {dtype} does not match {ref[2]} (dtype {ref[1]})")
        if frames is not None:
            frames[index] = shape[-1]
    if ref is None:
        raise DataError(f"{tree.where(path)}: no trial files")
    if key == "images" and ref[0][0] != 1:
        raise DataError(f"{tree.where(ref[2])}: expected one grey channel (1, H, W), got shape {ref[0]}")
    if key == "pupil_center" and ref[0][0] != 2:
        raise DataError(f"{tree.where(ref[2])}: expected 2 pupil coordinates, got shape {ref[0]}")
    return DataFolder(key, path, ref[1], ref[0], present, frames)


def _check_withheld(tree: FileTree, responses: DataFolder, tiers: np.ndarray) -> None:
    """Response files may be absent only for test tiers (responses withheld by the benchmark)."""
    required = ~responses.present & np.isin(tiers, RESPONSES_REQUIRED_TIERS)
    if required.any():
        index = int(np.flatnonzero(required)[0])
        raise DataError(f"{tree.where(f'{responses.path}/{index}.npy')}: missing file (trial {index} is in tier "
                        f"{str(tiers[index])!r}, which needs responses)")


def _check_frames_agree(tree: FileTree, folders: dict[str, DataFolder]) -> None:
    videos = folders["videos"]
    for folder in folders.values():
        bad = folder.present & (folder.frames != videos.frames)
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise DataError(f"{tree.where(f'{folder.path}/{index}.npy')}: {folder.frames[index]} frames but "
                            f"{videos.path}/{index}.npy has {videos.frames[index]}")
    if (videos.frames == 0).any():
        index = int(np.flatnonzero(videos.frames == 0)[0])
        raise DataError(f"{tree.where(f'{videos.path}/{index}.npy')}: video has no frames")


def _read_statistics(tree: FileTree) -> dict[str, np.ndarray]:
    """Every ``.npy`` under ``meta/statistics``, keyed by its path below it without ``.npy``."""
    found: dict[str, np.ndarray] = {}
    stack = ["meta/statistics"] if tree.is_dir("meta/statistics") else []
    while stack:
        folder = stack.pop()
        for name in tree.listdir(folder):
            rel = f"{folder}/{name}"
            if tree.is_dir(rel):
                stack.append(rel)
            elif name.endswith(".npy"):
                found[rel[len("meta/statistics/"):-4]] = tree.read_npy(rel)
    return dict(sorted(found.items()))
