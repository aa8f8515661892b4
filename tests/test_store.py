"""The Recording contract and the zarr store: validation, lossless lazy round trip, atomic writes."""

import numpy as np
import pytest
import zarr

from neurofit.data import StoreWriter, list_recordings, open_recording, open_truth, validate, write_store
from neurofit.errors import DataError
from tests.conftest import tiny_recording


def test_round_trip_is_lossless_and_lazy(tmp_path):
    ds, truth = tiny_recording(video_frames=6)
    path = write_store(tmp_path / "s.zarr", {"m0": ds}, {"m0": truth})
    back = open_recording(path, "m0")
    # lazy: nothing loaded until indexed
    assert not back["responses"].variable._in_memory
    for var in ds.variables:
        assert back[var].dtype == ds[var].dtype, var
        np.testing.assert_array_equal(back[var].values, ds[var].values)
    assert back.attrs["frame_rate_hz"] == 30.0
    np.testing.assert_array_equal(open_truth(path, "m0")["rates"].values, truth["rates"].values)


def test_chunks_are_trial_wise(tmp_path):
    ds, _ = tiny_recording()
    path = write_store(tmp_path / "s.zarr", {"m0": ds})
    arr = zarr.open_group(str(path))["m0"]["stimulus"]
    assert arr.chunks[1:] == arr.shape[1:]


@pytest.mark.parametrize("mutate, message", [
    (lambda ds: ds.drop_vars("responses"), "missing data variable 'responses'"),
    (lambda ds: ds.drop_vars("x_um"), "missing neuron coordinate 'x_um'"),
    (lambda ds: ds.assign_coords(unit_id=("neuron", np.zeros(ds.sizes["neuron"], int))), "not unique"),
    (lambda ds: ds.assign_coords(tier=("trial", np.array(["bogus"] * ds.sizes["trial"]))), "unknown tier"),
    (lambda ds: ds.assign(responses=ds.responses.where(ds.trial != 3)), "NaN or inf at trial 3"),
    (lambda ds: ds.assign(responses=ds.responses.astype("float64")), "must be float32"),
])
def test_validate_names_recording_and_problem(mutate, message):
    ds, _ = tiny_recording(name="mouseA")
    with pytest.raises(DataError, match=message) as err:
        validate(mutate(ds))
    assert "mouseA" in str(err.value)


def test_nan_allowed_where_masked():
    """Withheld test responses and their inputs may be NaN; a training trial with nothing recorded is an
    error (it would be silently dropped), named with its index and tier."""
    ds, _ = tiny_recording()
    test = int(np.flatnonzero(ds.tier.values == "test")[0])
    mask = np.ones(ds.sizes["trial"], bool)
    mask[test] = False
    nan_at = ds.trial == test
    ds = ds.assign(responses=ds.responses.where(~nan_at), behavior=ds.behavior.where(~nan_at),
                   pupil_center=ds.pupil_center.where(~nan_at), response_mask=("trial", mask))
    validate(ds)
    mask[3] = False
    with pytest.raises(DataError, match=r"response_mask is False for every frame of trial 3 \(tier 'train'\)"):
        validate(ds.assign(response_mask=("trial", mask)))
    mask[3] = True
    with pytest.raises(DataError, match="behavior contains NaN or inf at trial 5, where response_mask is True"):
        validate(ds.assign(behavior=ds.behavior.where(ds.trial != 5)))


def test_interrupted_write_leaves_nothing(tmp_path):
    ds, _ = tiny_recording()
    target = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError), StoreWriter(target) as w:
        w.add("m0", ds)
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_store_is_rejected(tmp_path):
    ds, _ = tiny_recording()
    half = tmp_path / "half.zarr"
    ds.to_zarr(str(half), group="m0")  # written without the completion marker
    with pytest.raises(DataError, match="not a complete neurofit store"):
        list_recordings(half)
    with pytest.raises(DataError, match="no such store"):
        list_recordings(tmp_path / "missing.zarr")


def test_overwrite_and_refusal(tmp_path):
    ds, _ = tiny_recording()
    path = write_store(tmp_path / "s.zarr", {"m0": ds})
    with pytest.raises(DataError, match="already exists"):
        write_store(path, {"m0": ds})
    ds2, _ = tiny_recording(name="m1", seed=3)
    write_store(path, {"m1": ds2}, overwrite=True)
    assert list_recordings(path) == ["m1"]
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]


def test_append_streams_trial_blocks(tmp_path):
    ds, _ = tiny_recording()
    with StoreWriter(tmp_path / "s.zarr") as w:
        for start in range(0, ds.sizes["trial"], 16):
            w.append("m0", ds.isel(trial=slice(start, start + 16)))
    back = open_recording(tmp_path / "s.zarr", "m0", validate_values=True)
    np.testing.assert_array_equal(back.stimulus.values, ds.stimulus.values)
    np.testing.assert_array_equal(back.tier.values, ds.tier.values)


def test_stores_open_in_xarray_without_warnings(tmp_path):
    """Consolidated metadata at every group: a user's plain ``xr.open_zarr`` of a recording or its truth
    reads it in one go and warns about nothing."""
    import warnings

    import xarray as xr

    ds, truth = tiny_recording()
    path = write_store(tmp_path / "s.zarr", {"m0": ds}, {"m0": truth})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opened = xr.open_zarr(path, group="m0")
        assert set(opened.data_vars) == set(ds.data_vars)
        assert "rates" in xr.open_zarr(path, group="m0/truth").data_vars
