"""Consistency of learned neuron embeddings across seeds (Turishcheva et al. 2024, "Reproducibility of
predictive networks for mouse visual cortex").

A neuron's embedding is its readout feature vector, ``encoder.readouts[recording].embedding`` (N, C). Its
axes are arbitrary: two seeds can learn the same embedding up to a rotation, reflection or permutation of
channels. So both measures here are invariant to orthogonal transforms:

- clustering agreement: k-means clusters of each seed's standardised embeddings, adjusted Rand index
  between seeds;
- per-neuron similarity: cosine similarity of each neuron's standardised embedding in seed A and in seed B
  after rotating B onto A (orthogonal Procrustes); the same with B's neurons shuffled is the similarity that
  alignment alone produces (chance level).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.linalg import orthogonal_procrustes
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from neurofit.config import load_config
from neurofit.run import load_run


def run_embeddings(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]] | None:
    """Neuron embeddings of a fitted run: per recording ``{"key": (N,) "recording/unit_id", "embedding":
    (N, C)}``; None for runs without an encoder (ridge)."""
    if load_config(Path(path) / "config.yaml").type != "encoder":
        return None
    run = load_run(path)
    out = {}
    for name, readout in run.encoder.readouts.items():
        keys = np.array([f"{name}/{u}" for u in run.specs[name].unit_id])
        out[name] = {"key": keys, "embedding": readout.embedding.detach().cpu().numpy().astype(np.float64)}
    return out


def standardize(embedding: np.ndarray) -> np.ndarray:
    """Centre each channel and divide by the overall RMS distance from the centre. (N, C) -> (N, C).

    One scale for all channels rather than per-channel z-scores, because per-channel scaling is not
    rotation-equivariant: embeddings equal up to rotation would stop being so after it."""
    x = np.asarray(embedding, dtype=np.float64)
    x = x - x.mean(axis=0)
    scale = np.sqrt((x**2).sum(axis=1).mean())
    return x / scale if scale > 0 else x


def kmeans_labels(embedding: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """k-means cluster label per neuron of the standardised embedding (N, C) -> (N,) ints; ``clusters`` is
    capped at N."""
    k = max(1, min(clusters, len(embedding)))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(standardize(embedding))


def cluster_agreement(a: np.ndarray, b: np.ndarray, clusters: int, seed: int = 0) -> float:
    """Adjusted Rand index between the k-means clusterings of two embeddings of the same neurons, (N, C_a)
    and (N, C_b): 1 for the same partition (any labels), about 0 for unrelated ones."""
    return float(adjusted_rand_score(kmeans_labels(a, clusters, seed), kmeans_labels(b, clusters, seed)))


def aligned_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-neuron cosine similarity between standardised ``a`` (N, C) and standardised ``b`` (N, C) rotated
    onto ``a`` by orthogonal Procrustes. Returns (N,) in [-1, 1]; 1 everywhere when b = a @ R."""
    za, zb = standardize(a), standardize(b)
    rotation, _ = orthogonal_procrustes(zb, za)
    zb = zb @ rotation
    norms = np.linalg.norm(za, axis=1) * np.linalg.norm(zb, axis=1)
    return np.where(norms > 0, (za * zb).sum(axis=1) / np.where(norms > 0, norms, 1.0), 0.0)


def seed_consistency(embeddings: list[dict[str, dict[str, np.ndarray]]], keys: np.ndarray, clusters: int = 5,
                     seed: int = 0) -> dict[str, float | np.ndarray]:
    """Consistency of one architecture over its seeds (>= 2 entries of ``run_embeddings``).

    Over every pair of seeds and every recording: ARI of k-means clusters, per-neuron aligned similarity and
    the same with one seed's neurons shuffled. Returns ``ari`` and ``ari_sem`` (over seed pairs, each pair's
    ARI averaged over recordings), ``similarity`` and ``similarity_shuffled`` (means over neurons and pairs),
    and ``similarity_neuron`` (neuron,) in the order of ``keys`` (``recording/unit_id``; NaN where a
    neuron has no embedding). Similarities need C >= 2: with one channel any alignment is a sign flip, so
    they are NaN there."""
    rng = np.random.default_rng(seed)
    index = {k: i for i, k in enumerate(keys)}
    aris, sims, shuffled = [], [], []
    per_neuron = np.zeros(len(keys))
    counts = np.zeros(len(keys))
    for first, second in itertools.combinations(embeddings, 2):
        pair_aris = []
        for name, rec in first.items():
            if not all(k in index for k in rec["key"]):  # a recording the runs were not scored on
                continue
            a, b = rec["embedding"], second[name]["embedding"]
            pair_aris.append(cluster_agreement(a, b, clusters, seed))
            if a.shape[1] < 2:
                continue
            sim = aligned_similarity(a, b)
            idx = [index[k] for k in rec["key"]]
            per_neuron[idx] += sim
            counts[idx] += 1
            sims.append(sim.mean())
            shuffled.append(aligned_similarity(a, b[rng.permutation(len(b))]).mean())
        aris.append(np.mean(pair_aris))
    with np.errstate(invalid="ignore"):
        neuron = per_neuron / counts
    return {"ari": float(np.mean(aris)),
            "ari_sem": float(np.std(aris, ddof=1) / np.sqrt(len(aris))) if len(aris) > 1 else np.nan,
            "similarity": float(np.mean(sims)) if sims else np.nan,
            "similarity_shuffled": float(np.mean(shuffled)) if shuffled else np.nan,
            "similarity_neuron": neuron}


def architecture_consistency(groups: dict[str, list[Path]], neuron_r: xr.DataArray,
                             clusters: int = 5) -> xr.Dataset:
    """``seed_consistency`` per architecture (run paths, one per seed). ``neuron_r`` supplies the neuron
    order (its ``neuron_recording`` and ``unit_id`` coords). Architectures with fewer than 2 seeds or without
    embeddings (ridge) get NaN.

    Returns a Dataset with ``embedding_ari``, ``embedding_ari_sem``, ``embedding_similarity``,
    ``embedding_similarity_shuffled`` over ``architecture`` and ``embedding_similarity_neuron``
    (architecture, neuron)."""
    keys = np.array([f"{r}/{u}" for r, u in zip(neuron_r["neuron_recording"].values, neuron_r["unit_id"].values)])
    names = list(groups)
    scalars = {k: np.full(len(names), np.nan) for k in ("ari", "ari_sem", "similarity", "similarity_shuffled")}
    neuron = np.full((len(names), len(keys)), np.nan)
    for i, paths in enumerate(groups.values()):
        if len(paths) < 2:
            continue
        embeddings = [run_embeddings(p) for p in paths]
        if any(e is None for e in embeddings):
            continue
        result = seed_consistency(embeddings, keys, clusters)
        for k in scalars:
            scalars[k][i] = result[k]
        neuron[i] = result["similarity_neuron"]
    data = {f"embedding_{k}": ("architecture", v) for k, v in scalars.items()}
    data["embedding_similarity_neuron"] = (("architecture", "neuron"), neuron)
    return xr.Dataset(data, coords={"architecture": names}, attrs={"clusters": clusters})
