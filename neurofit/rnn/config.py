"""Configuration of a data-constrained RNN fit: YAML sections ``data``, ``model``, ``constraints`` and one
per method (``rls``, ``bptt``, ``ridge``). Unknown keys are errors, so a typo never silently falls back to a
default."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from neurofit.errors import ConfigError

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

    normalize: str = "max"
    space: str = "rates"
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

    tau: float = 0.1
    dt_factor: int = 5
    g: float = 1.5
    activation: str = "tanh"
    target: str = "currents"
    noise_amp: float = 0.01
    noise_tau: float = 0.1
    use_inputs: bool = True
    inferred_inputs: int = 0
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
    density: float = 1.0
    dale: bool = False
    e_fraction: float = 0.8
    region_signs: dict[str, int] = field(default_factory=dict)
    block_lr: dict[str, float] = field(default_factory=dict)
    plastic_fraction: float = 1.0


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

    runs: int = 100
    free_runs: int = 1
    P0: float = 1.0
    stop_at_pvar: float | None = None
    init: str = "random"
    dtype: str = "float32"
    segments: int = 1
    update_every: int = 1

    def __post_init__(self) -> None:
        if self.segments < 1 or self.update_every < 1:
            raise ConfigError(f"rls.segments and rls.update_every must be >= 1, got {self.segments}, "
                              f"{self.update_every}")
        if self.free_runs < 1 or self.runs < 0:
            raise ConfigError(f"rls.free_runs must be >= 1 and rls.runs >= 0 (got {self.free_runs}, {self.runs})")


@dataclass
class BPTTConfig:
    """Gradient descent through time (AdamW) on windows of the trials.

    Attributes:
        epochs: passes over all windows; window: samples per window (each starts from the data state);
        batch_size: windows per step; lr, weight_decay: AdamW settings; init: ``random`` or ``ridge``;
        eval_every: epochs between full free-run pVar evaluations for the fit curve.
    """

    epochs: int = 200
    window: int = 50
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    init: str = "random"
    eval_every: int = 10

    def __post_init__(self) -> None:
        if min(self.epochs, self.window, self.batch_size, self.eval_every) < 1:
            raise ConfigError("bptt.epochs, window, batch_size and eval_every must all be >= 1")


@dataclass
class RidgeConfig:
    """Direct (teacher-forced) least squares on the data rates.

    Attributes:
        alpha: ridge penalty on J; alpha_inputs: on B and C (smaller lets inputs explain more);
        iterations: projected-gradient iterations when constraints (masks, signs) apply.
    """

    alpha: float = 1.0
    alpha_inputs: float = 0.1
    iterations: int = 500


@dataclass
class FitConfig:
    """A complete fit configuration."""

    method: str = "rls"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    constraints: ConstraintConfig = field(default_factory=ConstraintConfig)
    rls: RLSConfig = field(default_factory=RLSConfig)
    bptt: BPTTConfig = field(default_factory=BPTTConfig)
    ridge: RidgeConfig = field(default_factory=RidgeConfig)

    def __post_init__(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("data.normalize", self.data.normalize, ("none", "max", "region", "zscore"))
        _choice("data.space", self.data.space, ("rates", "currents"))
        _choice("model.target", self.model.target, ("currents", "drive"))
        _choice("rls.init", self.rls.init, ("random", "ridge"))
        _choice("bptt.init", self.bptt.init, ("random", "ridge"))
        _choice("rls.dtype", self.rls.dtype, ("float32", "float64"))
        if self.model.tau <= 0 or self.model.dt_factor < 1:
            raise ConfigError(f"model.tau must be > 0 and model.dt_factor >= 1 (got {self.model.tau}, "
                              f"{self.model.dt_factor})")
        if not 0.0 < self.constraints.plastic_fraction <= 1.0:
            raise ConfigError(f"constraints.plastic_fraction must be in (0, 1], got "
                              f"{self.constraints.plastic_fraction}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML and checkpoints)."""
        return dataclasses.asdict(self)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {list(allowed)}, got {value!r}")


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> FitConfig:
    """Build a ``FitConfig`` from nested dicts; ``ConfigError`` names ``source`` and any unknown key."""
    sections = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; known: {sorted(sections)}")
    kwargs: dict[str, Any] = {}
    classes = {"data": DataConfig, "model": ModelConfig, "constraints": ConstraintConfig, "rls": RLSConfig,
               "bptt": BPTTConfig, "ridge": RidgeConfig}
    for key, value in raw.items():
        if key not in classes:
            kwargs[key] = value
            continue
        cls = classes[key]
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(value or {}) - names)
        if bad:
            raise ConfigError(f"{source}: unknown key(s) {bad} in section {key!r}; known: {sorted(names)}")
        kwargs[key] = cls(**(value or {}))
    return FitConfig(**kwargs)


def load_config(path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> FitConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply ``{"section.key": value}``
    overrides, e.g. ``{"method": "bptt"}`` from the command line."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            with open(path) as f:
                raw = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({err})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config_from_dict(raw, source)
