"""``RUN/insilico/``: per recording ``NAME.zarr`` and figures, and ``summary.json`` (one entry per recording,
merged with the recordings already there). Everything is computed before the first file is written, and
every file and store is written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from neurofit.analysis.insilico import figures
from neurofit.analysis.insilico.pipeline import RecordingResult
from neurofit.data.store import write_zarr
from neurofit.errors import DataError
from neurofit.io import write_json

SUMMARY_FILE = "summary.json"
#: Example neurons in the tuning figure.
TUNING_EXAMPLES = 6


def _per_neuron(table: dict[str, np.ndarray], prefix: str = "") -> dict[str, tuple]:
    return {f"{prefix}{key}": (("neuron", "screen_axis") if np.ndim(value) == 2 else ("neuron",),
                               np.asarray(value)) for key, value in table.items()}


def to_dataset(result: RecordingResult) -> xr.Dataset:
    """The recording's ``NAME.zarr`` content: images and curves of the trained model, and the per-neuron
    table of every model (the untrained one's prefixed ``untrained_``), keyed by ``unit_id``."""
    trained = result.analyses["trained"]
    tuning = trained.tuning
    full_dims = ("neuron", "orientation", "sf") + (("tf",) if result.video else ())
    full = (lambda x: x) if result.video else (lambda x: x[..., 0])
    data = {
        "mei": (("neuron", "start", "height", "width"), trained.meis.images),
        "mei_rate": (("neuron", "start"), trained.meis.rates),
        "gradient_rf": (("neuron", "height", "width"), trained.gradient),
        "sta": (("neuron", "height", "width"), trained.noise.sta),
        "rwv": (("neuron", "height", "width"), trained.noise.rwv),
        "fullfield_f0": (full_dims, full(tuning.fullfield_f0)),
        "fullfield_f1": (full_dims, full(tuning.fullfield_f1)),
        "windowed_f0": (("neuron", "orientation"), tuning.windowed_f0),
        "windowed_f1": (("neuron", "orientation"), tuning.windowed_f1),
        "window_px": (("neuron",), tuning.window_px),
        "size_f0": (("neuron", "size"), tuning.size_f0),
        "size_f1": (("neuron", "size"), tuning.size_f1),
        "train_mean_rate": (("neuron",), trained.train_mean),
        **_per_neuron(result.tables["trained"]),
        **{k: v for label, table in result.tables.items() if label != "trained"
           for k, v in _per_neuron(table, f"{label}_").items()},
    }
    if result.test_correlation is not None:
        data["test_correlation"] = (("neuron",), result.test_correlation)
    if result.planted is not None:
        data["planted_f1_f0"] = (("neuron",), result.planted.f1_f0)
        data["planted_surround_suppression_index"] = (("neuron",), result.planted.ssi)
    pos = result.positions_um
    coords = {"unit_id": ("neuron", result.unit_id), "x_um": ("neuron", pos[:, 0]), "y_um": ("neuron", pos[:, 1]),
              "z_um": ("neuron", pos[:, 2]), "screen_axis": ("screen_axis", np.array(["x", "y"])),
              "orientation_rad": ("orientation", tuning.grid_orientation_rad),
              "sf_cpp": ("sf", tuning.grid_sf_cpp), "size_px": ("size", tuning.grid_size_px)}
    if result.video:
        coords["tf_hz"] = ("tf", tuning.grid_tf_hz)
    attrs = {"recording": result.name, "summary": json.dumps(result.entry, default=float),
             "description": "in-silico experiments (docs/architecture.md, insilico/); rates in the model's "
                            "normalised units, images in grey levels"}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _examples(result: RecordingResult, n: int = TUNING_EXAMPLES) -> np.ndarray:
    """Example neurons: the best predicted on test (else the most activated by their MEI), spread out."""
    score = result.test_correlation if result.test_correlation is not None \
        else result.tables["trained"]["mei_activation"]
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf))
    return order[np.linspace(0, max(len(order) // 2 - 1, 0), min(n, len(order))).round().astype(int)]


def read_summary(out_dir: Path) -> dict:
    """The entries of an existing ``summary.json`` ({} when there is none); a damaged one is named."""
    path = out_dir / SUMMARY_FILE
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: damaged ({err}); delete it to start a new summary") from None
    if not isinstance(summary, dict):
        raise DataError(f"{path}: not a summary (a JSON object of recordings expected)")
    return summary


def write_outputs(out_dir: Path, results: list[RecordingResult]) -> None:
    """Write every recording's zarr and figures, then merge their entries into ``summary.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for result in results:
        name, trained = result.name, result.analyses["trained"]
        write_zarr(to_dataset(result), out_dir / f"{name}.zarr")
        mean = result.stats.mean_luminance
        correlation = result.tables["trained"].get("mei_filter_correlation")
        figures.mei_grid(trained, mean, result.positions_um, result.unit_id, correlation,
                         out_dir / f"{name}_meis.png")
        figures.tuning_panels(trained, result.tables["trained"], result.unit_id, _examples(result), mean,
                              out_dir / f"{name}_tuning.png")
        figures.orientation_map(result.positions_um, result.tables["trained"], result.truth,
                                out_dir / f"{name}_orientation_map.png")
        if result.truth is not None:
            figures.truth_panels(result.tables, result.truth, result.planted, out_dir / f"{name}_truth.png")
    summary = read_summary(out_dir)
    summary.update({result.name: result.entry for result in results})
    write_json(out_dir / SUMMARY_FILE, summary, allow_nan=False)
