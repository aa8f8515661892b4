"""Continuous-time RNN (CTRNN) with the biological constraints of the RNN-for-neuroscience toolkits.

Dynamics, Euler-discretised with alpha = dt / tau (Song, Yang & Wang 2016)::

    h[t+1] = (1 - alpha) * h[t] + alpha * (W_rec r[t] + W_in x[t] + b) + sqrt(2 alpha) * sigma_pre * xi
    r[t+1] = phi(h[t+1]) + sigma_post * xi'

Options: per-neuron tau, activation choice, pre- and post-activation noise, Dale's law (sign-constrained
weights |W| * sign), sparsity/connectivity masks, multi-area block structure (which areas receive input and
which are read out), plasticity masks (frozen connections keep their initial value), spectral-radius (g)
initialisation and the Song-Yang firing-rate/weight regulariser. Masks and signs come from
``neurofit.models.constraints`` and are shared with the data-constrained RNN (``neurofit.rnn``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from neurofit.errors import ConfigError
from neurofit.models import constraints

#: Activation functions by name.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "softplus": F.softplus,
    "sigmoid": torch.sigmoid,
    "retanh": lambda x: torch.tanh(F.relu(x)),
    "identity": lambda x: x,
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function called ``name`` (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


@dataclass
class MultiArea:
    """Areas as consecutive blocks of hidden units.

    Attributes:
        sizes: units per area (A,).
        within_density: connection probability inside each area (scalar or (A,)).
        between_density: probability of connections between areas: scalar or (A, A) nested list indexed
            [target][source]; 0 forbids a projection.
        input_areas: indices of areas that receive the external input (default: all).
        readout_areas: indices of areas whose rates are read out (default: all).
    """

    sizes: Sequence[int]
    within_density: float | Sequence[float] = 1.0
    between_density: float | Sequence[Sequence[float]] = 0.1
    input_areas: Sequence[int] | None = None
    readout_areas: Sequence[int] | None = None
    groups: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        if any(s <= 0 for s in self.sizes):
            raise ConfigError(f"every area needs at least one unit, got sizes {list(self.sizes)}")
        self.groups = torch.repeat_interleave(torch.arange(len(self.sizes)), torch.as_tensor(self.sizes))

    @property
    def hidden_size(self) -> int:
        """Total number of units."""
        return int(sum(self.sizes))

    def recurrent_mask(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """(hidden, hidden) boolean recurrent mask with the block densities."""
        return constraints.multi_area_mask(self.sizes, self.within_density,
                                           torch.as_tensor(self.between_density, dtype=torch.float32),
                                           generator)

    def input_mask(self, input_size: int) -> torch.Tensor:
        """(hidden, input) boolean mask: only units of ``input_areas`` receive input."""
        return self._units(self.input_areas)[:, None].expand(-1, input_size).clone()

    def readout_units(self) -> torch.Tensor:
        """(hidden,) boolean: units of ``readout_areas``."""
        return self._units(self.readout_areas)

    def _units(self, areas: Sequence[int] | None) -> torch.Tensor:
        if areas is None:
            return torch.ones(self.hidden_size, dtype=torch.bool)
        return torch.isin(self.groups, torch.as_tensor(list(areas)))


class CTRNNCell(nn.Module):
    """One Euler step of a CTRNN.

    Args:
        input_size: input features per step.
        hidden_size: number of units.
        dt: integration step (any time unit, the same as ``tau``).
        tau: time constant, scalar or per-neuron (hidden,).
        activation: name in ``ACTIVATIONS``.
        preact_noise: sigma of the noise on the state (scaled by sqrt(2 alpha), Song et al. 2016); like
            dropout, noise is added in training mode only (``model.eval()`` runs deterministically).
        postact_noise: sigma of the noise added to the rates (training mode only), so an encoder's
            predictions in eval mode are deterministic.
        e_fraction: None for unconstrained signs; otherwise Dale's law with this fraction of excitatory units
            (0.8 = 4:1). ``signs`` overrides it with explicit per-unit signs (hidden,).
        recurrent_mask, input_mask: boolean masks (hidden, hidden) / (hidden, input); False = no connection.
        plasticity_mask: boolean (hidden, hidden); False = frozen at the initial value.
        g: spectral radius of the initial recurrent weights.
        bias: learn a bias per unit.
        generator: random generator for the initialisation.
    """

    def __init__(self, input_size: int, hidden_size: int, *, dt: float = 1.0, tau: float | Sequence[float] = 10.0,
                 activation: str = "relu", preact_noise: float = 0.0, postact_noise: float = 0.0,
                 e_fraction: float | None = None, signs: torch.Tensor | None = None,
                 recurrent_mask: torch.Tensor | None = None, input_mask: torch.Tensor | None = None,
                 plasticity_mask: torch.Tensor | None = None, g: float = 1.0, bias: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.activation_name = activation
        self.phi = get_activation(activation)
        self.preact_noise, self.postact_noise = float(preact_noise), float(postact_noise)
        tau_t = torch.as_tensor(tau, dtype=torch.float32).expand(hidden_size).clone()
        if (tau_t <= 0).any() or dt <= 0:
            raise ConfigError(f"tau and dt must be positive (dt={dt}, min tau={float(tau_t.min())})")
        self.register_buffer("alpha", dt / tau_t)
        if signs is None and e_fraction is not None:
            signs = constraints.dale_signs(hidden_size, e_fraction)
        self.register_buffer("signs", None if signs is None else torch.as_tensor(signs, dtype=torch.float32))
        self.register_buffer("recurrent_mask", _mask(recurrent_mask, (hidden_size, hidden_size)))
        self.register_buffer("input_mask", _mask(input_mask, (hidden_size, input_size)))
        self.register_buffer("plasticity_mask", _mask(plasticity_mask, (hidden_size, hidden_size)))

        self.weight_hh = nn.Parameter(self._init_recurrent(g, generator))
        self.register_buffer("weight_hh_init", self.weight_hh.detach().clone())
        bound = 1.0 / math.sqrt(max(1, input_size))
        self.weight_ih = nn.Parameter((torch.rand(hidden_size, input_size, generator=generator) * 2 - 1) * bound)
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None

    def _init_recurrent(self, g: float, generator: torch.Generator | None) -> torch.Tensor:
        """Gaussian weights in the masks; with Dale's law, |N(0,1)| with inhibitory columns scaled by
        n_E / n_I so that every row sums to zero in expectation (balanced), then scaled to radius g."""
        w = torch.randn(self.hidden_size, self.hidden_size, generator=generator) / math.sqrt(self.hidden_size)
        if self.signs is not None:
            n_e, n_i = int((self.signs > 0).sum()), int((self.signs < 0).sum())
            w = w.abs() * torch.where(self.signs > 0, 1.0, n_e / max(1, n_i))[None, :]
        w = w * self.recurrent_mask
        effective = w if self.signs is None else constraints.apply_dale(w, self.signs)
        radius = constraints.spectral_radius(effective)
        return w if radius == 0.0 else w * (g / radius)

    def recurrent_weight(self) -> torch.Tensor:
        """Effective recurrent weights (hidden, hidden) [post, pre]: frozen entries, mask and signs applied."""
        w = torch.where(self.plasticity_mask, self.weight_hh, self.weight_hh_init)
        if self.signs is not None:
            w = constraints.apply_dale(w, self.signs)
        return w * self.recurrent_mask

    def input_weight(self) -> torch.Tensor:
        """Effective input weights (hidden, input)."""
        return self.weight_ih * self.input_mask

    def forward(self, x: torch.Tensor, h: torch.Tensor, r: torch.Tensor | None = None,
                weights: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step.

        Args:
            x: (batch, input) input at this step.
            h: (batch, hidden) state.
            r: (batch, hidden) rates at this step; defaults to phi(h).
            weights: precomputed (recurrent_weight(), input_weight()) to save work inside a time loop.
        Returns:
            (h_next, r_next), each (batch, hidden).
        """
        w_hh, w_ih = weights if weights is not None else (self.recurrent_weight(), self.input_weight())
        r = self.phi(h) if r is None else r
        drive = F.linear(r, w_hh) + F.linear(x, w_ih, self.bias)
        h_next = h + self.alpha * (drive - h)
        if self.preact_noise > 0 and self.training:
            h_next = h_next + torch.sqrt(2 * self.alpha) * self.preact_noise * torch.randn_like(h_next)
        r_next = self.phi(h_next)
        if self.postact_noise > 0 and self.training:
            r_next = r_next + self.postact_noise * torch.randn_like(r_next)
        return h_next, r_next


