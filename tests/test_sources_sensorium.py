"""SENSORIUM FileTree conversion: layouts, lossless round trip, masks, streaming and clear errors."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fixtures_sensorium import make_dynamic_tree, make_static_tree, zip_tree

from neurofit.data.sources import sensorium
from neurofit.data.sources.provenance import load_statistics, source_map
from neurofit.data.sources.sensorium import convert_sensorium
from neurofit.data.store import StoreWriter, open_recording, open_store
from neurofit.errors import DataError


def _source_arrays(root: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(root).as_posix(): np.load(p) for p in sorted(root.rglob("*.npy"))}


def assert_lossless(root: Path, ds) -> None:
    """Every .npy of the tree equals what the store gives back: same dtype, same values (NaN where NaN)."""
    mapping = source_map(ds)
    stats = load_statistics(ds)
    dynamic = "frame" in ds.dims
    checked = 0
    for rel, source in _source_arrays(root).items():
        folder, _, file = rel.rpartition("/")
        if rel.startswith("data/"):
            entry = mapping[folder]
            trial = int(file[:-4])
            back = ds[entry.get("exact", entry["var"])].isel(trial=trial).values
            if dynamic:
                back = np.moveaxis(back[: int(ds["n_frames_source"][trial])], 0, -1)
            if entry["axes"][0] == "channel":
                back = back[None]
        elif rel.startswith("meta/statistics/"):
            back = stats[rel[len("meta/statistics/"):-4]]
        else:
            entry = mapping[rel]
            var = entry["var"]
            back = np.column_stack([ds[v].values for v in var]) if isinstance(var, list) else ds[var].values
        back = back.astype(np.dtype(mapping[folder]["dtype"] if rel.startswith("data/") else
                                    mapping.get(rel, {"dtype": back.dtype.str})["dtype"]))
        assert back.dtype == source.dtype, rel
        assert back.shape == source.shape, rel
        assert np.array_equal(back, source, equal_nan=source.dtype.kind == "f"), rel
        checked += 1
    assert checked == len(list(root.rglob("*.npy")))
    assert json.loads(ds.attrs["source_config"]) == json.loads((root / "config.json").read_text())


def test_static_folder_is_lossless_and_keeps_metadata(tmp_path: Path) -> None:
    root = make_static_tree(tmp_path)
    (summary,) = convert_sensorium([root], tmp_path / "out.zarr")
    ds = open_recording(tmp_path / "out.zarr", root.name, validate_values=True)
    assert summary.layout == "static" and ds.attrs["source"] == "sensorium2022"
    assert ds["stimulus"].dims == ("trial", "height", "width") and ds["stimulus"].dtype == np.float32
    assert list(ds["behavior_channel"].values) == ["pupil_dilation", "pupil_dilation_derivative", "running_speed"]
    kept = {"area", "layer", "animal_ids", "scan_idx", "sessions", "frame_image_class", "trial_idx"}
    assert kept <= set(ds.coords)
    np.testing.assert_array_equal(ds["stimulus_id"].values, np.load(root / "meta/trials/frame_image_id.npy"))
    # the competition scans' test responses are zeroed: kept as zeros, but masked as withheld
    assert list(ds["response_mask"].values) == [t not in ("test", "final_test") for t in ds["tier"].values]
    assert_lossless(root, ds)


def test_dynamic_zip_pads_to_longest_and_is_lossless(tmp_path: Path) -> None:
    root = make_dynamic_tree(tmp_path, nan_pad_to=32, video_dtype="uint8")
    archive = zip_tree(root)
    (summary,) = convert_sensorium([archive], tmp_path / "out.zarr")
    ds = open_recording(tmp_path / "out.zarr", root.name, validate_values=True)
    assert summary.max_frames == 32 and ds.attrs["frame_rate_hz"] == 30.0
    assert ds["stimulus"].dims == ("trial", "frame", "height", "width")
    assert list(ds["behavior_channel"].values) == ["pupil_dilation", "running_speed"]
    frames = (30, 24, 30, 18, 30, 21, 27, 30)
    np.testing.assert_array_equal(ds["n_frames"].values, frames)
    mask = ds["response_mask"].values
    for trial, (tier, n) in enumerate(zip(ds["tier"].values, frames)):
        recorded = tier in ("train", "oracle")
        assert mask[trial].sum() == (n if recorded else 0), tier
        assert not recorded or np.isnan(ds["responses"].values[trial, n:]).all()
    # test trials without responses are kept with their stimulus so predictions can be made
    assert np.isnan(ds["responses"].values[3]).all() and np.isfinite(ds["stimulus"].values[3, :18]).all()
    assert ds.attrs["stimulus_id_source"] == "content_hash"
    assert_lossless(root, ds)


def test_dynamic_unpadded_files_float64_behavior_get_exact_copy(tmp_path: Path) -> None:
    root = make_dynamic_tree(tmp_path, behavior_dtype="float64", missing_test_responses=False)
    shutil.copy(root / "data/videos/0.npy", root / "data/videos/7.npy")  # a repeat shares its stimulus id
    convert_sensorium([root], tmp_path / "out.zarr")
    ds = open_recording(tmp_path / "out.zarr", root.name, validate_values=True)
    assert ds["behavior"].dtype == np.float32 and ds["behavior_source"].dtype == np.float64
    assert ds["stimulus_id"].values[0] == ds["stimulus_id"].values[7] != ds["stimulus_id"].values[1]
    assert ds["stimulus"].shape[1] == 30 and ds["stimulus"].values[1, 24:].max() == 0  # padding is 0 for inputs
    assert_lossless(root, ds)


def test_streams_in_blocks_with_trial_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_dynamic_tree(tmp_path)
    monkeypatch.setattr(sensorium, "BLOCK_BYTES", 1)  # one chunk per block
    monkeypatch.setattr(sensorium, "CHUNK_BYTES", 20_000)
    blocks: list[int] = []
    append = StoreWriter.append
    monkeypatch.setattr(StoreWriter, "append", lambda self, name, ds: (blocks.append(ds.sizes["trial"]),
                                                                       append(self, name, ds)))
    convert_sensorium([root], tmp_path / "out.zarr")
    ds = open_recording(tmp_path / "out.zarr", root.name, validate_values=True)
    chunk = 20_000 // (6 * 8 * 30 * 4)  # trials of the largest per-trial variable (the video) in CHUNK_BYTES
    assert blocks == [chunk, chunk, 8 - 2 * chunk]
    assert ds["responses"].encoding["chunks"][0] == ds["stimulus"].encoding["chunks"][0] == chunk
    assert "statistics" in ds.attrs and "source_map" in ds.attrs
    assert_lossless(root, ds)


def test_several_sources_share_one_store(tmp_path: Path) -> None:
    static = make_static_tree(tmp_path)
    dynamic = zip_tree(make_dynamic_tree(tmp_path))
    summaries = convert_sensorium([static, dynamic], tmp_path / "out.zarr")
    assert [s.name for s in summaries] == [static.name, dynamic.stem]
    assert list(open_store(tmp_path / "out.zarr")) == [static.name, dynamic.stem]


def test_links_in_config_rename_data_folders(tmp_path: Path) -> None:
    root = make_static_tree(tmp_path)
    (root / "data/images").rename(root / "data/frames")
    (root / "config.json").write_text(json.dumps({"links": {"images": "frames"}}))
    convert_sensorium([root], tmp_path / "out.zarr")
    ds = open_recording(tmp_path / "out.zarr", root.name)
    assert source_map(ds)["data/frames"]["var"] == "stimulus"


def _break(case: str, tmp: Path) -> tuple[Path, str]:
    """A broken copy of a valid tree and the text its error must contain."""
    if case in ("nan_inside_video_trial", "frames_disagree", "inf"):
        root = make_dynamic_tree(tmp)
    else:
        root = make_static_tree(tmp)
    if case == "missing_meta":
        shutil.rmtree(root / "meta/trials")
        return root, "meta/trials: missing folder"
    if case == "missing_file":
        (root / "data/images/3.npy").unlink()
        return root, "data/images/3.npy: missing file"
    if case == "missing_train_responses":
        (root / "data/responses/0.npy").unlink()
        return root, "data/responses/0.npy: missing file (trial 0 is in tier 'train'"
    if case == "inconsistent_shape":
        np.save(root / "data/responses/2.npy", np.ones(13, dtype=np.float32))
        return root, "data/responses/2.npy: shape (13,) does not match"
    if case == "neuron_meta_length":
        np.save(root / "meta/neurons/area.npy", np.array(["V1"] * 11))
        return root, "meta/neurons/area.npy: has shape (11,) but there are 12 neurons"
    if case == "nan_in_train_responses":
        r = np.load(root / "data/responses/1.npy")
        r[4] = np.nan
        np.save(root / "data/responses/1.npy", r)
        return root, "data/responses/1.npy: contains NaN"
    if case == "unknown_tier":
        tiers = np.load(root / "meta/trials/tiers.npy")
        tiers[2] = "holdout"
        np.save(root / "meta/trials/tiers.npy", tiers)
        return root, "meta/trials/tiers.npy: unknown tier(s) ['holdout']"
    if case == "nan_inside_video_trial":
        r = np.load(root / "data/responses/0.npy")
        r[:, 5] = np.nan
        np.save(root / "data/responses/0.npy", r)
        return root, "data/responses/0.npy: NaN at frame 5, inside the recorded part"
    if case == "frames_disagree":
        np.save(root / "data/behavior/1.npy", np.zeros((2, 23), dtype=np.float32))
        return root, "data/behavior/1.npy: 23 frames but data/videos/1.npy has 24"
    if case == "inf":
        b = np.load(root / "data/pupil_center/0.npy")
        b[0, 3] = np.inf
        np.save(root / "data/pupil_center/0.npy", b)
        return root, "data/pupil_center/0.npy: contains inf"
    if case == "stray_file":
        np.save(root / "data/behavior/extra.npy", np.zeros(3))
        return root, "data/behavior/extra.npy: unexpected file"
    raise AssertionError(case)


CASES = ["missing_meta", "missing_file", "missing_train_responses", "inconsistent_shape", "neuron_meta_length",
         "nan_in_train_responses", "unknown_tier", "nan_inside_video_trial", "frames_disagree", "inf",
         "stray_file"]


@pytest.mark.parametrize("case", CASES)
def test_errors_name_the_file_and_leave_no_store(tmp_path: Path, case: str) -> None:
    root, expected = _break(case, tmp_path)
    out = tmp_path / "out.zarr"
    with pytest.raises(DataError) as err:
        convert_sensorium([root], out)
    assert expected in str(err.value) and str(root) in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".out.zarr*"))


def test_truncated_zip_is_reported(tmp_path: Path) -> None:
    archive = zip_tree(make_static_tree(tmp_path))
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        convert_sensorium([archive], tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_corrupt_zip_member_is_reported(tmp_path: Path) -> None:
    archive = zip_tree(make_static_tree(tmp_path))
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(f"{archive.stem}/data/responses/5.npy")
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 10: start + 20] = b"\xff" * 10  # damage the compressed bytes; the CRC check catches it
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"data/responses/5.npy: (cannot be read|not a readable)"):
        convert_sensorium([archive], tmp_path / "out.zarr")


def test_duplicate_names_and_missing_source(tmp_path: Path) -> None:
    root = make_static_tree(tmp_path)
    with pytest.raises(DataError, match="several sources"):
        convert_sensorium([root, zip_tree(root)], tmp_path / "out.zarr")
    with pytest.raises(DataError, match="no such file or folder"):
        convert_sensorium([tmp_path / "nope"], tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()
