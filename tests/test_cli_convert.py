"""``neurofit convert``: success output, and failures as one line, exit status 2 and no store left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_sensorium import make_dynamic_tree, make_static_tree, zip_tree

from neurofit.cli import main
from neurofit.data.store import list_recordings


def _no_store(tmp_path: Path, out: Path) -> bool:
    return not out.exists() and not list(tmp_path.glob(f".{out.name}*"))


def test_convert_sensorium_folder_and_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    static = make_static_tree(tmp_path)
    dynamic = zip_tree(make_dynamic_tree(tmp_path))
    out = tmp_path / "data.zarr"
    assert main(["convert", "sensorium", str(static), str(dynamic), "--out", str(out)]) == 0
    assert list_recordings(out) == [static.name, dynamic.stem]
    printed = capsys.readouterr().out
    assert f"{static.name}: static, 8 trials, 12 neurons" in printed and "MB/s" in printed
    assert main(["convert", "sensorium", str(static), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", "sensorium", str(static), "--out", str(out), "--overwrite"]) == 0
    assert list_recordings(out) == [static.name]


@pytest.mark.parametrize("damage", ["truncated_zip", "nan_responses", "neuron_meta"])
def test_convert_sensorium_failure_is_one_line_exit_2_no_store(tmp_path: Path, damage: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    good = make_dynamic_tree(tmp_path / "good", name="mouse_ok")
    root = make_static_tree(tmp_path)
    source = root
    if damage == "truncated_zip":
        source = zip_tree(root)
        source.write_bytes(source.read_bytes()[:-200])
    elif damage == "nan_responses":
        np.save(root / "data/responses/0.npy", np.full(12, np.nan, dtype=np.float32))
    else:
        np.save(root / "meta/neurons/unit_ids.npy", np.arange(5))
    out = tmp_path / "data.zarr"
    # a good source precedes the bad one: failing while scanning or while writing, nothing may remain
    assert main(["convert", "sensorium", str(good), str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("neurofit: error: ") and str(source) in err
    assert _no_store(tmp_path, out)


def test_convert_nwb_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pynwb")
    from fixtures_nwb import make_nwb

    path = make_nwb(tmp_path / "session.nwb")
    out = tmp_path / "nwb.zarr"
    assert main(["convert", "nwb", str(path), "--out", str(out), "--window", "0.1", "0.4", "--frames"]) == 0
    assert "session: 20 trials, 4 frames, 4 neurons" in capsys.readouterr().out
    assert list_recordings(out) == ["session"]
    bad = make_nwb(tmp_path / "no_ophys.nwb", ophys=False)
    out2 = tmp_path / "bad.zarr"
    assert main(["convert", "nwb", str(bad), "--out", str(out2)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no ophys data" in err and _no_store(tmp_path, out2)
