"""NWB two-photon conversion on small real NWB files written with pynwb."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pynwb")

from fixtures_nwb import CENTRES, FRAMES, ONSETS, RATE_HZ, make_nwb, scenes, traces  # noqa: E402

from neurofit.data.sources.align import Window, assign_tiers  # noqa: E402
from neurofit.data.sources.nwb import convert_nwb, read_nwb  # noqa: E402
from neurofit.data.store import open_recording  # noqa: E402
from neurofit.errors import DataError  # noqa: E402

TIMES = np.arange(600) / RATE_HZ


def _expected_means(values: np.ndarray, offset: float, duration: float) -> np.ndarray:
    return np.stack([values[(s + offset <= TIMES) & (s + offset + duration > TIMES)].mean(0) for s in ONSETS])


def test_trial_means_positions_stimulus_and_running(tmp_path: Path) -> None:
    path = make_nwb(tmp_path / "session.nwb")
    ds = read_nwb(path)
    assert ds.attrs["series"] == "dff" and ds.attrs["window_duration_s"] == pytest.approx(0.5)
    np.testing.assert_allclose(ds["responses"].values, _expected_means(traces(), 0.0, 0.5), rtol=1e-6)
    np.testing.assert_array_equal(ds["unit_id"].values, [100, 101, 102, 103])
    np.testing.assert_allclose(ds["x_um"].values, [100 + 2 * x for x, _ in CENTRES])
    np.testing.assert_allclose(ds["y_um"].values, [200 + 2 * y for _, y in CENTRES])
    assert set(ds["area"].values) == {"VISp"} and "position_note" not in ds.attrs
    np.testing.assert_array_equal(ds["stimulus"].values, scenes()[FRAMES].astype(np.float32))
    np.testing.assert_array_equal(ds["stimulus_id"].values, FRAMES)
    running = 2.0 * _expected_means(TIMES[:, None], 0.0, 0.5)
    np.testing.assert_allclose(ds["behavior"].values, running, rtol=1e-5)
    assert list(ds["behavior_channel"].values) == ["running_speed"]
    assert ds["response_mask"].values.all()


def test_frames_window_keeps_imaging_samples(tmp_path: Path) -> None:
    path = make_nwb(tmp_path / "session.nwb")
    ds = read_nwb(path, Window(offset_s=0.2, duration_s=0.8, frames=True))
    assert ds["responses"].dims == ("trial", "frame", "neuron") and ds.attrs["frame_rate_hz"] == RATE_HZ
    starts = np.searchsorted(TIMES, ONSETS + 0.2)
    np.testing.assert_array_equal(ds["responses"].values, np.stack([traces()[s: s + 8] for s in starts]))
    assert ds["stimulus"].shape == (len(FRAMES), 8, 8, 12)


def test_windows_past_the_recording_are_masked(tmp_path: Path) -> None:
    ds = read_nwb(make_nwb(tmp_path / "session.nwb"), Window(offset_s=20.0, duration_s=0.5))
    late = TIMES[-1] <= ONSETS + 20.0
    np.testing.assert_array_equal(ds["response_mask"].values, ~late)
    assert np.isnan(ds["responses"].values[late]).all()


def test_series_choice_pixel_masks_index_series_and_missing_grid(tmp_path: Path) -> None:
    path = make_nwb(tmp_path / "session.nwb", mask_kind="pixel_mask", grid=False, presentations="index",
                    running=False)
    ds = read_nwb(path, series="raw")
    # an IndexSeries sample lasts until the next one: the default window is the median interval, 2.5 s
    assert ds.attrs["window_duration_s"] == pytest.approx(2.5)
    np.testing.assert_allclose(ds["responses"].values, _expected_means(traces() * 100, 0.0, 2.5), rtol=1e-6)
    np.testing.assert_allclose(ds["x_um"].values, [x for x, _ in CENTRES])  # 1 um per pixel, origin 0
    assert "no grid_spacing" in ds.attrs["position_note"]
    np.testing.assert_array_equal(ds["stimulus"].values, scenes()[FRAMES].astype(np.float32))
    assert "behavior" not in ds
    with pytest.raises(DataError, match="no RoiResponseSeries named 'nope'"):
        read_nwb(path, series="nope")


def test_convert_writes_a_store(tmp_path: Path) -> None:
    path = make_nwb(tmp_path / "session.nwb")
    summary = convert_nwb(path, tmp_path / "out.zarr")
    ds = open_recording(tmp_path / "out.zarr", "session", validate_values=True)
    assert summary["n_trials"] == len(FRAMES) and ds.sizes["neuron"] == 4


def test_tiers_keep_repeats_together() -> None:
    tiers = assign_tiers(FRAMES)
    for frame in np.unique(FRAMES):
        assert len(set(tiers[frame == FRAMES])) == 1
    assert tiers[FRAMES == 0][0] == "test" and (tiers == "validation").any() and (tiers == "train").any()


def test_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_ophys = make_nwb(tmp_path / "no_ophys.nwb", ophys=False)
    with pytest.raises(DataError, match=r"no_ophys.nwb: no ophys data"):
        read_nwb(no_ophys)
    junk = tmp_path / "junk.nwb"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(DataError, match=r"junk.nwb: not a readable NWB file"):
        read_nwb(junk)
    monkeypatch.setitem(sys.modules, "pynwb", None)
    with pytest.raises(DataError, match=r"pip install neurofit\[nwb\]"):
        read_nwb(no_ophys)
