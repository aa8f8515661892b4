"""Data layer: the Recording contract, the zarr store, sources (real formats) and simulators."""

from neurofit.data.recording import is_video, make_recording, validate
from neurofit.data.store import (
    StoreWriter,
    list_recordings,
    open_recording,
    open_store,
    open_truth,
    write_store,
)

__all__ = [
    "StoreWriter",
    "is_video",
    "list_recordings",
    "make_recording",
    "open_recording",
    "open_store",
    "open_truth",
    "validate",
    "write_store",
]
