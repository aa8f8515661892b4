"""Atomic writes: the file appears whole or not at all."""

import json

import numpy as np
import pytest

from neurofit.io import atomic_path, save_npz, write_json


def test_success_renames_into_place(tmp_path):
    write_json(tmp_path / "m.json", {"a": np.float32(0.5)})
    save_npz(tmp_path / "w.npz", x=np.arange(3))
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 0.5}
    np.testing.assert_array_equal(np.load(tmp_path / "w.npz")["x"], np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "w.npz"]


def test_failure_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
