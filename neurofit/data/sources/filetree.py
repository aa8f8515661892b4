"""Read-only access to a neuralpredictors "FileTree" (a folder or its ``.zip``) without unpacking it.

A FileTree holds one ``.npy`` file per trial and variable under ``data/<key>/<trial>.npy`` and metadata under
``meta/``. The SENSORIUM archives wrap the tree in a top folder named after the recording (neuralpredictors'
``zip_dir`` stores paths relative to the folder's parent) and some carry macOS ``__MACOSX`` junk; both are
handled here so the converters only see paths relative to the tree root.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from neurofit.errors import DataError


class FileTree(ABC):
    """A FileTree root; paths are POSIX strings relative to it (``"data/videos/0.npy"``)."""

    #: What to call the tree in messages (the folder or zip path).
    label: str
    #: Recording name: the folder name, or the zip's stem.
    name: str

    def where(self, rel: str) -> str:
        """A path for error messages: the tree label joined with ``rel``."""
        return f"{self.label}/{rel}" if rel else self.label

    @abstractmethod
    def is_dir(self, rel: str) -> bool:
        """True when ``rel`` is a folder of the tree."""

    @abstractmethod
    def is_file(self, rel: str) -> bool:
        """True when ``rel`` is a file of the tree."""

    @abstractmethod
    def listdir(self, rel: str) -> list[str]:
        """Names of the entries directly inside folder ``rel`` (files and folders), sorted."""

    @abstractmethod
    def _open(self, rel: str) -> io.BufferedIOBase:
        """A binary stream of file ``rel``."""

    def read_bytes(self, rel: str) -> bytes:
        """The whole content of file ``rel``; a corrupt archive member raises ``DataError``."""
        try:
            with self._open(rel) as fh:
                return fh.read()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
            raise DataError(f"{self.where(rel)}: cannot be read ({err}); is the archive truncated or corrupt?") \
                from None

    def read_npy(self, rel: str) -> np.ndarray:
        """Load one ``.npy`` array (pickled object arrays are refused: the format never needs them)."""
        if not self.is_file(rel):
            raise DataError(f"{self.where(rel)}: missing file")
        try:
            return self._load(rel)
        except DataError:
            raise
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{self.where(rel)}: not a readable .npy array ({err})") from None

    def _load(self, rel: str) -> np.ndarray:
        return np.load(io.BytesIO(self.read_bytes(rel)), allow_pickle=False)

    def npy_header(self, rel: str) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of a ``.npy`` file from its header only (no array data is read)."""
        if not self.is_file(rel):
            raise DataError(f"{self.where(rel)}: missing file")
        try:
            with self._open(rel) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
            raise DataError(f"{self.where(rel)}: cannot be read ({err}); is the archive truncated or corrupt?") \
                from None
        except ValueError as err:
            raise DataError(f"{self.where(rel)}: not a readable .npy array ({err})") from None
        return tuple(int(s) for s in shape), np.dtype(dtype)

    def read_text(self, rel: str) -> str:
        """A text file decoded as UTF-8."""
        return self.read_bytes(rel).decode("utf-8")

    @abstractmethod
    def close(self) -> None:
        """Release open handles (zip archives)."""


class FolderTree(FileTree):
    """A FileTree unpacked on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)
        self.name = root.name

    def is_dir(self, rel: str) -> bool:
        return (self.root / rel).is_dir()

    def is_file(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def listdir(self, rel: str) -> list[str]:
        return sorted(p.name for p in (self.root / rel).iterdir() if not p.name.startswith("."))

    def _open(self, rel: str) -> io.BufferedIOBase:
        return open(self.root / rel, "rb")

    def _load(self, rel: str) -> np.ndarray:
        # straight from disk: no intermediate copy of the file's bytes
        return np.load(self.root / rel, allow_pickle=False)

    def close(self) -> None:
        """Nothing to release: files are opened per read."""


class ZipTree(FileTree):
    """A FileTree read straight from its zip archive; members are decompressed one at a time."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self.name = path.stem
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise DataError(f"{path}: not a readable zip archive ({err}); it may be truncated or corrupt "
                            "(download it again)") from None
        members = [i.filename for i in self.zf.infolist()
                   if not i.filename.startswith("__MACOSX/") and "/._" not in f"/{i.filename}"]
        self.prefix = _tree_prefix(members, path)
        self.files: set[str] = set()
        self.dirs: dict[str, set[str]] = {"": set()}
        for member in members:
            if not member.startswith(self.prefix):
                continue
            rel = member[len(self.prefix):].rstrip("/")
            if not rel:
                continue
            parts = rel.split("/")
            for depth in range(len(parts)):
                parent = "/".join(parts[:depth])
                self.dirs.setdefault(parent, set()).add(parts[depth])
            if member.endswith("/"):
                self.dirs.setdefault(rel, set())
            else:
                self.files.add(rel)

    def is_dir(self, rel: str) -> bool:
        return rel.rstrip("/") in self.dirs and rel.rstrip("/") not in self.files

    def is_file(self, rel: str) -> bool:
        return rel in self.files

    def listdir(self, rel: str) -> list[str]:
        return sorted(self.dirs.get(rel.rstrip("/"), set()))

    def _open(self, rel: str) -> io.BufferedIOBase:
        return self.zf.open(self.prefix + rel)

    def close(self) -> None:
        self.zf.close()


def _tree_prefix(members: list[str], path: Path) -> str:
    """The archive folder that holds ``data/`` and ``meta/``: the root, or one top folder."""
    tops = {m.split("/", 1)[0] for m in members}
    if "data" in tops or "meta" in tops:
        return ""
    for top in sorted(tops):
        if any(m.startswith(f"{top}/data/") for m in members):
            return f"{top}/"
    raise DataError(f"{path}: no FileTree inside (expected data/ and meta/ folders at the top or in one top "
                    "folder)")


def open_tree(src: str | Path) -> FileTree:
    """Open a FileTree folder or ``.zip``; raises ``DataError`` when ``src`` is neither."""
    path = Path(src)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return FolderTree(path)
    if path.suffix.lower() == ".zip":
        return ZipTree(path)
    raise DataError(f"{path}: expected a FileTree folder or its .zip archive")
