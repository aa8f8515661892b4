"""Zarr store of Recordings: one group per recording (``NAME``), simulator truth under ``NAME/truth``.

Writes are atomic: a store is built in a hidden sibling folder and renamed into place only when complete,
and the root carries a completion marker, so an interrupted write never leaves something that reads as a
valid store. Reads are lazy: arrays stay on disk until indexed, so stores larger than memory are usable.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import xarray as xr
import zarr

from neurofit.data.recording import validate
from neurofit.errors import DataError, NeurofitError
from neurofit.io import dead_writers

STORE_MARKER = "neurofit_store"
#: Target bytes per chunk along ``trial``: large enough for fast sequential reads, small enough that a
#: shuffled batch does not read much it does not use.
CHUNK_BYTES = 2 * 2**20


def trial_chunks(ds: xr.Dataset, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Trials per chunk so that the largest per-trial variable gives chunks of about ``chunk_bytes``."""
    per_trial = max(
        int(np.prod([s for d, s in var.sizes.items() if d != "trial"])) * var.dtype.itemsize
        for var in ds.data_vars.values() if "trial" in var.dims
    )
    return int(max(1, min(ds.sizes["trial"], chunk_bytes // max(1, per_trial))))


def _encoding(ds: xr.Dataset, trials_per_chunk: int) -> dict[str, dict]:
    enc: dict[str, dict] = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "OUS":
            continue
        if "trial" in var.dims:
            enc[str(name)] = {"chunks": tuple(trials_per_chunk if d == "trial" else s
                                              for d, s in zip(var.dims, var.shape))}
    return enc


class StoreWriter:
    """Write recordings into a new store atomically.

    Use as a context manager: recordings are written to a hidden temporary folder next to ``path`` and the
    folder is renamed to ``path`` on a clean exit; on an exception it is deleted and nothing appears at
    ``path``. ``append`` streams a recording in trial blocks so conversions never hold it all in memory.

    Example::

        with StoreWriter("data.zarr") as w:
            w.add("mouse1", ds, truth=truth_ds)
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DataError(f"{self.path}: already exists (pass overwrite=True / --overwrite to replace it)")
        self.tmp = partial_dir(self.path)
        self.names: list[str] = []
        self._chunks: dict[str, int] = {}

    def __enter__(self) -> StoreWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        zarr.open_group(str(self.tmp), mode="w")
        return self

    def add(self, name: str, ds: xr.Dataset, truth: xr.Dataset | None = None) -> None:
        """Validate and write one complete recording (and its optional simulator truth)."""
        validate(ds, name)
        self._write(name, ds, truth)

    def append(self, name: str, block: xr.Dataset) -> None:
        """Write a block of trials of recording ``name``: the first call creates it, later ones extend
        ``trial``. Call ``validate`` on the finished store (``open_store(..., validate=True)``) if needed."""
        if name not in self.names:
            self._write(name, block, None)
            return
        with quiet_zarr():
            block.to_zarr(str(self.tmp), group=name, mode="a", append_dim="trial", consolidated=False,
                          write_empty_chunks=True)

    def _write(self, name: str, ds: xr.Dataset, truth: xr.Dataset | None) -> None:
        if name in self.names:
            raise DataError(f"{self.path}: recording {name!r} written twice")
        if "/" in name or name.startswith("."):
            raise DataError(f"{self.path}: invalid recording name {name!r}")
        chunks = trial_chunks(ds)
        with quiet_zarr():
            # Every chunk is written, even one that equals the fill value, so a chunk missing later means a
            # damaged store (open_recording checks), not data that happens to equal the fill value.
            ds.to_zarr(str(self.tmp), group=name, mode="w", encoding=_encoding(ds, chunks), consolidated=False,
                       write_empty_chunks=True)
            if truth is not None:
                tchunks = trial_chunks(truth) if "trial" in truth.dims else 1
                truth.to_zarr(str(self.tmp), group=f"{name}/truth", mode="w",
                              encoding=_encoding(truth, tchunks), consolidated=False, write_empty_chunks=True)
        self.names.append(name)
        self._chunks[name] = chunks

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if not self.names:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise DataError(f"{self.path}: no recordings were written")
        root = zarr.open_group(str(self.tmp), mode="a")
        root.attrs[STORE_MARKER] = {"format_version": "1", "recordings": self.names}
        # Consolidated metadata at every group, so xarray opens a recording (or its truth) in one read and
        # without warning about falling back to the per-array metadata.
        with quiet_zarr():
            for group in ["", *self.names, *(f"{n}/truth" for n in self.names if "truth" in root[n])]:
                zarr.consolidate_metadata(str(self.tmp), path=group)
        replace_dir(self.tmp, self.path)


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    """Zarr v3 warns that fixed-width strings (our ``tier``/``unit_id`` coordinates) and consolidated
    metadata have no v3 spec yet; zarr-python reads both back exactly, which is what the lossless round-trip
    tests check."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
        yield


def partial_dir(path: Path) -> Path:
    """The hidden sibling a folder for ``path`` is built in before ``replace_dir`` moves it into place. Its
    name carries the writing process's id, so the partial folders of killed writes to the same target
    (which no later run would otherwise remove) are deleted here."""
    prefix = f".{path.name}.partial-"
    for stale in dead_writers(path.parent, prefix):
        shutil.rmtree(stale, ignore_errors=True)
    return path.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_zarr(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a Dataset as a zarr folder (consolidated metadata) atomically; returns the path."""
    path = Path(path)
    with atomic_dir(path) as tmp, quiet_zarr():
        ds.to_zarr(str(tmp), mode="w", consolidated=True)
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder to build ``path`` in; on a clean exit it replaces ``path`` (``replace_dir``), on
    an exception it is deleted, so nothing half written ever appears at ``path``."""
    path = Path(path)
    tmp = partial_dir(path)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, path)


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place; an existing ``dst`` is swapped out, then removed."""
    trash = None
    if dst.exists():
        trash = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, trash)
    os.replace(src, dst)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def list_recordings(path: str | os.PathLike) -> list[str]:
    """Names of the recordings in a store, in the order written. Raises ``DataError`` for a missing,
    foreign or incompletely written store."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such store")
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as err:  # zarr raises several types for a folder that is not a store
        raise DataError(f"{path}: not a zarr store ({type(err).__name__}: {err})") from None
    marker = root.attrs.get(STORE_MARKER)
    if not marker:
        raise DataError(f"{path}: not a complete neurofit store (no '{STORE_MARKER}' marker; "
                        "was its writing interrupted?)")
    return list(marker["recordings"])


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Report a failure to read or decode a store's data (a damaged chunk surfaces as codec-specific
    exception types) as one ``DataError`` naming the store and ``what`` was being read."""
    try:
        yield
    except NeurofitError:
        raise
    except Exception as err:
        raise DataError(f"{path}: {what} cannot be read, the store is damaged ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from None


def check_chunks(path: str | os.PathLike, name: str) -> None:
    """Every chunk of every array of recording ``name`` is present (zarr would read a missing chunk as its
    fill value, e.g. turn lost ``stimulus_id`` values into repeats of one stimulus)."""
    with reading(path, f"recording {name!r}"):
        group = zarr.open_group(str(path), mode="r")[name]
        for key, array in group.arrays():
            if array.nchunks_initialized < array.nchunks:
                raise DataError(f"{path}: recording {name!r}: {key} is missing "
                                f"{array.nchunks - array.nchunks_initialized} of its {array.nchunks} chunks "
                                "(the store is damaged)")


def open_recording(path: str | os.PathLike, name: str, validate_values: bool = False) -> xr.Dataset:
    """Open one recording lazily (no data read until indexed), checking its structure and that no chunk is
    missing; ``validate_values`` also scans responses and inputs for NaN where they were recorded."""
    names = list_recordings(path)
    if name not in names:
        raise DataError(f"{path}: no recording {name!r} (has {names})")
    try:
        ds = xr.open_zarr(str(path), group=name, consolidated=False, chunks=None)
    except Exception as err:
        raise DataError(f"{path}: recording {name!r} cannot be read ({type(err).__name__}: {err})") from None
    check_chunks(path, name)
    with reading(path, f"recording {name!r}"):
        validate(ds, f"{path}:{name}", check_values=validate_values)
    return ds


def open_truth(path: str | os.PathLike, name: str) -> xr.Dataset | None:
    """Simulator ground truth of a recording, or None where the store has none."""
    root = zarr.open_group(str(path), mode="r")
    if name not in root or "truth" not in root[name]:
        return None
    return xr.open_zarr(str(path), group=f"{name}/truth", consolidated=False, chunks=None)


def open_store(path: str | os.PathLike, validate_values: bool = False) -> dict[str, xr.Dataset]:
    """All recordings of a store, lazily, keyed by name."""
    return {name: open_recording(path, name, validate_values) for name in list_recordings(path)}


def write_store(path: str | os.PathLike, recordings: dict[str, xr.Dataset],
                truth: dict[str, xr.Dataset] | None = None, overwrite: bool = False) -> Path:
    """Write complete in-memory recordings to a new store atomically; returns the store path."""
    with StoreWriter(path, overwrite=overwrite) as writer:
        for name, ds in recordings.items():
            writer.add(name, ds, (truth or {}).get(name))
    return Path(path)


def attrs_json(value: object) -> str:
    """Serialise metadata (e.g. source statistics) to a JSON string for a dataset attribute."""
    return json.dumps(value, sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
