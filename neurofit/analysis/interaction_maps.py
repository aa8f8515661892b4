"""Extract a fitted run's learned interaction structure: attention maps (a property of the population, the same
for every stimulus; per head and averaged over heads) and divisive-normalisation pools, with the simulator's
true coupling and pools where they exist."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch
import xarray as xr

from neurofit.data.datamodule import load_arrays, tier_trials
from neurofit.data.store import open_truth
from neurofit.errors import DataError
from neurofit.models.interactions.attention import NeuronAttention
from neurofit.models.interactions.normalization import DivisiveNormalization
from neurofit.run import Run, load_run


@dataclass
class InteractionMaps:
    """One recording's maps, both axes in unit_id order. attention (N, N) and attention_per_head (H, N, N):
    row i = how much neuron i attends to neuron j (the same for any stimulus); pools (N, N): how strongly neuron j
    normalises neuron i. coupling (N, N): the signed coupling of drives attention applies
    (``NeuronAttention.drive_coupling``), None when its values do not read the drive. truth_coupling /
    truth_pools: the simulator's ground truth, (N, N), or None."""

    unit_id: np.ndarray
    positions_um: np.ndarray
    attention: np.ndarray | None
    attention_per_head: np.ndarray | None
    coupling: np.ndarray | None
    pools: np.ndarray | None
    truth_coupling: np.ndarray | None
    truth_pools: np.ndarray | None


@torch.no_grad()
def extract_maps(run: Run, data: str | os.PathLike, recording: str, tier: str = "test",
                 max_trials: int = 256, batch_size: int = 32) -> InteractionMaps:
    """Average attention maps over up to ``max_trials`` trials of ``tier`` (raw inputs through the run's
    normalisation and core), and read the learned pools."""
    encoder = run.encoder
    if encoder is None or recording not in encoder.interactions:
        raise DataError(f"{run.path}: recording {recording!r} has no interaction layers (fit a config with "
                        "model.interactions, e.g. configs/attention.yaml)")
    stack = encoder.interactions[recording]
    attention_layer = stack.find(NeuronAttention)
    norm_layer = stack.find(DivisiveNormalization)
    embedding = encoder.readouts[recording].embedding
    per_head = coupling = None
    if attention_layer is not None:
        signed = attention_layer.drive_coupling(embedding)
        coupling = None if signed is None else signed.numpy()
        arrays = load_arrays(data, recording, in_memory=False)
        trials = tier_trials(arrays, tier)[:max_trials]
        if not len(trials):
            raise DataError(f"{data}: recording {recording!r} has no {tier!r} trials to average attention over")
        total, count = None, 0
        for start in range(0, len(trials), batch_size):
            batch = arrays.read(trials[start:start + batch_size])
            tensors = {k: torch.as_tensor(v) for k, v in batch.items()
                       if k in ("stimulus", "behavior", "pupil_center")}
            out, _ = encoder.readout(recording, tensors["stimulus"], tensors.get("behavior"),
                                     tensors.get("pupil_center"))
            maps = attention_layer.attention_map(out.drive, out.features, embedding, heads=True)
            n = len(trials[start:start + batch_size])
            total = maps * n if total is None else total + maps * n
            count += n
        per_head = (total / count).numpy()
    pools = None if norm_layer is None else norm_layer.pool_matrix(embedding).numpy()
    truth = open_truth(data, recording)
    spec = run.specs[recording]
    unit_id = np.asarray(spec.unit_id)
    return InteractionMaps(
        unit_id=unit_id,
        positions_um=np.asarray(spec.coords_um, dtype=np.float64).reshape(-1, 3),
        attention=None if per_head is None else per_head.mean(axis=0),
        attention_per_head=per_head,
        coupling=coupling,
        pools=pools,
        truth_coupling=truth_matrix(truth, "coupling", unit_id, f"{data}: {recording}"),
        truth_pools=truth_matrix(truth, "norm_pool", unit_id, f"{data}: {recording}"),
    )


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


def untrained_run(run: Run) -> Run:
    """The run's model as training started (``checkpoints/init.ckpt``, written by ``neurofit fit`` after the
    readout positions were mapped), in eval mode. Its maps show what the architecture alone assumes
    (attention's distance bias and the distance pools prefer near neighbours from the start), the reference
    against which training is judged."""
    return replace(run, encoder=load_run(run.path, "init").encoder)
