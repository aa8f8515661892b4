"""Bad input across every command: malformed configs, damaged stores, unwritable outputs, damaged run
directories, malformed RNN data and interrupted runs.

The promise (README): bad input stops with exactly one line on stderr, ``neurofit: error: <file or recording>:
<problem>``, exit status 2 and no traceback, and leaves nothing half written that a later command would accept
as valid (nor anything that blocks a corrected rerun). An unexpected internal error prints a traceback and a
line asking for a bug report, and exits with status 1.

Most cases drive ``neurofit.cli.main`` in process (fast; an exception escaping ``main`` is recorded as what
the interpreter would print: a traceback and exit status 1). Cases that need the real process (exit status,
traceback, a ``kill -9``) run ``python -m neurofit`` in a subprocess with ``PYTHONWARNINGS=ignore``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from neurofit.cli import main
from neurofit.data import make_recording, write_store
from neurofit.data.store import list_recordings
from neurofit.errors import DataError
from tests.conftest import tiny_recording
from tests.fixtures_sensorium import make_static_tree

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
LN = str(CONFIGS / "ln.yaml")


# --------------------------------------------------------------------------------------------------------------
# running the command line and judging its stderr
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Result:
    """What one command did: exit status, stdout, stderr, and how it was called (for failure messages)."""

    returncode: int
    stdout: str
    stderr: str
    argv: list[str] = field(default_factory=list)

    def describe(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-8:])
        return f"neurofit {' '.join(self.argv)}\n-> exit {self.returncode}; stderr (last lines):\n{tail}"


def run_cli(*argv: object) -> Result:
    """``neurofit ARGV`` in this process, as the console script would run it."""
    args = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    # The entry point attaches a handler for neurofit's own log messages to the sys.stderr of its first call;
    # drop it around each call so every call's messages land in that call's stderr, as in a fresh process.
    logger = logging.getLogger("neurofit")
    saved = logger.handlers[:]
    logger.handlers.clear()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(args)
        except SystemExit as exc:  # argparse, or an explicit exit
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:  # what the interpreter would print for an exception escaping the entry point
            traceback.print_exc(file=err)
            code = 1
        finally:
            logger.handlers[:] = saved
    return Result(int(code or 0), out.getvalue(), err.getvalue(), args)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}


def run_sub(*argv: object, timeout: float = 180) -> Result:
    """``python -m neurofit ARGV`` in a subprocess (the real exit status and stderr)."""
    args = [str(a) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "neurofit", *args], capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr, args)


#: Lines on stderr that are not neurofit's: Lightning's rank-zero info messages and tqdm progress bars. Python
#: warnings are silenced (``PYTHONWARNINGS=ignore`` / ``warnings.simplefilter``); anything else counts.
_LIGHTNING_INFO = re.compile(
    r"^(GPU available:|TPU available:|HPU available:|IPU available:|LOCAL_RANK:|💡 Tip:|Seed set to|"
    r"`Trainer\(|`Trainer\.fit` stopped|Restoring states from the checkpoint|Restored all states from the "
    r"checkpoint|Missing logger folder|Checkpoint directory .* exists|You are using a CUDA device)")
_PROGRESS = re.compile(r"(\d+it/s|\?it/s|s/it|it/s\]|^(Epoch \d+|Training|Validation|Validation DataLoader \d+|"
                       r"Sanity Checking)\b.*[|:])")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def meaningful_lines(stderr: str) -> list[str]:
    """stderr lines that are neither empty nor Lightning/tqdm noise (progress bars redraw with ``\\r``)."""
    lines = []
    for raw in _ANSI.sub("", stderr).replace("\r", "\n").splitlines():
        line = raw.strip()
        if line and not _LIGHTNING_INFO.search(line) and not _PROGRESS.search(line):
            lines.append(line)
    return lines


def assert_one_line_error(proc: Result, must_name: str | list[str]) -> str:
    """Exit status 2, no traceback, and exactly one ``neurofit: error:`` line on stderr, the last one that is not
    Lightning/tqdm noise, containing every string of ``must_name`` (the file or recording at fault). Progress
    messages before it are allowed (a problem found mid-run); nothing may follow it. Returns that line."""
    names = [must_name] if isinstance(must_name, str) else list(must_name)
    assert "Traceback (most recent call last)" not in proc.stderr, f"traceback printed\n{proc.describe()}"
    assert proc.returncode == 2, f"expected exit status 2\n{proc.describe()}"
    lines = meaningful_lines(proc.stderr)
    errors = [line for line in lines if line.startswith("neurofit: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], \
        f"expected exactly one 'neurofit: error:' line, last on stderr\n{proc.describe()}"
    missing = [n for n in names if n not in errors[0]]
    assert not missing, f"the error line does not name {missing}\n{proc.describe()}"
    return errors[0]


def assert_nothing_written(path: Path) -> None:
    """Neither ``path`` nor a hidden sibling being built for it (``.NAME.partial-*``, ``.NAME.tmp-*``)."""
    assert not path.exists(), f"{path} was created"
    siblings = sorted(p.name for p in path.parent.glob(f".{path.name}*")) if path.parent.is_dir() else []
    assert not siblings, f"hidden partial output left next to {path}: {siblings}"


def partials(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.partial-*"))


def digest(folder: Path) -> dict[str, tuple[str, float]]:
    """Content hash and mtime of every file under ``folder``."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def chunk_files(array_dir: Path) -> list[Path]:
    """The chunk files of one zarr array, v3 (``c/0/0``) or v2 (``0.0``) layout: every file but metadata."""
    meta = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}
    return sorted(p for p in array_dir.rglob("*") if p.is_file() and p.name not in meta)