def _mask(mask: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if tuple(mask.shape) != shape:
        raise ConfigError(f"mask has shape {tuple(mask.shape)}, expected {shape}")
    return mask


class CTRNN(nn.Module):
    """A CTRNN layer run over time.

    Args:
        input_size: input features per step.
        hidden_size: number of units (must equal ``multi_area.hidden_size`` when given).
        multi_area: optional area structure; provides the recurrent and input masks (combined with any
            masks passed in ``cell_kwargs``) and the read-out units.
        generator: random generator for masks and weights.
        **cell_kwargs: options of ``CTRNNCell``.
    """

    def __init__(self, input_size: int, hidden_size: int, *, multi_area: MultiArea | None = None,
                 generator: torch.Generator | None = None, **cell_kwargs) -> None:
        super().__init__()
        readout = torch.ones(hidden_size, dtype=torch.bool)
        if multi_area is not None:
            if multi_area.hidden_size != hidden_size:
                raise ConfigError(f"multi_area has {multi_area.hidden_size} units, hidden_size is {hidden_size}")
            for key, mask in (("recurrent_mask", multi_area.recurrent_mask(generator)),
                              ("input_mask", multi_area.input_mask(input_size))):
                given = cell_kwargs.get(key)
                cell_kwargs[key] = mask if given is None else mask & torch.as_tensor(given, dtype=torch.bool)
            readout = multi_area.readout_units()
        self.cell = CTRNNCell(input_size, hidden_size, generator=generator, **cell_kwargs)
        self.register_buffer("readout_index", torch.nonzero(readout).flatten())

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over a sequence.

        Args:
            x: (batch, time, input) inputs.
            h0: (batch, hidden) initial state (zeros by default).
        Returns:
            rates (batch, time, hidden) after each step, and the last state (batch, hidden).
        """
        batch = x.shape[0]
        h = x.new_zeros(batch, self.cell.hidden_size) if h0 is None else h0
        r = self.cell.phi(h)
        weights = (self.cell.recurrent_weight(), self.cell.input_weight())
        rates = []
        for frame in x.unbind(1):  # unbind: indexing x[:, t] has a backward quadratic in the steps
            h, r = self.cell(frame, h, r, weights)
            rates.append(r)
        return torch.stack(rates, dim=1), h

    def readout(self, rates: torch.Tensor) -> torch.Tensor:
        """Rates of the read-out units, (..., hidden) -> (..., n_readout)."""
        return rates[..., self.readout_index]


def song_yang_penalty(rates: torch.Tensor, cell: CTRNNCell, rate_l2: float = 0.0, weight_l2: float = 0.0,
                      weight_l1: float = 0.0) -> torch.Tensor:
    """The Song-Yang regulariser: rate_l2 * mean(r^2) + weight_l2 * mean(W^2) + weight_l1 * mean(|W|),
    the weight terms over the effective recurrent and input weights (existing connections only).

    Args:
        rates: (batch, time, hidden) rates from ``CTRNN.forward``.
        cell: the cell whose weights are penalised.
    Returns:
        Scalar penalty to add to the task loss.
    """
    penalty = rate_l2 * rates.pow(2).mean()
    for w, mask in ((cell.recurrent_weight(), cell.recurrent_mask), (cell.input_weight(), cell.input_mask)):
        n = mask.sum().clamp(min=1)
        penalty = penalty + weight_l2 * w.pow(2).sum() / n + weight_l1 * w.abs().sum() / n
    return penalty
