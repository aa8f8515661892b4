"""Configuration of a data-constrained RNN fit: YAML sections ``data``, ``model``, ``constraints`` and one
per method (``rls``, ``bptt``, ``ridge``), loaded with the same typed machinery as the encoder configs
(``neurofit.config``): ``extends:``, overrides, types and ranges checked at load time, and an unknown key
rejected with the closest valid one suggested."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from neurofit.config.files import load_data
from neurofit.config.typed import check, from_data

METHODS = ("rls", "bptt", "ridge")


@dataclass
class DataConfig:
    """How the activity is prepared.

    Attributes:
        normalize: ``none``, ``max`` (global max |x| scaled to 0.999, as CURBD), ``region`` (the same per
            region) or ``zscore`` (per neuron; needs ``space: currents``).
        space: ``rates`` (data are phi(h): targets are phi^-1(data)) or ``currents`` (data are h).
        recording: which recording of a store (default: the first).
    """

    normalize: Literal["none", "max", "region", "zscore"] = "max"
    space: Literal["rates", "currents"] = "rates"
    recording: str | None = None


@dataclass
class ModelConfig:
    """The rate model tau dh/dt = -h + J phi(h) + B u(t) + C s(t) + noise.

    Attributes:
        tau: unit time constant, seconds.
        dt_factor: Euler model steps per data sample.
        g: gain of the random initial J (g / sqrt(N) standard deviation).
        activation: phi, ``tanh`` (the only invertible choice for ``space: rates`` besides ``sigmoid``).
        target: ``currents`` (CURBD: J phi(h) + B u is trained towards h) or ``drive`` (towards
            h + tau dh/dt, the drive that reproduces the data under the model's own dynamics).
        noise_amp, noise_tau: standard deviation and time constant (s) of the filtered white-noise input.
        use_inputs: use the known inputs of the data (B u) when it has any.
        inferred_inputs: number of smooth inferred input channels s(t) (Gaussian bumps tiling each trial,
            time-locked to trial start, with learned weights C); 0 for none.
        seed: random seed for J, noise and E/I assignment.
    """

    tau: float = field(default=0.1, metadata=check(gt=0))
    dt_factor: int = field(default=5, metadata=check(ge=1))
    g: float = field(default=1.5, metadata=check(ge=0))
    activation: str = "tanh"
    target: Literal["currents", "drive"] = "currents"
    noise_amp: float = field(default=0.01, metadata=check(ge=0))
    noise_tau: float = field(default=0.1, metadata=check(gt=0))
    use_inputs: bool = True
    inferred_inputs: int = field(default=0, metadata=check(ge=0))
    seed: int = 0


@dataclass
class ConstraintConfig:
    """Connectivity constraints.

    Attributes:
        allowed: ``{target_region: [source_regions]}`` (within-region connections always allowed); None
            allows every projection.
        density: fraction of allowed connections that exist (random sparsity).
        dale: enforce Dale's law: per-unit signs, every outgoing weight keeps its unit's sign.
        e_fraction: fraction of excitatory units in regions not named in ``region_signs``.
        region_signs: ``{region: +1 | -1}`` for regions whose units all share one sign.
        block_lr: ``{"TARGET<-SOURCE": scale}`` learning-rate scale per block (default 1; 0 freezes).
        plastic_fraction: fraction of units whose outgoing weights learn (PINning, Rajan et al. 2016).
    """

    allowed: dict[str, list[str]] | None = None
    density: float = field(default=1.0, metadata=check(gt=0, le=1))
    dale: bool = False
    e_fraction: float = field(default=0.8, metadata=check(ge=0, le=1))
    region_signs: dict[str, int] = field(default_factory=dict)
    block_lr: dict[str, float] = field(default_factory=dict)
    plastic_fraction: float = field(default=1.0, metadata=check(gt=0, le=1))


@dataclass
class RLSConfig:
    """Recursive least squares (FORCE) as in CURBD.

    Attributes:
        runs: training runs (passes through the data); free_runs: runs without learning at the end.
        P0: initial P = P0 * I (the inverse regulariser; CURBD's "learning rate").
        stop_at_pvar: stop training early once a run reaches this pVar (None: run all).
        init: ``random`` (CURBD) or ``ridge`` (start from the direct least-squares solution).
        dtype: ``float32`` or ``float64`` for J and P.
        segments: split each trial into this many (slightly overlapping) segments, each started from the
            data's state, trained as one batch with a rank-K update per sample (CURBD's reset points, run in
            parallel); 1 keeps each trial whole, as CURBD does.
        update_every: samples per update. 1 is CURBD's per-sample update; b > 1 applies one rank-b update
            (Woodbury) per block, which yields the same least-squares weights for the block's samples while the
            model runs the block on the weights of its start; cuts the cost of the P and J updates b-fold.
    """

    runs: int = field(default=100, metadata=check(ge=0))
    free_runs: int = field(default=1, metadata=check(ge=1))
    P0: float = field(default=1.0, metadata=check(gt=0))
    stop_at_pvar: float | None = field(default=None, metadata=check(le=1))
    init: Literal["random", "ridge"] = "random"
    dtype: Literal["float32", "float64"] = "float32"
    segments: int = field(default=1, metadata=check(ge=1))
    update_every: int = field(default=1, metadata=check(ge=1))


@dataclass
class BPTTConfig:
    """Gradient descent through time (AdamW) on windows of the trials.

    Attributes:
        epochs: passes over all windows; window: samples per window (each starts from the data state);
        batch_size: windows per step; lr, weight_decay: AdamW settings; init: ``random`` or ``ridge``;
        eval_every: epochs between full free-run pVar evaluations for the fit curve.
    """

    epochs: int = field(default=200, metadata=check(ge=1))
    window: int = field(default=50, metadata=check(ge=1))
    batch_size: int = field(default=16, metadata=check(ge=1))
    lr: float = field(default=1e-3, metadata=check(gt=0))
    weight_decay: float = field(default=1e-4, metadata=check(ge=0))
    init: Literal["random", "ridge"] = "random"
    eval_every: int = field(default=10, metadata=check(ge=1))


@dataclass
class RidgeConfig:
    """Direct (teacher-forced) least squares on the data rates.

    Attributes:
        alpha: ridge penalty on J; alpha_inputs: on B and C (smaller lets inputs explain more);
        iterations: projected-gradient iterations when constraints (masks, signs) apply.
    """

    alpha: float = field(default=1.0, metadata=check(ge=0))
    alpha_inputs: float = field(default=0.1, metadata=check(ge=0))
    iterations: int = field(default=500, metadata=check(ge=1))


@dataclass
class FitConfig:
    """A complete fit configuration."""

    method: Literal["rls", "bptt", "ridge"] = "rls"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    constraints: ConstraintConfig = field(default_factory=ConstraintConfig)
    rls: RLSConfig = field(default_factory=RLSConfig)
    bptt: BPTTConfig = field(default_factory=BPTTConfig)
    ridge: RidgeConfig = field(default_factory=RidgeConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML and checkpoints)."""
        return dataclasses.asdict(self)


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> FitConfig:
    """Build a ``FitConfig`` from nested data; ``ConfigError`` names ``source``, the key and the problem."""
    return from_data(FitConfig, raw, source)


def load_config(path: str | os.PathLike | None, overrides: dict[str, Any] | list[str] | None = None) -> FitConfig:
    """Read a YAML config (or the defaults when ``path`` is None) with its ``extends`` chain, and apply
    overrides: ``{"section.key": value}`` from the command line's own options, or ``KEY=VALUE`` texts."""
    data, sources, origin = load_data(path, overrides)
    return from_data(FitConfig, data, origin, sources)
