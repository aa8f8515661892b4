"""The data-constrained multi-region rate RNN (CURBD, Perich et al.): one unit per recorded neuron.

    tau dh/dt = -h + J phi(h) + B u(t) + C s(t) + eta(t)

J (N, N) [post, pre] is the inter-unit connectivity, B the weights of known inputs u, C those of smooth
inferred inputs s (Gaussian bumps tiling each trial, time-locked to its start) and eta filtered white noise.
The data step is split into ``dt_factor`` Euler steps; every trial starts from the data's state. All three
fitting methods (``rls``, ``bptt``, ``ridge``) train the same ``weight = [J | B | C]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.signal import lfilter
from torch import nn

from neurofit.errors import ConfigError
from neurofit.io import atomic_path
from neurofit.models import constraints as cons
from neurofit.models.cores.ctrnn import get_activation
from neurofit.rnn.config import ConstraintConfig, ModelConfig
from neurofit.rnn.data import RNNData

#: Inverse activations, needed when the data are rates: the current targets are phi^-1(rates).
INVERSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"tanh": torch.atanh, "sigmoid": torch.logit}
#: Rates are clipped this far inside phi's range before inversion so targets stay finite.
CLIP_EPS = 1e-6

SampleHook = Callable[[int, torch.Tensor, torch.Tensor], None]


class DataConstrainedRNN(nn.Module):
    """Rate RNN whose units are the recorded neurons.

    Args:
        regions: (N,) region label per unit.
        region_names: region order for blocks and reports.
        dt: data sampling step, seconds.
        n_samples: samples per trial (sets the inferred-input basis).
        input_channels: names of the known input channels used (may be empty).
        model: dynamics options; constraints: connectivity options.
    """

    def __init__(self, regions: list[str], region_names: list[str], dt: float, n_samples: int,
                 input_channels: list[str], model: ModelConfig, constraints: ConstraintConfig) -> None:
        super().__init__()
        self.spec = {"regions": list(regions), "region_names": list(region_names), "dt": float(dt),
                     "n_samples": int(n_samples), "input_channels": list(input_channels),
                     "model": vars(model).copy(), "constraints": vars(constraints).copy()}
        self.cfg, self.constraint_cfg = model, constraints
        self.n_units = len(regions)
        self.n_inputs = len(input_channels)
        self.n_inferred = int(model.inferred_inputs)
        self.dt, self.n_samples = float(dt), int(n_samples)
        self.alpha = dt / model.dt_factor / model.tau
        self.phi = get_activation(model.activation)
        gen = torch.Generator().manual_seed(model.seed)
        n = self.n_units
        groups = cons.group_index(regions, region_names)
        self.register_buffer("region_index", groups)
        mask = cons.expand_blocks(cons.block_table(region_names, constraints.allowed), groups)
        mask &= cons.random_mask((n, n), constraints.density, gen)
        self.register_buffer("mask", mask)
        signs = (cons.unit_signs(regions, constraints.e_fraction, constraints.region_signs, gen)
                 if constraints.dale else None)
        self.register_buffer("signs", signs)
        plastic = torch.zeros(n, dtype=torch.bool)
        plastic[torch.randperm(n, generator=gen)[: max(1, round(constraints.plastic_fraction * n))]] = True
        self.register_buffer("plastic", plastic)
        self.register_buffer("lr_scale", self._block_lr(region_names, constraints.block_lr, groups))
        weight = torch.zeros(n, n + self.n_inputs + self.n_inferred)
        self.weight = nn.Parameter(weight)
        self.register_buffer("weight_init", weight.clone())
        #: True when weights must be projected after unconstrained updates (fixed at construction).
        self.has_frozen = not bool(plastic.all())
        self.constrained = bool(signs is not None or not mask.all() or self.has_frozen)
        self.set_initial_weights_(model.g * torch.randn(n, n, generator=gen) / math.sqrt(n))

    def _block_lr(self, names: list[str], spec: dict[str, float], groups: torch.Tensor) -> torch.Tensor | None:
        """(N, N + E) learning-rate scale, or None when every block learns at rate 1."""
        if not spec:
            return None
        table = torch.ones(len(names), len(names))
        index = {name: i for i, name in enumerate(names)}
        for key, value in spec.items():
            target, sep, source = key.partition("<-")
            if not sep or target not in index or source not in index:
                raise ConfigError(f"constraints.block_lr key {key!r} must be 'TARGET<-SOURCE' with regions from "
                                  f"{names}")
            table[index[target], index[source]] = float(value)
        scale = torch.ones(self.n_units, self.weight_width)
        scale[:, : self.n_units] = cons.expand_blocks(table, groups)
        return scale

    @property
    def weight_width(self) -> int:
        """Columns of ``weight``: N + known inputs + inferred inputs."""
        return self.n_units + self.n_inputs + self.n_inferred

    @property
    def J(self) -> torch.Tensor:
        """(N, N) recurrent weights [post, pre] (a view of ``weight``)."""
        return self.weight[:, : self.n_units]


    @torch.no_grad()
    def project_(self) -> None:
        """Project ``weight`` onto the constraints in place: masked connections to zero, Dale signs, and
        outgoing weights of non-plastic units back to their initial values."""
        J = self.weight.data[:, : self.n_units]
        if not self.constrained:
            return
        J.mul_(self.mask)
        if self.signs is not None:
            cons.project_dale(J, self.signs)
        if self.has_frozen:
            frozen = ~self.plastic
            J[:, frozen] = self.weight_init[:, : self.n_units][:, frozen]

    def basis(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """(time, n_inferred) smooth inferred-input basis at trial samples [start, stop) (default: the whole
        trial): Gaussian bumps with centres spread evenly over the model's trial (``n_samples``) and width
        equal to their spacing."""
        t_len, k = self.n_samples, self.n_inferred
        t = torch.arange(start, t_len if stop is None else stop, dtype=torch.float32)[:, None]
        centres = torch.linspace(0, t_len - 1, k)[None, :]
        width = max(1.0, t_len / max(1, k))
        return torch.exp(-0.5 * ((t - centres) / width) ** 2)

    def currents_from_rates(self, rates: torch.Tensor) -> torch.Tensor:
        """Current targets (same shape) from normalised data rates: phi^-1 with clipping."""
        inverse = INVERSES.get(self.cfg.activation)
        if inverse is None:
            raise ConfigError(f"data.space 'rates' needs an invertible activation {sorted(INVERSES)}, "
                              f"got {self.cfg.activation!r}; use data.space 'currents'")
        low, high = (-1.0, 1.0) if self.cfg.activation == "tanh" else (0.0, 1.0)
        if rates.min() < low or rates.max() > high:
            raise ConfigError(f"data in [{float(rates.min()):.3g}, {float(rates.max()):.3g}] are outside the "
                              f"range of {self.cfg.activation}; normalise with 'max' or 'region', or use "
                              "data.space 'currents'")
        return inverse(rates.clamp(low + CLIP_EPS, high - CLIP_EPS))

    def drive_targets(self, h: torch.Tensor, rates: torch.Tensor, target: str | None = None) -> torch.Tensor:
        """What the model's output is trained towards, (trial, N, time), from data currents ``h`` and rates.

        ``target`` (default ``model.target``): ``rates``: the data rates (compared with phi(h)); ``currents``
        (CURBD's current form): h itself (compared with the drive J phi(h) + B u + C s); ``drive``:
        h + tau dh/dt with a forward difference, the drive that reproduces the data under the model's
        dynamics (last sample: backward difference)."""
        target = target or self.cfg.target
        if target == "rates":
            return rates
        if target == "currents":
            return h
        dh = torch.diff(h, dim=-1)
        dh = torch.cat([dh, dh[..., -1:]], dim=-1)
        return h + self.cfg.tau / self.dt * dh

    def output(self, r: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """What is compared with the targets at a sample: the rates ``r`` (``target: rates``) or the drive."""
        return r if self.cfg.target == "rates" else drive

    @torch.no_grad()
    def set_initial_weights_(self, J: torch.Tensor) -> None:
        """Replace the random initial J (and the reference that frozen units keep), with its inter-region blocks
        zeroed for ``model.inter_region_start: zero``, then apply the constraints."""
        if self.cfg.inter_region_start == "zero":
            J = J * (self.region_index[:, None] == self.region_index[None, :]).to(J)
        self.weight.data[:, : self.n_units] = J.to(self.weight)
        self.weight_init.copy_(self.weight.data)
        self.project_()
        self.weight_init.copy_(self.weight.data)

    def make_noise(self, n_trials: int, n_samples: int, seed: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        """Filtered white noise (Ornstein-Uhlenbeck, standard deviation ``noise_amp``, time constant
        ``noise_tau``) for every model step: (n_samples * dt_factor, trial, N), or None when the amplitude is 0.
        Drawn once and reused across runs, as CURBD does, so runs differ only by learning."""
        amp = self.cfg.noise_amp
        if amp <= 0:
            return None
        steps = n_samples * self.cfg.dt_factor
        decay = math.exp(-self.dt / self.cfg.dt_factor / self.cfg.noise_tau)
        white = amp * np.random.default_rng(seed).standard_normal((steps, n_trials, self.n_units))
        white[1:] *= math.sqrt(1.0 - decay**2)
        return torch.as_tensor(lfilter([1.0], [1.0, -decay], white, axis=0), device=device, dtype=dtype)

    def simulate(self, start: torch.Tensor, exog: torch.Tensor | None, n_samples: int, *,
                 noise: torch.Tensor | None = None, on_sample: SampleHook | None = None,
                 resets: torch.Tensor | None = None) -> torch.Tensor:
        """Run the model from ``start[..., 0]`` for ``n_samples`` data samples.

        Args:
            start: (trial, N, time) states to start from (first column) and to reset to (``resets``).
            exog: (trial, time, E) known and inferred input time courses (``exogenous``), or None.
            n_samples: data samples to run.
            noise: (n_samples * dt_factor, trial, N) input noise from ``make_noise``, or None.
            on_sample: called at each data sample with (sample index, rates (trial, N), drive (trial, N))
                before the step; recursive least squares updates ``weight`` in place there.
            resets: (trial, time) True where the state is set to ``start`` before that sample, or None.
        Returns:
            (trial, N, time) rates at the data samples.
        """
        n, steps = self.n_units, self.cfg.dt_factor
        # Views of weight: in-place updates made by on_sample are seen by the following steps.
        j_t, ext_t = self.weight[:, :n].T, self.weight[:, n:].T
        # Per-step views made once: indexing a tensor inside the loop costs more than the small ops.
        noise_steps = noise.unbind(0) if noise is not None else None
        exog_steps = exog.unbind(1) if exog is not None else None
        reset_at = {} if resets is None else {
            int(i): resets[:, i, None] for i in torch.nonzero(resets[:, :n_samples].any(0)).flatten().tolist()}
        h, rates = start[:, :, 0], []
        for i in range(n_samples):
            if i in reset_at:
                h = torch.where(reset_at[i], start[:, :, i], h)
            base = exog_steps[i] @ ext_t if exog_steps is not None else None
            for step in range(steps):
                r = self.phi(h)
                bias = base
                if noise_steps is not None:
                    eta = noise_steps[i * steps + step]
                    bias = eta if bias is None else bias + eta
                drive = r @ j_t if bias is None else torch.addmm(bias, r, j_t)
                if step == 0:
                    rates.append(r)
                    if on_sample is not None:
                        on_sample(i, r, drive)
                h = torch.lerp(h, drive, self.alpha)
        return torch.stack(rates, dim=-1)


@dataclass
class FitData:
    """Data as tensors on the fitting device.

    Attributes:
        h: (trial, N, time) data currents; rates: (trial, N, time) data in rate space (for pVar);
        start: (trial, N, time) the states trials start and reset from (``model.initial_state``);
        targets: (trial, N, time) what the model's output is trained towards (``model.target``);
        exog: (trial, time, E) known + inferred inputs or None;
        resets: (trial, time) True at reset points (the state is set to ``start``), or None.
    """

    h: torch.Tensor
    rates: torch.Tensor
    start: torch.Tensor
    targets: torch.Tensor
    exog: torch.Tensor | None
    resets: torch.Tensor | None = None


def build_model(data: RNNData, model: ModelConfig, constraints: ConstraintConfig) -> DataConstrainedRNN:
    """A model sized for ``data``; ``DataError`` if the trials are too short for ``model.tau``."""
    data.check_duration(model.tau)
    channels = list(data.input_channels) if model.use_inputs else []
    return DataConstrainedRNN(data.regions.tolist(), list(data.region_names), data.dt,
                              data.trial_samples or data.n_samples, channels, model, constraints)


def fit_data(model: DataConstrainedRNN, data: RNNData, space: str, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> FitData:
    """Tensors for fitting: currents, rate-space data, start states, targets, inputs and reset points."""
    x = torch.as_tensor(data.rates, dtype=torch.float64)
    h = model.currents_from_rates(x) if space == "rates" else x
    rates = model.phi(h)
    parts = []
    if model.n_inputs:
        parts.append(torch.as_tensor(data.inputs, dtype=torch.float64))
    if model.n_inferred:
        stop = data.first_sample + data.n_samples
        parts.append(model.basis(data.first_sample, stop).double().expand(data.n_trials, -1, -1))
    exog = torch.cat(parts, dim=-1) if parts else None
    resets = None
    if data.reset_points:
        resets = torch.zeros(data.n_trials, data.n_samples, dtype=torch.bool, device=device)
        resets[:, list(data.reset_points)] = True

    def move(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device=device, dtype=dtype).contiguous()

    start = h if model.cfg.initial_state == "currents" else x
    return FitData(h=move(h), rates=move(rates), start=move(start), targets=move(model.drive_targets(h, rates)),
                   exog=move(exog), resets=resets)


def pvar(data: torch.Tensor, fitted: torch.Tensor) -> float:
    """CURBD's pVar: 1 - ||data - fitted||_F^2 / ||data - mean(data)||_F^2 (mean over all entries)."""
    data, fitted = data.double(), fitted.double()
    return float(1.0 - (data - fitted).pow(2).sum() / (data - data.mean()).pow(2).sum())


@torch.no_grad()
def free_run(model: DataConstrainedRNN, fd: FitData, noise_seed: int = 0) -> tuple[torch.Tensor, float, float]:
    """Run the model over every trial from the data's initial states without learning.

    Returns:
        model rates (trial, N, time), pVar against the data, and chi2 (sum over samples of the mean squared
        error between the model's output and the targets).
    """
    n_trials, _, n_samples = fd.h.shape
    outputs = torch.empty(n_samples, *fd.h.shape[:2], device=fd.h.device, dtype=fd.h.dtype)

    def record(i: int, r: torch.Tensor, drive: torch.Tensor) -> None:
        outputs[i] = model.output(r, drive)

    noise = model.make_noise(n_trials, n_samples, noise_seed, fd.h.device, fd.h.dtype)
    rates = model.simulate(fd.start, fd.exog, n_samples, noise=noise, on_sample=record, resets=fd.resets)
    return rates, pvar(fd.rates, rates), chi2(outputs, fd.targets)


def chi2(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """CURBD's chi2: sum over samples of the mean squared error.

    Args:
        outputs: (time, trial, N) model output (rates or drive) at each sample; targets: (trial, N, time).
    """
    return float((outputs - targets.permute(2, 0, 1)).pow(2).mean(dim=(1, 2)).sum())


def save_model(model: DataConstrainedRNN, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write the model (its spec, state and ``extra`` metadata) atomically: temp file, then rename."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"spec": model.spec, "state": state, "extra": extra or {}}, tmp)
    return path


def load_model(path: str | os.PathLike) -> tuple[DataConstrainedRNN, dict[str, Any]]:
    """Read a model written by ``save_model``; returns it (on CPU) and its ``extra`` metadata."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    spec = blob["spec"]
    model = DataConstrainedRNN(spec["regions"], spec["region_names"], spec["dt"], spec["n_samples"],
                               spec["input_channels"], ModelConfig(**spec["model"]),
                               ConstraintConfig(**spec["constraints"]))
    model.load_state_dict(blob["state"])
    return model, blob["extra"]


def exogenous_names(model: DataConstrainedRNN) -> list[str]:
    """Names of the exogenous columns of ``weight``: known channels, then ``inferred_*``."""
    return list(model.spec["input_channels"]) + [f"inferred_{i}" for i in range(model.n_inferred)]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as a CPU float32 numpy array."""
    return t.detach().to("cpu", torch.float32).numpy()
