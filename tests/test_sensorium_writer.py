"""``neurofit export sensorium``: the released FileTree layouts, an exact round trip through ``neurofit convert
sensorium``, and bad input as one line, exit status 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import tiny_recording

from neurofit.cli import main
from neurofit.data import open_recording, write_store
from neurofit.data.recording import RESPONSES_REQUIRED_TIERS, SENSORIUM_BEHAVIOR_CHANNELS
from neurofit.data.sources.provenance import load_statistics
from neurofit.data.store import StoreWriter

FRAMES = 12
#: True lengths of some video trials (the rest have all FRAMES); trial 17 is a test trial and 18 a test trial
#: without recorded responses, whose length only its NaN-padded inputs tell.
SHORT = {1: 7, 4: 10, 9: 5, 17: 9, 18: 8}


def _video_recording() -> tuple[xr.Dataset, np.ndarray]:
    """A video recording whose short trials end in masked, all-NaN frames as a converted release's do; and the
    (trial,) true lengths."""
    ds, _ = tiny_recording("video", n_neurons=7, n_train=10, n_val=3, n_test_images=3, repeats=2,
                           video_frames=FRAMES)
    lengths = np.full(ds.sizes["trial"], FRAMES)
    lengths[list(SHORT)] = list(SHORT.values())
    valid = xr.DataArray(np.arange(FRAMES) < lengths[:, None], dims=("trial", "frame"))
    mask = valid.values.copy()
    mask[18] = False
    ds = ds.assign({var: ds[var].where(valid) for var in ("stimulus", "responses", "behavior", "pupil_center")})
    # the contract's SENSORIUM channel names, so the export picks the 2023 pair (dilation, running speed)
    ds = ds.assign(response_mask=(("trial", "frame"), mask)).assign_coords(
        behavior_channel=list(SENSORIUM_BEHAVIOR_CHANNELS), area=("neuron", np.array(["V1"] * 4 + ["LM"] * 3)))
    return ds, lengths


def _static_recording() -> xr.Dataset:
    ds, _ = tiny_recording("static", n_neurons=9, n_train=12, n_val=4, n_test_images=2, repeats=2, seed=3)
    mask = np.ones(ds.sizes["trial"], dtype=bool)
    mask[-1] = False  # a test trial without recorded responses
    return ds.assign(responses=ds["responses"].where(xr.DataArray(mask, dims="trial")),
                     response_mask=("trial", mask))


def _expected_mask(ds: xr.Dataset) -> np.ndarray:
    """What the round trip gives: recorded responses only on the tiers that the release does not withhold."""
    required = np.isin(ds["tier"].values, RESPONSES_REQUIRED_TIERS)
    return ds["response_mask"].values & required.reshape((-1,) + (1,) * (ds["response_mask"].ndim - 1))


def _assert_equal(back: np.ndarray, expected: np.ndarray) -> None:
    assert back.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(back, expected)  # NaN where NaN


def _assert_neurons_and_trials(back: xr.Dataset, ds: xr.Dataset) -> None:
    for coord in ("unit_id", "x_um", "y_um", "z_um", "tier"):
        np.testing.assert_array_equal(back[coord].values, ds[coord].values, err_msg=coord)
    assert back["x_um"].dtype == np.float64
    np.testing.assert_array_equal(back["trial_idx"].values, np.arange(ds.sizes["trial"]))


def _no_output(tmp_path: Path, out: Path) -> bool:
    return not out.exists() and not list(tmp_path.glob(f".{out.name}*"))


@pytest.mark.parametrize("pad_to", [None, 15])
def test_video_round_trip_is_exact(tmp_path: Path, pad_to: int | None) -> None:
    ds, lengths = _video_recording()
    store = write_store(tmp_path / "video.zarr", {"video": ds})
    tree = tmp_path / "dynamic-mouse"
    pad = [] if pad_to is None else ["--pad-to", str(pad_to)]
    assert main(["export", "sensorium", str(store), "--recording", "video", "--out", str(tree), *pad]) == 0
    frames = pad_to or FRAMES

    # the SENSORIUM 2023 release layout: frames last, float32, every file NaN-padded to one length
    shapes = {"videos": (8, 10, frames), "responses": (7, frames), "behavior": (2, frames),
              "pupil_center": (2, frames)}
    for key, shape in shapes.items():
        a = np.load(tree / f"data/{key}/1.npy")
        assert a.shape == shape and a.dtype == np.float32, key
        assert np.isfinite(a[..., :7]).all() and np.isnan(a[..., 7:]).all(), key
    assert np.isnan(np.load(tree / "data/responses/17.npy")).all()  # a test tier: responses withheld
    assert np.isfinite(np.load(tree / "data/videos/17.npy")[..., :9]).all()
    assert json.loads((tree / "config.json").read_text()) == {"links": {}}
    assert np.load(tree / "meta/neurons/cell_motor_coordinates.npy").shape == (7, 3)
    assert sorted(p.name for p in (tree / "meta/statistics/responses/all").iterdir()) == [
        "max.npy", "mean.npy", "median.npy", "min.npy", "std.npy"]

    assert main(["convert", "sensorium", str(tree), "--out", str(tmp_path / "back.zarr")]) == 0
    back = open_recording(tmp_path / "back.zarr", tree.name, validate_values=True)
    assert back.sizes["frame"] == frames
    np.testing.assert_array_equal(back["n_frames"].values, lengths)
    original = ds.isel(frame=slice(0, FRAMES))
    kept = back.isel(frame=slice(0, FRAMES))
    padding = back.isel(frame=slice(FRAMES, None))
    assert np.isnan(padding["stimulus"].values).all() and not padding["response_mask"].values.any()
    mask = _expected_mask(original)
    np.testing.assert_array_equal(kept["response_mask"].values, mask)
    _assert_equal(kept["stimulus"].values, original["stimulus"].values)
    _assert_equal(kept["responses"].values, np.where(mask[..., None], original["responses"].values, np.nan))
    _assert_equal(kept["behavior"].values, original["behavior"].values[..., [0, 2]])
    _assert_equal(kept["pupil_center"].values, original["pupil_center"].values)
    assert list(back["behavior_channel"].values) == ["pupil_dilation", "running_speed"]
    _assert_neurons_and_trials(back, ds)
    np.testing.assert_array_equal(back["area"].values, ds["area"].values)
    stats = load_statistics(back)
    recorded = np.where(mask[..., None], original["responses"].values, np.nan).astype(np.float64)
    np.testing.assert_allclose(stats["responses/all/mean"], np.nanmean(recorded, axis=(0, 1)), rtol=1e-6)
    stimulus = original["stimulus"].values.astype(np.float64)
    np.testing.assert_allclose(stats["videos/all/median"], np.nanmedian(stimulus, axis=(0, 1)), rtol=1e-6)


def test_static_round_trip_is_exact_one_tree_per_recording(tmp_path: Path) -> None:
    ds = _static_recording()
    video, _ = _video_recording()
    store = write_store(tmp_path / "both.zarr", {"static": ds, "video": video})
    out = tmp_path / "trees"
    out.mkdir()  # an existing empty folder may be written into
    assert main(["export", "sensorium", str(store), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["static", "video"]
    tree = out / "static"
    shapes = {"images": (1, 8, 10), "responses": (9,), "behavior": (3,), "pupil_center": (2,)}
    for key, shape in shapes.items():
        a = np.load(tree / f"data/{key}/0.npy")
        assert a.shape == shape and a.dtype == np.float32, key
    np.testing.assert_array_equal(np.load(tree / "meta/trials/frame_image_id.npy"), ds["stimulus_id"].values)

    assert main(["convert", "sensorium", str(tree), str(out / "video"), "--out", str(tmp_path / "back.zarr")]) == 0
    back = open_recording(tmp_path / "back.zarr", "static", validate_values=True)
    mask = _expected_mask(ds)
    np.testing.assert_array_equal(back["response_mask"].values, mask)
    _assert_equal(back["stimulus"].values, ds["stimulus"].values)
    _assert_equal(back["responses"].values, np.where(mask[:, None], ds["responses"].values, np.nan))
    _assert_equal(back["behavior"].values, ds["behavior"].values)  # store order: the channels have no names
    _assert_equal(back["pupil_center"].values, ds["pupil_center"].values)
    np.testing.assert_array_equal(back["stimulus_id"].values, ds["stimulus_id"].values)
    _assert_neurons_and_trials(back, ds)


@pytest.mark.parametrize("case", ["out_not_empty", "unknown_recording", "pad_too_short", "train_unrecorded"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, case: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ds, _ = _video_recording()
    if case == "train_unrecorded":
        mask = ds["response_mask"].values.copy()
        mask[2] = False
        ds = ds.assign(response_mask=(("trial", "frame"), mask))
    store = tmp_path / "video.zarr"
    # write_store validates, and refuses that trial itself; a block-streamed write does not
    with StoreWriter(store) as writer:
        writer.append("video", ds)
    out = tmp_path / "tree"
    args = ["export", "sensorium", str(store), "--recording", "video", "--out", str(out)]
    expected = {"out_not_empty": f"{out}: already exists and is not empty",
                "unknown_recording": "no recording 'nope'",
                "pad_too_short": "pad_to=10 is shorter than trial 0 (12 valid frames)",
                "train_unrecorded": "response_mask is False for every frame of trial 2 (tier 'train')"}[case]
    if case == "out_not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "unknown_recording":
        args[4] = "nope"
    elif case == "pad_too_short":
        args += ["--pad-to", "10"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("neurofit: error: ") and expected in err
    if case == "out_not_empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"] and not list(tmp_path.glob(".tree*"))
    else:
        assert _no_output(tmp_path, out)

