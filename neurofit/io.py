"""Atomic file writes: every file neurofit writes (JSON, YAML, CSV, npz, checkpoints, figures) goes to a
temporary sibling first and is renamed into place only when complete, so an interrupted run never leaves a
truncated file that a later read or ``--resume`` would trip over. (Folders, i.e. zarr stores, use
``neurofit.data.store.replace_dir``.) Temporary files left by a killed process are removed by the next
write to the same file."""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neurofit.errors import DataError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so writers that pick a format from it work);
    on a clean exit rename it onto ``path``, on an exception delete it."""
    path = Path(path)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` whose writing process no longer exists (killed mid-write)."""
    for tmp in dead_writers(path.parent, f".{path.stem}.tmp-", path.suffix):
        tmp.unlink(missing_ok=True)


def dead_writers(parent: Path, prefix: str, suffix: str = "") -> list[Path]:
    """Entries of ``parent`` named ``prefix + PID[-...] + suffix`` (a temporary file or partial folder) whose
    writing process no longer exists: what a killed write left behind, safe to delete."""
    if not parent.is_dir():
        return []
    stale = []
    for entry in parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        pid = entry.name[len(prefix):len(entry.name) - len(suffix)].split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            stale.append(entry)
    return stale


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, payload: Any, **dumps_options: Any) -> None:
    """Write JSON (indented, numpy scalars as floats) atomically."""
    options = {"indent": 2, "default": float, **dumps_options}
    atomic_write_text(path, json.dumps(payload, **options) + "\n")


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """``numpy.savez`` to ``path`` (which should end in .npz) atomically."""
    import numpy as np

    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it; returns ``path``."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip("."))
    plt.close(fig)
    return path


def check_output_location(path: str | os.PathLike) -> Path:
    """Refuse an output path that cannot become a folder: an existing file, a path under a file, or a
    folder that cannot be written. Creates nothing; returns the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is not a folder")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DataError(f"{path}: cannot be created, {ancestor} is a file")
    target = path if path.exists() else ancestor
    if not os.access(target, os.W_OK | os.X_OK):
        raise DataError(f"{path}: cannot write there ({target} is not writable)")
    return path
