"""Current-based decomposition (CURBD): the drive into every unit split by source region and by sign.

For target unit i and source region b, the current is sum_{j in b} J_ij r_j(t); its excitatory part uses
only J_ij > 0, its inhibitory part only J_ij < 0 (their sum is the total). Known inputs (B u) and inferred
inputs (C s) are sources too, so the variance each source explains can be compared with the inter-region
currents.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from neurofit.rnn.model import DataConstrainedRNN, to_numpy

SIGNS = ("excitatory", "inhibitory")


def source_weights(model: DataConstrainedRNN) -> dict[str, tuple[torch.Tensor, slice | torch.Tensor]]:
    """Each source's weight columns: name -> (weights (N, n_columns), which columns of the regressors
    [rates, exogenous inputs] they multiply)."""
    n = model.n_units
    weight = model.weight.detach()
    names = model.spec["region_names"]
    out: dict[str, tuple[torch.Tensor, slice | torch.Tensor]] = {}
    for k, name in enumerate(names):
        cols = torch.nonzero(model.region_index == k).flatten()
        out[name] = (weight[:, cols], cols)
    if model.n_inputs:
        out["input"] = (weight[:, n: n + model.n_inputs], slice(n, n + model.n_inputs))
    if model.n_inferred:
        out["inferred"] = (weight[:, n + model.n_inputs:], slice(n + model.n_inputs, None))
    return out


@torch.no_grad()
def decompose(model: DataConstrainedRNN, rates: torch.Tensor, exog: torch.Tensor | None) -> xr.Dataset:
    """CURBD currents of a model run.

    Args:
        model: the fitted RNN.
        rates: (trial, N, time) the model's rates (a free run).
        exog: (trial, time, E) the exogenous inputs of that run, or None.
    Returns:
        Dataset with ``unit_current`` (neuron, source, sign, trial, time), ``current`` (target_region, source,
        sign, trial, time) averaged over the target region's units, ``variance_share`` (target_region,
        source): each source's share of the summed variance over time of the sources' total currents, and
        ``block_norm`` (target_region, source_region): Frobenius norm of each block of J. Time in seconds.
    """
    rates = rates.to(model.weight.device, model.weight.dtype)
    regressors = rates.permute(0, 2, 1)  # (trial, time, N)
    if exog is not None:
        regressors = torch.cat([regressors, exog.to(rates)], dim=-1)
    sources = source_weights(model)
    per_source = []
    for weights, cols in sources.values():
        x = regressors[..., cols]
        parts = [torch.einsum("nc,ktc->nkt", weights.clamp(min=0), x),
                 torch.einsum("nc,ktc->nkt", weights.clamp(max=0), x)]
        per_source.append(torch.stack(parts, dim=1))  # (N, sign, trial, time)
    unit = to_numpy(torch.stack(per_source, dim=1))  # (N, source, sign, trial, time)

    names = list(model.spec["region_names"])
    region_index = model.region_index.cpu().numpy()
    by_region = np.stack([unit[region_index == k].mean(axis=0) for k in range(len(names))])
    total = unit.sum(axis=2)  # (N, source, trial, time)
    centred = total - total.mean(axis=-1, keepdims=True)
    power = np.stack([(centred[region_index == k] ** 2).sum(axis=(0, 2, 3)) for k in range(len(names))])
    share = power / np.maximum(power.sum(axis=1, keepdims=True), np.finfo(float).tiny)
    J = to_numpy(model.J)
    norms = np.array([[np.linalg.norm(J[np.ix_(region_index == a, region_index == b)]) for b in range(len(names))]
                      for a in range(len(names))])
    n_trials, _, n_samples = rates.shape
    return xr.Dataset(
        {
            "unit_current": (("neuron", "source", "sign", "trial", "time"), unit),
            "current": (("target_region", "source", "sign", "trial", "time"), by_region),
            "variance_share": (("target_region", "source"), share),
            "block_norm": (("target_region", "source_region"), norms),
        },
        coords={"neuron": np.arange(model.n_units), "region": ("neuron", np.asarray(model.spec["regions"])),
                "source": list(sources), "sign": list(SIGNS), "trial": np.arange(n_trials),
                "time": np.arange(n_samples) * model.dt, "target_region": names, "source_region": names},
        attrs={"description": "CURBD currents: J (or input weights) restricted to a source times its rates; "
                              "excitatory = positive weights only, inhibitory = negative weights only",
               "time_units": "s"},
    )