# --------------------------------------------------------------------------------------------------------------
# small data, shared by the module
# --------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_input")


@pytest.fixture(scope="module")
def base_store(workdir) -> Path:
    """Two image recordings of different neuron counts (12, 9) with truth, as ``tiny_store``."""
    recs, truths = {}, {}
    for i, n in enumerate((12, 9)):
        recs[f"m{i}"], truths[f"m{i}"] = tiny_recording(f"m{i}", n_neurons=n, seed=i)
    return write_store(workdir / "tiny.zarr", recs, truths)


@pytest.fixture
def store(base_store, tmp_path) -> Path:
    """A private copy of the base store, to damage."""
    copy = tmp_path / "data.zarr"
    shutil.copytree(base_store, copy)
    return copy


@pytest.fixture(scope="module")
def fitted_run(workdir, base_store) -> Path:
    """A finished linear-nonlinear run (one epoch)."""
    run = workdir / "ln_run"
    result = run_cli("fit", "--data", base_store, "--config", LN, "--out", run, "--max-epochs", 1)
    assert result.returncode == 0, result.describe()
    return run


@pytest.fixture(scope="module")
def evaluated_run(workdir, fitted_run) -> Path:
    run = workdir / "ln_run_evaluated"
    shutil.copytree(fitted_run, run)
    result = run_cli("evaluate", run, "--no-figures")
    assert result.returncode == 0, result.describe()
    return run


