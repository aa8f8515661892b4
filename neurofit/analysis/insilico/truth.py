"""In-silico results against the simulator's planted truth (``NAME/truth``, neurofit/data/simulate/v1.py).

- Filter correlation, best phase: the Pearson correlation of an image with the best linear combination of
  the neuron's even and odd Gabor filters, i.e. the norm of its projection onto their span over its own
  norm (both mean-subtracted). It is 1 for any phase of the planted Gabor and ignores the sign, so it
  scores simple and complex cells alike.
- RF centre error: Euclidean distance to ``rf_center_px``, pixels.
- Orientation error: circular difference mod 180 degrees, in [0, 90].
- Spatial-frequency ratio: in-silico / planted ``rf_spatial_frequency_cpp`` (the planted filter pairs'
  own optimal grating frequency is the planted one, median ratio 1.00 on the default data, so a perfect
  model gives 1).
- Cell type: F1/F0 > 1 calls a neuron simple.
- Normalisation strength: 1 / (1 + sigma^n), the share of the pool in the normalisation denominator
  sigma^n + sum_j P_ij d_j^n when the pool's drive is at its natural-image level (1, the drive's unit): the
  planted pools' rows all sum to 1, so a neuron's semi-saturation sigma sets how much a surround that
  drives the pool can suppress it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xarray as xr


@dataclass
class Truth:
    """The planted parameters of K neurons, in the order analysed: filters (K, 2, H, W) even/odd,
    centre_px (K, 2), orientation_rad, sf_cpp, sigma_px (K,), simple (K,) bool, pool_strength (K,)."""

    filters: np.ndarray
    centre_px: np.ndarray
    orientation_rad: np.ndarray
    sf_cpp: np.ndarray
    sigma_px: np.ndarray
    simple: np.ndarray
    pool_strength: np.ndarray


def truth_for(truth: xr.Dataset, neurons: np.ndarray) -> Truth:
    """The planted parameters of the truth Dataset's neurons at positions ``neurons`` (K,)."""
    exponent = json.loads(truth.attrs.get("params", "{}")).get("norm_exponent", 2.0)
    take = {"neuron": np.asarray(neurons)}
    part = truth[["rf_filters", "rf_center_px", "rf_orientation_rad", "rf_spatial_frequency_cpp", "rf_sigma_px",
                  "cell_type", "norm_sigma"]].isel(take).load()
    return Truth(filters=part["rf_filters"].values.astype(np.float64), centre_px=part["rf_center_px"].values,
                 orientation_rad=part["rf_orientation_rad"].values, sf_cpp=part["rf_spatial_frequency_cpp"].values,
                 sigma_px=part["rf_sigma_px"].values, simple=part["cell_type"].values.astype(str) == "simple",
                 pool_strength=1.0 / (1.0 + part["norm_sigma"].values ** exponent))


def filter_correlation(images: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Best-phase correlation (module docstring) of images (K, H, W) with filter pairs (K, 2, H, W) -> (K,)."""
    k = len(images)
    x = images.reshape(k, -1).astype(np.float64)
    x = x - x.mean(1, keepdims=True)
    pair = filters.reshape(k, 2, -1).astype(np.float64)
    pair = pair - pair.mean(2, keepdims=True)
    basis, _ = np.linalg.qr(np.transpose(pair, (0, 2, 1)))  # (K, P, 2) orthonormal span of even and odd
    projection = np.linalg.norm(np.einsum("kpj,kp->kj", basis, x), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return projection / np.linalg.norm(x, axis=1)


def centre_error(centre_px: np.ndarray, true_px: np.ndarray) -> np.ndarray:
    """Euclidean distances (K,) between centres (K, 2), pixels."""
    return np.linalg.norm(np.asarray(centre_px) - np.asarray(true_px), axis=1)


def orientation_error_deg(orientation_rad: np.ndarray, true_rad: np.ndarray) -> np.ndarray:
    """Circular orientation difference mod 180 degrees, in [0, 90] (NaN stays NaN)."""
    d = np.mod(np.asarray(orientation_rad) - np.asarray(true_rad), np.pi)
    return np.degrees(np.minimum(d, np.pi - d))
