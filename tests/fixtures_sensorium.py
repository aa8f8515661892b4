"""Build small SENSORIUM FileTrees in exactly the published layout, for the converter tests.

The layout follows neuralpredictors' ``FileTreeDataset`` docstring and the SENSORIUM data READMEs: one
``data/<key>/<i>.npy`` per trial, ``meta/trials``, ``meta/neurons``, ``meta/statistics/<key>/<all|stimulus_frame>/
<stat>.npy`` and ``config.json`` with ``"links"``. Zips wrap the tree in a folder named after it, as
neuralpredictors' ``zip_dir`` (paths relative to the folder's parent) and the published archives do.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

STATIC_TIERS = ("train", "train", "train", "validation", "test", "test", "final_test", "train")
DYNAMIC_TIERS = ("train", "train", "oracle", "live_test_main", "live_test_bonus", "final_test_main",
                 "final_test_bonus", "train")


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


def _meta_neurons(root: Path, n: int, rng: np.random.Generator, coord_dtype: str) -> None:
    _save(root / "meta/neurons/unit_ids.npy", np.arange(1, n + 1, dtype=np.int64))
    _save(root / "meta/neurons/animal_ids.npy", np.full(n, 21067, dtype=np.int64))
    _save(root / "meta/neurons/sessions.npy", np.full(n, 10, dtype=np.int64))
    _save(root / "meta/neurons/scan_idx.npy", np.full(n, 18, dtype=np.int64))
    _save(root / "meta/neurons/area.npy", np.array(["V1"] * n))
    _save(root / "meta/neurons/layer.npy", np.array(["L2/3"] * n))
    coords = np.column_stack([rng.uniform(0, 600, n), rng.uniform(0, 600, n), rng.uniform(100, 340, n)])
    _save(root / "meta/neurons/cell_motor_coordinates.npy", coords.astype(coord_dtype))


def _statistics(root: Path, stacks: dict[str, np.ndarray], axis: int) -> None:
    """Statistics per data key, as neuralpredictors computes them (over trials, and frames for videos)."""
    for key, stack in stacks.items():
        for source in ("all", "stimulus_frame"):
            for stat, fn in (("mean", np.nanmean), ("std", np.nanstd), ("min", np.nanmin), ("max", np.nanmax),
                             ("median", np.nanmedian)):
                value = fn(stack.astype(np.float64), axis=axis).astype(stack.dtype if stack.dtype.kind == "f"
                                                                      else np.float32)
                _save(root / f"meta/statistics/{key}/{source}/{stat}.npy", value)


def make_static_tree(parent: Path, name: str = "static21067-10-18-GrayImageNet-94c6ff995dac583098847cfecd43e7b6",
                     n_neurons: int = 12, height: int = 9, width: int = 16, seed: int = 0,
                     image_dtype: str = "uint8", withheld: str = "zeros", n_trials: int | None = None) -> Path:
    """A SENSORIUM 2022 static FileTree: images (1, H, W), responses (N,), behavior (3,), pupil_center (2,).

    ``withheld`` says how test-tier responses look: ``"zeros"`` (the 2022 competition scans) or ``"real"``.
    ``n_trials`` repeats the 8-trial tier pattern to that many trials (benchmarks), ids kept per pattern copy.
    """
    rng = np.random.default_rng(seed)
    root = parent / name
    base_ids = np.array([5, 6, 7, 8, 100, 100, 200, 9], dtype=np.int64)
    copies = 1 if n_trials is None else -(-n_trials // len(STATIC_TIERS))
    tiers = np.tile(np.array(STATIC_TIERS), copies)[:n_trials]
    n = len(tiers)
    image_ids = (np.repeat(np.arange(copies) * 1000, len(base_ids)) + np.tile(base_ids, copies))[:n]
    images = {i: rng.integers(0, 256, (1, height, width)).astype(image_dtype) for i in np.unique(image_ids)}
    stacks: dict[str, list[np.ndarray]] = {"images": [], "responses": [], "behavior": [], "pupil_center": []}
    for i in range(n):
        responses = rng.gamma(1.0, 1.0, n_neurons).astype(np.float32)
        if withheld == "zeros" and tiers[i] in ("test", "final_test"):
            responses[:] = 0
        trial = {"images": images[image_ids[i]], "responses": responses,
                 "behavior": rng.normal(size=3).astype(np.float32),
                 "pupil_center": rng.normal(size=2).astype(np.float32)}
        for key, value in trial.items():
            _save(root / f"data/{key}/{i}.npy", value)
            stacks[key].append(value)
    _save(root / "meta/trials/tiers.npy", tiers)
    _save(root / "meta/trials/frame_image_id.npy", image_ids)
    _save(root / "meta/trials/trial_idx.npy", rng.permutation(n).astype(np.int64))
    _save(root / "meta/trials/frame_image_class.npy", np.array(["imagenet"] * n))
    _meta_neurons(root, n_neurons, rng, "float32")
    _statistics(root, {k: np.stack(v) for k, v in stacks.items()}, axis=0)
    (root / "config.json").write_text(json.dumps({"links": {}}))
    return root


def make_dynamic_tree(parent: Path, name: str = "dynamic29156-11-10-Video-8744edeac3b4d1ce16b680916b5267ce",
                      n_neurons: int = 10, height: int = 6, width: int = 8, seed: int = 1,
                      frames: tuple[int, ...] = (30, 24, 30, 18, 30, 21, 27, 30), nan_pad_to: int | None = None,
                      video_dtype: str = "float32", behavior_dtype: str = "float32",
                      missing_test_responses: bool = True, tiers: tuple[str, ...] = DYNAMIC_TIERS,
                      video_ids: tuple[int, ...] | None = None,
                      withheld_tiers: tuple[str, ...] | None = None) -> Path:
    """A SENSORIUM 2023 dynamic FileTree: videos (H, W, T), responses (N, T), behavior (2, T), pupil (2, T).

    Trials have the tiers ``tiers`` and frame counts ``frames``; trials with the same ``video_ids`` entry show
    the same video (repeats, as the oracle and test tiers do). With ``nan_pad_to``, every file is padded with
    trailing NaN to that many frames (videos with NaN, or 0 for integer videos), as the released files are.
    Responses of ``withheld_tiers`` (default: every tier but train and oracle) are absent
    (``missing_test_responses``) or all NaN.
    """
    rng = np.random.default_rng(seed)
    root = parent / name
    tiers = np.array(tiers)
    n = len(tiers)
    withheld_tiers = tuple(t for t in DYNAMIC_TIERS if t not in ("train", "oracle")) if withheld_tiers is None \
        else withheld_tiers
    ids = np.arange(n) if video_ids is None else np.asarray(video_ids)
    videos = {v: rng.integers(0, 256, (height, width, max(frames))).astype(video_dtype) for v in np.unique(ids)}
    stacks: dict[str, list[np.ndarray]] = {"videos": [], "responses": [], "behavior": [], "pupil_center": []}
    for i in range(n):
        t = frames[i]
        trial = {"videos": videos[ids[i]][..., :t],
                 "responses": rng.gamma(1.0, 1.0, (n_neurons, t)).astype(np.float32),
                 "behavior": rng.normal(size=(2, t)).astype(behavior_dtype),
                 "pupil_center": rng.normal(size=(2, t)).astype(np.float32)}
        if nan_pad_to is not None:
            for key, value in trial.items():
                fill = np.nan if value.dtype.kind == "f" else 0
                padded = np.full(value.shape[:-1] + (nan_pad_to,), fill, dtype=value.dtype)
                padded[..., :t] = value
                trial[key] = padded
        withheld = tiers[i] in withheld_tiers
        for key, value in trial.items():
            if key == "responses" and withheld:
                if missing_test_responses:
                    continue
                value = np.full_like(value, np.nan)
            _save(root / f"data/{key}/{i}.npy", value)
            if not (key == "responses" and withheld):
                stacks[key].append(value[..., :t])
    _save(root / "meta/trials/tiers.npy", tiers)
    _save(root / "meta/trials/trial_idx.npy", np.arange(n, dtype=np.int64))
    _meta_neurons(root, n_neurons, rng, "float64")
    _statistics(root, {k: np.concatenate(v, axis=-1) for k, v in stacks.items()}, axis=-1)
    (root / "config.json").write_text(json.dumps({"links": {}}))
    return root


def zip_tree(root: Path, zip_path: Path | None = None) -> Path:
    """Zip a FileTree the way the published archives are: entries under ``<name>/``, deflated."""
    zip_path = zip_path or root.with_suffix(".zip")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, path.relative_to(root.parent).as_posix())
    return zip_path
