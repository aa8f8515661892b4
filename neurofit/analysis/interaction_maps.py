"""Extract a fitted run's learned interaction structure: attention maps (a property of the population, the same
for every stimulus; per head and averaged over heads), divisive-normalisation pools and the maps of the layer
that conditions on recorded activity, the signal-correlation baseline, and the simulator's true coupling and
pools where they exist."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from neurofit.analysis.interaction_scores import signal_correlation
from neurofit.data.store import open_truth
from neurofit.errors import DataError
from neurofit.evaluation import predict_tier
from neurofit.metrics import group_means
from neurofit.models.interactions.attention import NeuronAttention
from neurofit.models.interactions.context import ContextAttention
from neurofit.models.interactions.normalization import DivisiveNormalization
from neurofit.run import Run, load_run, untrained_run


@dataclass
class InteractionMaps:
    """One recording's maps, both axes in unit_id order. attention (N, N) and attention_per_head (H, N, N):
    row i = how much neuron i attends to neuron j (the same for any stimulus); pools (N, N): how strongly neuron j
    normalises neuron i. coupling (N, N): the signed coupling of drives attention applies
    (``NeuronAttention.drive_coupling``), None when its values do not read the drive. context_attention (N, N)
    and context_coupling (N, N): the maps of the layer that reads the others' recorded activity
    (``ContextAttention``). signal_correlation (N, N): tuning similarity, the correlation of two neurons'
    stimulus-only predictions over the tier's stimuli (averaged over repeats). truth_coupling / truth_pools:
    the simulator's ground truth, (N, N), or None; planted: the truth's ``coupling_structure`` attribute."""

    unit_id: np.ndarray
    positions_um: np.ndarray
    attention: np.ndarray | None
    attention_per_head: np.ndarray | None
    coupling: np.ndarray | None
    pools: np.ndarray | None
    truth_coupling: np.ndarray | None
    truth_pools: np.ndarray | None
    context_attention: np.ndarray | None = None
    context_coupling: np.ndarray | None = None
    signal_correlation: np.ndarray | None = None
    planted: dict | None = None


@torch.no_grad()
def extract_maps(run: Run, data: str | os.PathLike, recording: str, tier: str = "test",
                 signal: bool = True) -> InteractionMaps:
    """Read the learned attention maps (the same for every trial), pools and context maps of ``recording``
    and, with ``signal``, the signal correlation of the run's stimulus-only predictions of ``tier``.

    Raises DataError when the run has no interaction layer to map for ``recording`` or its neurons have no
    cortical coordinates (all at one position), before anything is computed."""
    encoder = run.encoder
    if encoder is None or recording not in encoder.interactions:
        raise DataError(f"{run.path}: recording {recording!r} has no interaction layers (fit a config with "
                        "model.interactions, e.g. configs/attention.yaml)")
    stack = encoder.interactions[recording]
    attention_layer = stack.find(NeuronAttention)
    norm_layer = stack.find(DivisiveNormalization)
    context_layer = stack.find(ContextAttention)
    if attention_layer is None and norm_layer is None and context_layer is None:
        raise DataError(f"{run.path}: recording {recording!r} has no attention, normalisation or context layer "
                        "to map")
    spec = run.specs[recording]
    positions = np.asarray(spec.coords_um, dtype=np.float64).reshape(-1, 3)
    if len(positions) < 2 or not np.ptp(positions, axis=0).any():
        raise DataError(f"{run.path}: the neurons of recording {recording!r} have no cortical coordinates (all "
                        "at one position), so maps cannot be compared with cortical distance")
    embedding = encoder.readouts[recording].embedding
    per_head = coupling = None
    if attention_layer is not None:
        heads = attention_layer.attention_map(embedding)
        signed = attention_layer.drive_coupling(embedding, heads)
        coupling = None if signed is None else signed.numpy()
        per_head = heads.numpy()
    pools = None if norm_layer is None else norm_layer.pool_matrix(embedding).numpy()
    truth = open_truth(data, recording)
    unit_id = np.asarray(spec.unit_id)
    planted = None if truth is None or "coupling_structure" not in truth.attrs else json.loads(
        truth.attrs["coupling_structure"])
    return InteractionMaps(
        unit_id=unit_id,
        positions_um=positions,
        attention=None if per_head is None else per_head.mean(axis=0),
        attention_per_head=per_head,
        coupling=coupling,
        pools=pools,
        truth_coupling=truth_matrix(truth, "coupling", unit_id, f"{data}: {recording}"),
        truth_pools=truth_matrix(truth, "norm_pool", unit_id, f"{data}: {recording}"),
        context_attention=None if context_layer is None else context_layer.attention_map(embedding, False).numpy(),
        context_coupling=None if context_layer is None else context_layer.coupling(embedding).numpy(),
        signal_correlation=_signal_correlation(run, data, recording, tier) if signal else None,
        planted=planted,
    )


def _signal_correlation(run: Run, data: str | os.PathLike, recording: str, tier: str) -> np.ndarray:
    """Tuning similarity (N, N) from the run's stimulus-only predictions of ``tier``, averaged over repeats of
    each stimulus (movies: per frame after the burn-in) so that behaviour and noise do not enter."""
    prediction = predict_tier(run, data, recording, tier, run.config.eval_skip_frames)
    return signal_correlation(group_means(prediction.pred, prediction.group))


def truth_matrix(truth: xr.Dataset | None, key: str, unit_id: np.ndarray,
                 where: str = "truth") -> np.ndarray | None:
    """The truth's (neuron, neuron_key) matrix ``key`` with both axes put in the order of ``unit_id`` (N,),
    the order of the maps; None where the truth or the variable is absent.

    Rows and columns are matched through the truth's ``unit_id`` coordinate when it has one, so a truth
    stored in another neuron order cannot be silently compared with the wrong neurons; without the
    coordinate the truth must already be in map order. Raises DataError if neurons are missing or the
    shape differs.
    """
    if truth is None or key not in truth:
        return None
    matrix = np.asarray(truth[key].values)
    n = len(unit_id)
    if "unit_id" not in truth.coords:
        if matrix.shape != (n, n):
            raise DataError(f"{where}: truth {key!r} has shape {matrix.shape}, expected ({n}, {n})")
        return matrix
    stored = np.asarray(truth["unit_id"].values).tolist()
    if matrix.shape != (len(stored), len(stored)):
        raise DataError(f"{where}: truth {key!r} has shape {matrix.shape} for {len(stored)} units")
    position = {u: k for k, u in enumerate(stored)}
    missing = [u for u in unit_id.tolist() if u not in position]
    if missing:
        raise DataError(f"{where}: truth {key!r} lacks unit_id(s) {missing[:5]} of the fitted model")
    index = np.array([position[u] for u in unit_id.tolist()])
    return matrix[np.ix_(index, index)]


def map_run(path: str | os.PathLike, *, data: str | os.PathLike | None = None,
            recordings: list[str] | None = None, tier: str = "test", n_permutations: int = 1000,
            untrained: bool = True) -> dict[str, dict]:
    """``neurofit attention RUN``: extract the maps of ``recordings`` (default all) of the run at ``path``
    from ``data`` (default the run's store), with the untrained model's maps unless ``untrained`` is False,
    and write ``RUN/attention/`` (``write_interaction_outputs``). Returns {recording: its JSON entry}.

    Every recording is mapped (and checked) before anything is written, so bad input (a recording the run
    lacks, no interaction layers, no cortical coordinates) raises DataError and leaves no half output."""
    from neurofit.analysis.attention import write_interaction_outputs

    run = load_run(path)
    store = Path(data) if data else run.data_path
    names = list(recordings) if recordings else list(run.specs)
    unknown = [n for n in names if n not in run.specs]
    if unknown:
        raise DataError(f"{path}: no recording(s) {unknown} (has {list(run.specs)})")
    maps = {name: extract_maps(run, store, name, tier) for name in names}
    before = untrained_run(run) if untrained else None
    starts = {name: None if before is None else extract_maps(before, store, name, tier, signal=False)
              for name in names}
    entries = {}
    for name in names:
        m, start = maps[name], starts[name]
        reference = {f"untrained_{kind}": None if start is None else getattr(start, kind)
                     for kind in ("attention", "pools", "coupling", "context_attention", "context_coupling")}
        entries[name] = write_interaction_outputs(
            run.path / "attention", name, m.unit_id, m.positions_um, attention=m.attention,
            attention_per_head=m.attention_per_head, pools=m.pools, coupling=m.coupling, truth=m.truth_coupling,
            truth_pools=m.truth_pools, n_permutations=n_permutations, context_attention=m.context_attention,
            context_coupling=m.context_coupling, signal_correlation=m.signal_correlation, planted=m.planted,
            **reference)
    return entries