@pytest.fixture
def run_copy(fitted_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(fitted_run, copy)
    return copy


def _rnn_arrays(n_units: int = 30, n_samples: int = 150):
    from neurofit.data.simulate.regions import simulate_regions

    sim = simulate_regions(1, n_units=n_units, n_samples=n_samples, n_seq=3, burn_in=50)
    return sim.rates[0].T.astype(np.float64), np.asarray(sim.regions).astype(str), float(sim.dt)


@pytest.fixture(scope="module")
def rnn_arrays():
    return _rnn_arrays()


@pytest.fixture(scope="module")
def rnn_npz(workdir, rnn_arrays) -> Path:
    rates, regions, dt = rnn_arrays
    path = workdir / "rnn.npz"
    np.savez(path, rates=rates, regions=regions, dt=dt)
    return path


@pytest.fixture(scope="module")
def rnn_config(workdir) -> Path:
    path = workdir / "rnn_fast.yaml"
    path.write_text(yaml.safe_dump({"model": {"dt_factor": 2}, "rls": {"runs": 2}}))
    return path


@pytest.fixture(scope="module")
def rnn_run(workdir, rnn_npz, rnn_config) -> Path:
    run = workdir / "rnn_run"
    result = run_cli("rnn", "fit", "--data", rnn_npz, "--out", run, "--config", rnn_config, "--quiet")
    assert result.returncode == 0, result.describe()
    return run


@pytest.fixture(scope="module")
def rnn_base_store(workdir, rnn_arrays) -> Path:
    """A time-series store (trial, frame, neuron) with a ``region`` coordinate, for ``rnn fit --data X.zarr``."""
    rates, regions, dt = rnn_arrays
    n = rates.shape[0]
    rng = np.random.default_rng(0)
    ds = make_recording(None, rates.T[None].astype(np.float32), name="regions", source="test",
                        unit_id=np.arange(n), x_um=rng.uniform(0, 500, n), y_um=rng.uniform(0, 500, n),
                        z_um=rng.uniform(100, 300, n), tier=np.array(["train"]), stimulus_id=np.array([0]),
                        neuron_coords={"region": regions}, frame_rate_hz=1.0 / dt)
    return write_store(workdir / "regions.zarr", {"regions": ds})


@pytest.fixture
def rnn_store(rnn_base_store, tmp_path) -> Path:
    copy = tmp_path / "regions.zarr"
    shutil.copytree(rnn_base_store, copy)
    return copy


@pytest.fixture(scope="module")
def sensorium_tree(workdir) -> Path:
    return make_static_tree(workdir / "trees")


@pytest.fixture
def blocker(tmp_path) -> Path:
    """A regular file: an output path under it can never be created."""
    path = tmp_path / "blocker.txt"
    path.write_text("not a folder\n")
    return path


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nothing can be written in. Tests run as root, which ignores ``chmod 555``; then the folder is
    also made immutable (``chattr +i``), which binds root too."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False

    def writable() -> bool:
        probe = folder / ".probe"
        try:
            probe.write_text("x")
        except OSError:
            return False
        probe.unlink()
        return True

    try:
        if writable():
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if writable():
            pytest.skip("cannot make a read-only folder here (root, no chattr); out-under-a-file covers it")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


def fit_args(store: Path, out: Path, *extra: object, config: str = LN, epochs: int | None = 1) -> list:
    args = ["fit", "--data", store, "--config", config, "--out", out]
    if epochs is not None:
        args += ["--max-epochs", epochs]
    return args + list(extra)


# --------------------------------------------------------------------------------------------------------------
# configs: refused before the run directory exists
# --------------------------------------------------------------------------------------------------------------

ENCODER_CONFIG_FILES = {
    "yaml_syntax": "training:\n  lr: [0.001\n  max_epochs: 1\n",
    "unknown_section": "trainig:\n  lr: 0.001\n",
    "unknown_key": "training:\n  learning_rate: 0.001\n",
    "wrong_type": "training:\n  max_epochs: ten\n",
    "bool_as_number": "training:\n  lr: true\n",
    "negative_lr": "training:\n  lr: -0.001\n",
    "unknown_core": "model:\n  core: {name: resnet9000}\n",
    "unknown_core_option": "model:\n  core: {name: conv, chanels: 4}\n",
    "missing_parent": "extends: no_such_parent.yaml\n",
    "not_a_mapping": "- just\n- a list\n",
}


@pytest.mark.parametrize("case", sorted(ENCODER_CONFIG_FILES))
def test_fit_config_file_errors_before_the_run_dir(case, base_store, tmp_path):
    config = tmp_path / "bad.yaml"
    text = ENCODER_CONFIG_FILES[case]
    config.write_text(text if case in ("missing_parent", "not_a_mapping") else f"extends: {LN}\n{text}")
    out = tmp_path / "run"
    # no --max-epochs: the file's own values must be checked, not replaced first
    result = run_cli(*fit_args(base_store, out, config=str(config), epochs=None))
    assert_one_line_error(result, str(config) if case != "missing_parent" else "no_such_parent.yaml")
    assert_nothing_written(out)


SET_OVERRIDES = {
    "misspelled_key": ("training.max_epoch=3", "training.max_epoch"),
    "wrong_type": ("training.max_epochs=ten", "training.max_epochs"),
    "negative_lr": ("training.lr=-0.01", "training.lr"),
    "zero_batch_size": ("data.batch_size=0", "data.batch_size"),
    "unknown_readout": ("model.readout.name=gaussain", "model.readout"),
    "unknown_interaction": ("model.interactions=[{name: atention}]", "model.interactions"),
    "unknown_scheduler": ("training.scheduler=sometimes", "training.scheduler"),
    "no_equals_sign": ("training.lr", "training.lr"),
}


@pytest.mark.parametrize("case", sorted(SET_OVERRIDES))
def test_fit_set_override_errors_before_the_run_dir(case, base_store, tmp_path):
    override, name = SET_OVERRIDES[case]
    out = tmp_path / "run"
    result = run_cli(*fit_args(base_store, out, "--set", override))
    assert_one_line_error(result, name)
    assert_nothing_written(out)


def test_fit_yaml_syntax_error_in_a_real_process(base_store, tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text(f"extends: {LN}\nmodel:\n  readout: {{name: factorized\n")
    out = tmp_path / "run"
    result = run_sub(*fit_args(base_store, out, config=str(config)))
    assert_one_line_error(result, str(config))
    assert_nothing_written(out)


def test_fit_max_epochs_zero(base_store, tmp_path):
    out = tmp_path / "run"
    assert_one_line_error(run_cli(*fit_args(base_store, out, epochs=0)), "--max-epochs")
    assert_nothing_written(out)


RNN_CONFIG_FILES = {
    "yaml_syntax": "model:\n  tau: [0.1\n",
    "unknown_section": "modle:\n  tau: 0.1\n",
    "unknown_key": "rls:\n  run: 2\n",
    "wrong_type": "rls:\n  runs: ten\n",
    "out_of_range": "model:\n  tau: -0.1\n",
    "unknown_method": "method: forc\n",
}


@pytest.mark.parametrize("case", sorted(RNN_CONFIG_FILES))
def test_rnn_config_errors_before_the_run_dir(case, rnn_npz, tmp_path):
    config = tmp_path / "rnn_bad.yaml"
    config.write_text(RNN_CONFIG_FILES[case])
    out = tmp_path / "rnn_run"
    result = run_cli("rnn", "fit", "--data", rnn_npz, "--out", out, "--config", config, "--quiet")
    assert_one_line_error(result, str(config))
    assert_nothing_written(out)


def test_sweep_bad_config_errors_before_the_sweep_dir(base_store, tmp_path):
    config = tmp_path / "sweepbad.yaml"
    config.write_text(f"extends: {LN}\ntraining:\n  max_epoch: 1\n")
    out = tmp_path / "sweep"
    result = run_cli("sweep", "--data", base_store, "--configs", config, "--seeds", 0, "--out", out,
                     "--max-epochs", 1)
    assert_one_line_error(result, str(config))
    assert_nothing_written(out)


def test_sweep_max_epochs_zero_errors_before_the_sweep_dir(base_store, tmp_path):
    out = tmp_path / "sweep"
    result = run_cli("sweep", "--data", base_store, "--configs", LN, "--seeds", 0, "--out", out,
                     "--max-epochs", 0)
    assert_one_line_error(result, "--max-epochs")
    assert_nothing_written(out)


@pytest.mark.parametrize("option, value", [("--neurons", 0), ("--recordings", 0)])
def test_simulate_bad_values(option, value, tmp_path):
    out = tmp_path / "sim.zarr"
    result = run_cli("simulate", "v1", "--out", out, option, value)
    assert_one_line_error(result, option.lstrip("-"))
    assert_nothing_written(out)


# --------------------------------------------------------------------------------------------------------------
# damaged stores
# --------------------------------------------------------------------------------------------------------------

def corrupt_chunk(store: Path, recording: str = "m0", array: str = "responses") -> None:
    chunks = chunk_files(store / recording / array)
    assert chunks, f"no chunk files under {store / recording / array}"
    for chunk in chunks:
        size = chunk.stat().st_size
        chunk.write_bytes((b"\x13\x37garbage" * (size // 9 + 1))[:max(size, 16)])


def remove_chunks(store: Path, recording: str, array: str) -> None:
    chunks = chunk_files(store / recording / array)
    assert chunks
    for chunk in chunks:
        chunk.unlink()


def nan_where_recorded(store: Path) -> None:
    """Rewrite recording m0 with a response_mask (all recorded), then put a NaN in a recorded response."""
    ds, truth = tiny_recording("m0", n_neurons=12, seed=0)
    ds["response_mask"] = (("trial",), np.ones(ds.sizes["trial"], dtype=bool))
    other, other_truth = tiny_recording("m1", n_neurons=9, seed=1)
    shutil.rmtree(store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_store(store, {"m0": ds, "m1": other}, {"m0": truth, "m1": other_truth})
    zarr.open_group(str(store), mode="r+")["m0"]["responses"][5, 3] = np.nan


def shorter_coordinate(store: Path, recording: str = "m0", coord: str = "x_um") -> None:
    group = zarr.open_group(str(store), mode="r+")[recording]
    values = group[coord][...]
    bad = group.create_array(coord, shape=(len(values) - 2,), dtype=values.dtype, dimension_names=["neuron"],
                             overwrite=True)
    bad[...] = values[:-2]
    reconsolidate(store)


def reconsolidate(store: Path) -> None:
    """Bring consolidated metadata (where the store has it) up to date after editing arrays in place, so the
    store is consistently what the test made it, not stale in one place and damaged in another."""
    root = zarr.open_group(str(store), mode="r")
    if getattr(root.metadata, "consolidated_metadata", None) is None and not (store / ".zmetadata").exists():
        return
    groups = [""] + [name for name, _ in root.groups()]
    groups += [f"{name}/{sub}" for name, group in root.groups() for sub, _ in group.groups()]
    with warnings.catch_warnings():  # zarr: consolidated metadata / fixed-width strings have no v3 spec yet
        warnings.simplefilter("ignore")
        for path in groups:
            zarr.consolidate_metadata(str(store), path=path)


STORE_DAMAGE = {
    "corrupt_responses_chunk": lambda s: corrupt_chunk(s, "m0", "responses"),
    "corrupt_stimulus_chunk": lambda s: corrupt_chunk(s, "m1", "stimulus"),
    "recording_folder_gone": lambda s: shutil.rmtree(s / "m1"),
    "stimulus_id_chunk_missing": lambda s: remove_chunks(s, "m0", "stimulus_id"),
    "responses_chunk_missing": lambda s: remove_chunks(s, "m0", "responses"),
    "nan_where_mask_true": nan_where_recorded,
    "neuron_count_mismatch": lambda s: shorter_coordinate(s, "m0", "unit_id"),
    "truncated_array_metadata": lambda s: truncate(s / "m0" / "responses" / "zarr.json"),
}


@pytest.mark.parametrize("damage", sorted(STORE_DAMAGE))
def test_fit_on_a_damaged_store(damage, store, tmp_path):
    STORE_DAMAGE[damage](store)
    out = tmp_path / "run"
    assert_one_line_error(run_cli(*fit_args(store, out)), str(store))
    assert_nothing_written(out)


def test_fit_on_a_corrupt_chunk_in_a_real_process(store, tmp_path):
    corrupt_chunk(store, "m0", "responses")
    out = tmp_path / "run"
    assert_one_line_error(run_sub(*fit_args(store, out)), str(store))
    assert_nothing_written(out)


@pytest.mark.parametrize("damage", ["corrupt_responses_chunk", "recording_folder_gone", "nan_where_mask_true"])
def test_export_from_a_damaged_store(damage, store, tmp_path):
    STORE_DAMAGE[damage](store)
    out = tmp_path / "trees"
    assert_one_line_error(run_cli("export", "sensorium", store, "--out", out), str(store))
    assert_nothing_written(out)


@pytest.mark.parametrize("damage", ["corrupt_responses_chunk", "neuron_count_mismatch",
                                    "stimulus_id_chunk_missing"])
def test_evaluate_on_a_damaged_store(damage, store, run_copy):
    STORE_DAMAGE[damage](store)
    before = digest(run_copy)
    result = run_cli("evaluate", run_copy, "--data", store, "--no-figures")
    assert_one_line_error(result, str(store))
    assert not (run_copy / "metrics.json").exists() and digest(run_copy) == before


def test_fit_on_a_half_written_store(store, tmp_path):
    """What a killed convert leaves: a hidden partial folder without the completion marker."""
    partial = tmp_path / ".data.zarr.partial-0badc0de"
    os.replace(store, partial)
    with warnings.catch_warnings():  # zarr: fixed-width strings have no v3 spec yet
        warnings.simplefilter("ignore")
        del zarr.open_group(str(partial), mode="r+").attrs["neurofit_store"]
    out = tmp_path / "run"
    assert_one_line_error(run_cli(*fit_args(partial, out)), str(partial))
    assert_nothing_written(out)
    # the store it was meant to become does not exist: named, not half read
    assert_one_line_error(run_cli(*fit_args(tmp_path / "data.zarr", out)), str(tmp_path / "data.zarr"))
    assert_nothing_written(out)


RNN_STORE_DAMAGE = {
    "corrupt_responses_chunk": lambda s: corrupt_chunk(s, "regions", "responses"),
    "nan_responses": lambda s: zarr.open_group(str(s), mode="r+")["regions"]["responses"].__setitem__(
        (0, 10, 3), np.nan),
    "neuron_count_mismatch": lambda s: shorter_coordinate(s, "regions", "x_um"),
    "region_coordinate_missing": lambda s: shutil.rmtree(s / "regions" / "region"),
}


@pytest.mark.parametrize("damage", sorted(RNN_STORE_DAMAGE))
def test_rnn_fit_on_a_damaged_store(damage, rnn_store, rnn_config, tmp_path):
    RNN_STORE_DAMAGE[damage](rnn_store)
    out = tmp_path / "rnn_run"
    result = run_cli("rnn", "fit", "--data", rnn_store, "--out", out, "--config", rnn_config, "--quiet")
    assert_one_line_error(result, str(rnn_store))
    assert_nothing_written(out)


# --------------------------------------------------------------------------------------------------------------
# outputs that cannot be written
# --------------------------------------------------------------------------------------------------------------

def _output_command(command: str, out: Path, base_store: Path, sensorium_tree: Path, rnn_npz: Path,
                    rnn_config: Path) -> list:
    if command == "fit":
        return fit_args(base_store, out)
    if command == "convert":
        return ["convert", "sensorium", sensorium_tree, "--out", out]
    if command == "simulate":
        return ["simulate", "regions", "--out", out]
    if command == "rnn fit":
        return ["rnn", "fit", "--data", rnn_npz, "--out", out, "--config", rnn_config, "--quiet"]
    if command == "export":
        return ["export", "sensorium", base_store, "--out", out]
    raise AssertionError(command)


OUTPUT_COMMANDS = ["fit", "convert", "simulate", "rnn fit", "export"]


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_out_under_a_regular_file(command, blocker, base_store, sensorium_tree, rnn_npz, rnn_config):
    out = blocker / "out.zarr"
    result = run_cli(*_output_command(command, out, base_store, sensorium_tree, rnn_npz, rnn_config))
    assert_one_line_error(result, str(blocker))
    assert blocker.read_text() == "not a folder\n"


@pytest.mark.parametrize("command", ["fit", "convert", "simulate", "rnn fit"])
def test_out_is_an_existing_regular_file(command, blocker, base_store, sensorium_tree, rnn_npz, rnn_config):
    result = run_cli(*_output_command(command, blocker, base_store, sensorium_tree, rnn_npz, rnn_config))
    assert_one_line_error(result, str(blocker))
    assert blocker.read_text() == "not a folder\n"  # never replaced


@pytest.mark.parametrize("command", ["fit", "convert", "simulate", "rnn fit"])
def test_out_in_a_read_only_folder(command, read_only_dir, base_store, sensorium_tree, rnn_npz, rnn_config):
    out = read_only_dir / "out"
    result = run_cli(*_output_command(command, out, base_store, sensorium_tree, rnn_npz, rnn_config))
    assert_one_line_error(result, str(read_only_dir))
    assert list(read_only_dir.iterdir()) == []


def test_fit_out_under_a_file_in_a_real_process(blocker, base_store):
    result = run_sub(*fit_args(base_store, blocker / "run"))
    assert_one_line_error(result, str(blocker))


def test_compare_out_is_a_regular_file(evaluated_run, blocker):
    result = run_cli("compare", evaluated_run, "--out", blocker, "--no-evaluate")
    assert_one_line_error(result, str(blocker))
    assert blocker.read_text() == "not a folder\n"


# --------------------------------------------------------------------------------------------------------------
# damaged run directories
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_resume_from_a_damaged_last_checkpoint(damage, run_copy, base_store):
    last = run_copy / "checkpoints" / "last.ckpt"
    if damage == "truncated":
        truncate(last)
    else:
        last.write_bytes(b"")
    best = digest(run_copy / "checkpoints")["best.ckpt"]
    result = run_cli(*fit_args(base_store, run_copy, "--resume", epochs=2))
    assert_one_line_error(result, [str(run_copy), "last.ckpt"])
    assert digest(run_copy / "checkpoints")["best.ckpt"] == best


def test_resume_with_a_truncated_config(run_copy, base_store):
    truncate(run_copy / "config.yaml", 0.3)
    result = run_cli(*fit_args(base_store, run_copy, "--resume", epochs=2))
    assert_one_line_error(result, [str(run_copy), "config.yaml"])


@pytest.mark.parametrize("name", ["specs.json", "config.yaml", "checkpoints/best.ckpt"])
def test_evaluate_a_run_with_a_truncated_file(name, run_copy):
    truncate(run_copy / name, 0.4)
    result = run_cli("evaluate", run_copy, "--no-figures")
    assert_one_line_error(result, [str(run_copy), Path(name).name])
    assert not (run_copy / "metrics.json").exists()


def test_evaluate_unknown_tier(run_copy):
    result = run_cli("evaluate", run_copy, "--tier", "bogus", "--no-figures")
    assert_one_line_error(result, "bogus")
    assert not (run_copy / "metrics.json").exists()


@pytest.mark.parametrize("name, garbage", [("metrics.json", '{"tier": "test", "mean": {"single_tr'),
                                           ("train_info.json", "\x00\x01 not json")])
def test_compare_a_run_with_a_garbled_json(name, garbage, evaluated_run, tmp_path):
    run = tmp_path / "evaluated"
    shutil.copytree(evaluated_run, run)
    (run / name).write_text(garbage)
    out = tmp_path / "report"
    result = run_cli("compare", run, "--out", out, "--no-evaluate")
    assert_one_line_error(result, [str(run), name])
    assert_nothing_written(out)


def test_compare_bad_alpha(evaluated_run, tmp_path):
    out = tmp_path / "report"
    assert_one_line_error(run_cli("compare", evaluated_run, "--out", out, "--alpha", 1.5), "alpha")
    assert_nothing_written(out)


def test_attention_on_a_run_without_interactions(run_copy):
    before = digest(run_copy)
    assert_one_line_error(run_cli("attention", run_copy, "--no-untrained"), str(run_copy))
    assert not (run_copy / "attention").exists() and digest(run_copy) == before


@pytest.mark.parametrize("name", ["model.pt", "fit.npz"])
def test_rnn_currents_with_a_truncated_file(name, rnn_run, tmp_path):
    run = tmp_path / "rnn_run"
    shutil.copytree(rnn_run, run, ignore=shutil.ignore_patterns("currents.zarr", "*.png"))
    truncate(run / name)
    result = run_cli("rnn", "currents", run)
    assert_one_line_error(result, [str(run), name])
    assert_nothing_written(run / "currents.zarr")


def test_rnn_fit_into_an_existing_run_refuses(rnn_run, rnn_npz, rnn_config, tmp_path):
    run = tmp_path / "rnn_run"
    shutil.copytree(rnn_run, run)
    before = digest(run)
    time.sleep(0.01)  # an overwrite would show in the mtimes as well as the contents
    result = run_cli("rnn", "fit", "--data", rnn_npz, "--out", run, "--config", rnn_config, "--quiet",
                     "--seed", 7)
    assert digest(run) == before, "rnn fit silently overwrote an existing run directory"
    assert_one_line_error(result, str(run))


def test_fit_into_an_existing_run_refuses(run_copy, base_store):
    before = digest(run_copy)
    result = run_cli(*fit_args(base_store, run_copy))
    assert_one_line_error(result, str(run_copy))
    assert digest(run_copy) == before


# --------------------------------------------------------------------------------------------------------------
# RNN data files
# --------------------------------------------------------------------------------------------------------------

def _npz_case(case: str, rates: np.ndarray, regions: np.ndarray, dt: float) -> dict:
    arrays = {"rates": rates.copy(), "regions": regions, "dt": dt}
    if case == "dt_vector":
        arrays["dt"] = np.full(rates.shape[1], dt)
    elif case == "rates_object":
        obj = np.empty(rates.shape, dtype=object)
        obj[...] = rates
        arrays["rates"] = obj
    elif case == "rates_text":
        arrays["rates"] = rates.astype(str)  # numeric strings, e.g. from a CSV read as text
    elif case == "rates_nan":
        arrays["rates"][4, 20] = np.nan
    elif case == "rates_constant":
        arrays["rates"] = np.full(rates.shape, 0.5)
    elif case == "too_short":
        arrays["rates"] = rates[:, :5]
    elif case == "one_dimensional":
        arrays["rates"] = rates[0]
    elif case == "region_without_units":
        arrays["region_names"] = np.array(sorted(set(regions)) + ["D"])
    elif case == "dt_zero":
        arrays["dt"] = 0.0
    else:
        raise AssertionError(case)
    return arrays


NPZ_CASES = ["dt_vector", "dt_zero", "one_dimensional", "rates_constant", "rates_nan", "rates_object",
             "rates_text", "region_without_units", "too_short"]


@pytest.mark.parametrize("case", NPZ_CASES)
def test_rnn_fit_on_malformed_npz(case, rnn_arrays, rnn_config, tmp_path):
    path = tmp_path / f"{case}.npz"
    np.savez(path, **_npz_case(case, *rnn_arrays))
    out = tmp_path / "rnn_run"
    result = run_cli("rnn", "fit", "--data", path, "--out", out, "--config", rnn_config, "--quiet")
    assert_one_line_error(result, str(path))
    assert_nothing_written(out)


def test_rnn_fit_on_a_truncated_npz(rnn_npz, rnn_config, tmp_path):
    path = tmp_path / "truncated.npz"
    path.write_bytes(rnn_npz.read_bytes()[:400])
    out = tmp_path / "rnn_run"
    result = run_cli("rnn", "fit", "--data", path, "--out", out, "--config", rnn_config, "--quiet")
    assert_one_line_error(result, str(path))
    assert_nothing_written(out)


def test_rnn_fit_dt_vector_in_a_real_process(rnn_arrays, rnn_config, tmp_path):
    path = tmp_path / "dt_vector.npz"
    np.savez(path, **_npz_case("dt_vector", *rnn_arrays))
    out = tmp_path / "rnn_run"
    result = run_sub("rnn", "fit", "--data", path, "--out", out, "--config", rnn_config, "--quiet")
    assert_one_line_error(result, str(path))
    assert_nothing_written(out)


# --------------------------------------------------------------------------------------------------------------
# convert and export sources
# --------------------------------------------------------------------------------------------------------------

def test_convert_missing_source(tmp_path):
    out = tmp_path / "data.zarr"
    source = tmp_path / "no_such_tree"
    assert_one_line_error(run_cli("convert", "sensorium", source, "--out", out), str(source))
    assert_nothing_written(out)


def test_convert_source_is_a_plain_file(tmp_path):
    source = tmp_path / "notes.txt"
    source.write_text("this is not a FileTree\n")
    out = tmp_path / "data.zarr"
    assert_one_line_error(run_cli("convert", "sensorium", source, "--out", out), str(source))
    assert_nothing_written(out)


def test_convert_nwb_on_a_file_that_is_not_nwb(tmp_path):
    pytest.importorskip("pynwb")
    source = tmp_path / "session.nwb"
    source.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 200)  # an HDF5 signature and nothing behind it
    out = tmp_path / "nwb.zarr"
    assert_one_line_error(run_cli("convert", "nwb", source, "--out", out), str(source))
    assert_nothing_written(out)


@pytest.mark.parametrize("extra, name", [(["--recording", "m7"], "m7"), (["--recording", "m0", "--pad-to", "0"],
                                                                          "pad")])
def test_export_bad_options(extra, name, base_store, tmp_path):
    out = tmp_path / "tree"
    assert_one_line_error(run_cli("export", "sensorium", base_store, "--out", out, *extra), name)
    assert_nothing_written(out)


@pytest.mark.parametrize("command", ["fit", "convert", "rnn fit"])
def test_a_failed_run_does_not_block_the_corrected_rerun(command, store, base_store, sensorium_tree, rnn_arrays,
                                                         rnn_npz, rnn_config, tmp_path):
    """Bad input found after the command started (a NaN in the data), then the same command with good input
    and the same --out: it must run, not trip over what the failure left."""
    out = tmp_path / "out"
    if command == "fit":
        nan_where_recorded(store)
        bad, good = fit_args(store, out), fit_args(base_store, out)
    elif command == "convert":
        tree = tmp_path / "trees" / sensorium_tree.name
        shutil.copytree(sensorium_tree, tree)
        np.save(tree / "data/responses/0.npy", np.full(12, np.nan, dtype=np.float32))
        bad = ["convert", "sensorium", tree, "--out", out]
        good = ["convert", "sensorium", sensorium_tree, "--out", out]
    else:
        path = tmp_path / "nan.npz"
        np.savez(path, **_npz_case("rates_nan", *rnn_arrays))
        bad = ["rnn", "fit", "--data", path, "--out", out, "--config", rnn_config, "--quiet"]
        good = ["rnn", "fit", "--data", rnn_npz, "--out", out, "--config", rnn_config, "--quiet"]
    assert run_cli(*bad).returncode == 2
    result = run_cli(*good)
    assert result.returncode == 0, result.describe()
    assert partials(out) == []


# --------------------------------------------------------------------------------------------------------------
# interruptions
# --------------------------------------------------------------------------------------------------------------

KILL_FIT = ["--set", "data.batch_size=2", "--set", "training.log_every_n_steps=1",
            "--set", "training.patience=100"]


@pytest.fixture(scope="module")
def killed_fit(workdir, base_store) -> Path:
    """A ``neurofit fit`` killed with SIGKILL mid-epoch, after its first ``last.ckpt``."""
    run = workdir / "killed_run"
    args = [sys.executable, "-m", "neurofit", *map(str, fit_args(base_store, run, *KILL_FIT, epochs=40))]
    with open(workdir / "killed_fit.stderr", "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=_env(), cwd=ROOT)
        try:
            deadline = time.time() + 150
            while not (run / "checkpoints" / "last.ckpt").exists():
                assert proc.poll() is None, f"fit ended (status {proc.returncode}) before its first checkpoint"
                assert time.time() < deadline, "no checkpoint after 150 s"
                time.sleep(0.02)
            time.sleep(0.15)  # into the next epoch (one epoch of 40 steps takes ~0.3 s here)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the fit finished before it could be killed"
    assert not (run / "train_info.json").exists()
    return run


#: A fit run to a SIGKILL it sends itself from a Lightning callback at a chosen training batch: a real process
#: killed at an exact point (after the checkpoint of the epoch before).
_SELF_KILLING_FIT = """
import os, runpy, signal, sys
import lightning as L
from lightning.pytorch.callbacks import Callback
EPOCH, BATCH = int(sys.argv[1]), int(sys.argv[2])
class KillAt(Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.current_epoch == EPOCH and batch_idx == BATCH:
            os.kill(os.getpid(), signal.SIGKILL)
original = L.Trainer.__init__
def init(self, *args, callbacks=None, **kwargs):
    original(self, *args, callbacks=list(callbacks or []) + [KillAt()], **kwargs)
L.Trainer.__init__ = init
sys.argv = ["neurofit"] + sys.argv[3:]
runpy.run_module("neurofit", run_name="__main__", alter_sys=True)
"""


def _self_killed_fit(base_store: Path, run: Path, epoch: int, batch: int) -> None:
    args = [str(a) for a in fit_args(base_store, run, *KILL_FIT, epochs=40)]
    proc = subprocess.run([sys.executable, "-c", _SELF_KILLING_FIT, str(epoch), str(batch), *args],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=180)
    assert proc.returncode == -signal.SIGKILL, f"the fit was not killed: status {proc.returncode}\n{proc.stderr}"
    assert (run / "checkpoints" / "last.ckpt").exists() and not (run / "train_info.json").exists()


@pytest.mark.parametrize("when", ["external_kill", "second_batch_of_epoch_1", "mid_epoch_2"])
def test_killed_fit_resumes_with_a_continuous_log(when, killed_fit, base_store, tmp_path):
    """``kill -9`` during training, then ``--resume``: the fit finishes and ``logs/metrics.csv`` reads as one
    uninterrupted session: every training step once, in order, each validation epoch once, nothing twice."""
    run = tmp_path / "run"
    if when == "external_kill":
        shutil.copytree(killed_fit, run)
    elif when == "second_batch_of_epoch_1":  # the first step after a checkpoint is already logged
        _self_killed_fit(base_store, run, epoch=1, batch=1)
    else:
        _self_killed_fit(base_store, run, epoch=2, batch=17)
    result = run_sub(*fit_args(base_store, run, "--resume", epochs=4))
    assert result.returncode == 0, result.describe()
    assert json.loads((run / "train_info.json").read_text())["epochs"] == 4
    with open(run / "logs" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    val = [(int(r["epoch"]), int(r["step"])) for r in rows if r.get("val/correlation")]
    assert [e for e, _ in val] == [0, 1, 2, 3], f"validation epochs {val}"
    per_epoch = val[0][1] + 1
    assert [s for _, s in val] == [per_epoch * (e + 1) - 1 for e in range(4)]
    train_steps = [int(r["step"]) for r in rows if r.get("train/loss")]
    repeated_steps = sorted(s for s, n in Counter(train_steps).items() if n > 1)
    assert not repeated_steps, f"training steps logged twice: {repeated_steps}"
    assert train_steps == list(range(4 * per_epoch)), "training steps missing or out of order"
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps), "log rows out of step order"
    values = Counter((r["epoch"], r["step"], key) for r in rows for key, v in r.items()
                     if key not in ("epoch", "step") and v not in ("", None))
    repeated = [k for k, n in values.items() if n > 1]
    assert not repeated, f"metrics logged twice for the same (epoch, step): {repeated[:5]}"
    full_rows = Counter(tuple(r.items()) for r in rows)
    assert all(n == 1 for n in full_rows.values()), "duplicate rows in metrics.csv"


def test_killed_fit_is_not_a_finished_run(killed_fit, base_store, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(killed_fit, run)
    out = tmp_path / "report"
    assert_one_line_error(run_cli("compare", run, "--out", out, "--no-evaluate"), str(run))
    assert_nothing_written(out)
    # a plain re-fit into it is refused (only --resume continues it)
    assert run_cli(*fit_args(base_store, run)).returncode == 2


def test_killed_simulate_leaves_only_a_partial_that_the_next_write_removes(tmp_path):
    out = tmp_path / "sim.zarr"
    args = [sys.executable, "-m", "neurofit", "simulate", "v1", "--out", str(out), "--recordings", "2",
            "--neurons", "20"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not partials(out):
            assert proc.poll() is None, f"simulate ended (status {proc.returncode}) before writing"
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "simulate finished before it could be killed"
    assert not out.exists()
    left = partials(out)
    assert left
    for partial in left:
        with pytest.raises(DataError):
            list_recordings(partial)  # never readable as a store
    result = run_cli("simulate", "regions", "--out", out)
    assert result.returncode == 0, result.describe()
    assert list_recordings(out) == ["regions"]
    assert partials(out) == [], "the next write to the same store left the killed write's partial folder"


def _killed_mid_write(patch: str, argv: list) -> int:
    """Run ``neurofit ARGV`` in a subprocess that SIGKILLs itself right after the write step ``patch``
    (``module:function``) returns: a real process killed in the middle of writing."""
    module, function = patch.split(":")
    code = (
        "import os, runpy, signal, sys\n"
        f"import {module} as target\n"
        f"original = target.{function}\n"
        "def killed(*args, **kwargs):\n"
        "    original(*args, **kwargs)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"target.{function} = killed\n"
        f"sys.argv = ['neurofit'] + {[str(a) for a in argv]!r}\n"
        "runpy.run_module('neurofit', run_name='__main__', alter_sys=True)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, env=_env(), cwd=ROOT,
                          timeout=120).returncode


def test_killed_convert_leaves_only_a_partial_that_the_next_convert_removes(sensorium_tree, tmp_path):
    out = tmp_path / "data.zarr"
    status = _killed_mid_write("neurofit.data.store:StoreWriter._write",
                               ["convert", "sensorium", sensorium_tree, "--out", out])
    assert status == -signal.SIGKILL
    assert not out.exists() and partials(out)
    result = run_cli("convert", "sensorium", sensorium_tree, "--out", out)
    assert result.returncode == 0, result.describe()
    assert list_recordings(out) == [sensorium_tree.name]
    assert partials(out) == [], "the next convert left the killed convert's partial folder"


def test_killed_export_leaves_only_a_partial_that_the_next_export_removes(base_store, tmp_path):
    out = tmp_path / "trees"
    status = _killed_mid_write("neurofit.data.sources.sensorium_writer:_write_tree",
                               ["export", "sensorium", base_store, "--out", out])
    assert status == -signal.SIGKILL
    assert not out.exists() and partials(out)
    result = run_cli("export", "sensorium", base_store, "--out", out)
    assert result.returncode == 0, result.describe()
    assert sorted(p.name for p in out.iterdir()) == ["m0", "m1"]
    assert partials(out) == [], "the next export left the killed export's partial folder"


# --------------------------------------------------------------------------------------------------------------
# unexpected internal errors
# --------------------------------------------------------------------------------------------------------------

def test_internal_error_prints_a_traceback_and_asks_for_a_bug_report(rnn_run):
    code = ("import runpy, sys\n"
            "import neurofit.rnn.run as target\n"
            "def boom(*args, **kwargs):\n"
            "    raise RuntimeError('planted internal failure')\n"
            "target.currents_run = boom\n"
            f"sys.argv = ['neurofit', 'rnn', 'currents', {str(rnn_run)!r}]\n"
            "runpy.run_module('neurofit', run_name='__main__', alter_sys=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=ROOT,
                          timeout=120)
    result = Result(proc.returncode, proc.stdout, proc.stderr, ["rnn", "currents", str(rnn_run), "(patched)"])
    assert proc.returncode == 1, result.describe()
    assert "Traceback (most recent call last)" in proc.stderr and "planted internal failure" in proc.stderr
    asks = [line for line in proc.stderr.splitlines()
            if re.search(r"(?i)\bbug", line) and re.search(r"(?i)report|issue", line)]
    assert asks, f"no line asking for a bug report\n{result.describe()}"
    assert "neurofit: error:" not in proc.stderr, "an internal error reported as if it were the user's"
