"""Bookkeeping that keeps conversions lossless: source dtypes, exact copies and arrays stored in attributes.

The Recording contract stores ``stimulus``/``responses``/``behavior``/``pupil_center`` as float32. Sources of
dtype uint8, int16, float16 or float32 convert to float32 exactly, so the store keeps only the float32 variable
and records the source dtype to cast back. Sources whose values float32 cannot always hold (float64, 32/64-bit
integers) additionally get an exact copy ``<var>_source`` in the source dtype, so nothing is ever rounded away.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import xarray as xr

#: Dataset attribute mapping each source path to where it lives in the store (see ``source_map``).
SOURCE_MAP_ATTR = "source_map"
#: Dataset attribute holding the source's precomputed statistics (see ``load_statistics``).
STATISTICS_ATTR = "statistics"


def needs_exact_copy(dtype: np.dtype) -> bool:
    """True when some values of ``dtype`` have no exact float32 equivalent (float64, >= 32-bit integers)."""
    dtype = np.dtype(dtype)
    return (dtype.kind == "f" and dtype.itemsize > 4) or (dtype.kind in "iu" and dtype.itemsize >= 4)


def exact_copy_name(var: str) -> str:
    """Name of the variable that keeps ``var`` in its source dtype."""
    return f"{var}_source"


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """A JSON-safe, bit-exact description of an array: dtype string, shape and base64 of its bytes."""
    a = np.ascontiguousarray(a)
    if a.dtype.kind == "O":
        raise TypeError("object arrays cannot be encoded")
    return {"dtype": a.dtype.str, "shape": list(a.shape), "base64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(d: dict[str, Any]) -> np.ndarray:
    """Inverse of ``encode_array``."""
    raw = base64.b64decode(d["base64"])
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def load_statistics(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """The source's statistics (SENSORIUM ``meta/statistics``) as ``{"responses/all/mean": array, ...}``,
    bit-identical to the source files; empty when the recording has none."""
    raw = ds.attrs.get(STATISTICS_ATTR)
    if not raw:
        return {}
    return {key: decode_array(value) for key, value in json.loads(raw).items()}


def source_map(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Where each source array went: ``{source path: {"var": name(s), "dtype": source dtype, ...}}``.

    Entries for per-trial data folders (``data/videos``) also carry ``"axes"``, the source axis order of one
    trial file, and ``"exact"``, the exact-copy variable where one was needed.
    """
    raw = ds.attrs.get(SOURCE_MAP_ATTR)
    return json.loads(raw) if raw else {}
