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
from neurofit.config.typed import Context, check, from_data
from neurofit.errors import ConfigError

METHODS = ("rls", "bptt", "ridge")


@dataclass
class DataConfig:
    """How the activity is prepared.

    Attributes:
        normalize: ``none``, ``max`` (global max |x| scaled to 0.999), ``max_clip`` (divided by the largest
            value, then clipped to +-0.999: CURBD's ``trainMultiRegionRNN``), ``region`` (``max`` per region)
            or ``zscore`` (per neuron; needs ``space: currents``).
        space: ``rates`` (data are phi(h): targets are phi^-1(data)) or ``currents`` (data are h).
        recording: which recording of a store (default: the first).
    """

    normalize: Literal["none", "max", "max_clip", "region", "zscore"] = "max"
    space: Literal["rates", "currents"] = "rates"
    recording: str | None = None


@dataclass
class ModelConfig:
    """The rate model tau dh/dt = -h + J phi(h) + B u(t) + C s(t) + noise.

    Attributes:
        tau: unit time constant, seconds.
        dt_factor: Euler model steps per data sample.
        g: gain of the random initial J (g / sqrt(N) standard deviation).
        inter_region_start: the initial inter-region blocks of J: ``random`` (as the blocks within regions;
            CURBD) or ``zero`` (start, and with ``rls.P0_inter`` be held near, no inter-region current: the
            data have to ask for one).
        activation: phi, ``tanh`` (the only invertible choice for ``space: rates`` besides ``sigmoid``).
        target: what the error of recursive least squares compares with the data at every sample: ``rates``
            (CURBD's trainMultiRegionRNN: the model's rates phi(h) against the data), ``currents`` (the drive
            J phi(h) + B u against phi^-1(data)) or ``drive`` (against h + tau dh/dt, the drive that
            reproduces the data under the model's own dynamics).
        initial_state: what h is set to at trial starts and reset points: ``currents`` (phi^-1(data), so the
            first rates equal the data) or ``data`` (the data themselves, as CURBD sets H = data).
        noise_amp, noise_tau: amplitude and time constant (s) of the filtered white-noise input (``batched``
            loop: an Ornstein-Uhlenbeck process of standard deviation ``noise_amp``; ``curbd`` loop: CURBD's
            ``ampInWN`` and ``tauWN``).
        use_inputs: use the known inputs of the data (B u) when it has any.
        inferred_inputs: number of smooth inferred input channels s(t) (Gaussian bumps tiling each trial,
            time-locked to trial start, with learned weights C); 0 for none.
        seed: random seed for J, noise and E/I assignment.
    """

    tau: float = field(default=0.1, metadata=check(gt=0))
    dt_factor: int = field(default=5, metadata=check(ge=1))
    g: float = field(default=1.5, metadata=check(ge=0))
    inter_region_start: Literal["random", "zero"] = "zero"
    activation: str = "tanh"
    target: Literal["rates", "currents", "drive"] = "rates"
    initial_state: Literal["currents", "data"] = "currents"
    noise_amp: float = field(default=0.01, metadata=check(ge=0))
    noise_tau: float = field(default=0.1, metadata=check(gt=0))
    use_inputs: bool = True
    inferred_inputs: int = field(default=24, metadata=check(ge=0))
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
        loop: ``curbd`` runs CURBD's ``trainMultiRegionRNN`` step for step (``neurofit/rnn/curbd.py``): trials
            concatenated into one series with the state reset at each trial start and reset point, a rank-1
            update at every data sample, its white noise, its sample alignment and its pVar and chi2; with
            ``init: random`` the initial J and the noise come from numpy's legacy ``RandomState(model.seed)`` in
            the reference's order, so a run reproduces the reference seeded the same way. ``batched`` runs
            trials (and segments) side by side with one rank-K update per sample (``neurofit/rnn/rls.py``).
        runs: training runs (passes through the data); free_runs: runs without learning at the end.
        P0: initial P = P0 * I (the inverse regulariser; CURBD's "learning rate").
        stop_at_pvar: stop training early once a run reaches this pVar (None: run all).
        init: ``random`` (CURBD) or ``ridge`` (start from the direct least-squares solution).
        dtype: ``float32`` or ``float64`` for J and P.
        segments: ``batched``: split each trial into this many (slightly overlapping) segments, each started
            from the data's state, trained as one batch with a rank-K update per sample; 1 keeps trials whole.
        update_every: ``batched``: samples per update. 1 is CURBD's per-sample update; b > 1 applies one rank-b
            update (Woodbury) per block, which yields the same least-squares weights for the block's samples
            while the model runs the block on the weights of its start; cuts the cost of the updates b-fold.
        defer_updates: ``curbd``: hold up to this many per-sample updates as a low-rank correction that every
            following step uses, and apply them to P and J as one matrix product each: the same algorithm up
            to rounding, faster for large N; not with masks, Dale's law, ``block_lr`` or ``P0_inter``. 1 applies
            each at once.
        P0_inter: initial P of the weights a unit receives from other regions (their prior variance around
            their start; P0 is that of the others): smaller than P0 makes inter-region weights earn their
            place, so with ``model.inter_region_start: zero`` the fit uses inter-region currents only where
            the data need them (recursive ridge with a stronger penalty on the inter-region blocks). None:
            P0. Keeps one P per target region (memory and update cost times the number of regions).
        P0_units: the network size P0 and P0_inter are meant for: a network of N units starts from
            P0 * P0_units / N (and P0_inter likewise). The first update's gain x^T P x (about P0 N <r^2>) then
            stays the same at every size; with one P0 for every size a large network's updates overshoot and J
            grows without bound (CURBD preset, 5,000 units, P0 1: training-run pVar 0.65, 0.48, 0.38, ...;
            P0 0.06 = 1 x 300 / 5,000: free-run pVar 0.995 after 10 runs). None: P0 as given (CURBD).
    """

    loop: Literal["batched", "curbd"] = "batched"
    runs: int = field(default=20, metadata=check(ge=0))
    free_runs: int = field(default=1, metadata=check(ge=1))
    P0: float = field(default=1.0, metadata=check(gt=0))
    stop_at_pvar: float | None = field(default=None, metadata=check(le=1))
    init: Literal["random", "ridge"] = "random"
    dtype: Literal["float32", "float64"] = "float32"
    segments: int = field(default=1, metadata=check(ge=1))
    update_every: int = field(default=1, metadata=check(ge=1))
    defer_updates: int = field(default=1, metadata=check(ge=1))
    P0_inter: float | None = field(default=1e-3, metadata=check(gt=0))
    P0_units: int | None = field(default=None, metadata=check(ge=1))

    def p0_for(self, n_units: int) -> tuple[float, float | None]:
        """(P0, P0_inter) for a network of ``n_units`` units (scaled by ``P0_units / n_units`` when set)."""
        scale = 1.0 if self.P0_units is None else self.P0_units / n_units
        return self.P0 * scale, None if self.P0_inter is None else self.P0_inter * scale


@dataclass
class BPTTConfig:
    """Gradient descent through time (AdamW) on windows of the trials.

    Attributes:
        epochs: passes over all windows; window: samples per window (each starts from the data state);
        batch_size: windows per step; lr, weight_decay: AdamW settings; init: ``random`` or ``ridge``;
        eval_every: epochs between full free-run pVar evaluations for the fit curve.
        group_penalty: weight lambda of the group-sparse penalty lambda * sum ||J_ab||_F over the inter-region
            blocks (a != b), applied after every step as its proximal map (each block shrunk by lr * lambda
            in Frobenius norm, to exactly zero when smaller): blocks the data do not need vanish; 0: none.
    """

    epochs: int = field(default=200, metadata=check(ge=1))
    window: int = field(default=50, metadata=check(ge=1))
    batch_size: int = field(default=16, metadata=check(ge=1))
    lr: float = field(default=1e-3, metadata=check(gt=0))
    weight_decay: float = field(default=1e-4, metadata=check(ge=0))
    init: Literal["random", "ridge"] = "random"
    eval_every: int = field(default=10, metadata=check(ge=1))
    group_penalty: float = field(default=0.0, metadata=check(ge=0))


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
    #: Where each value was set, for checks against the data after loading; not part of the config.
    provenance: Context = field(default_factory=lambda: Context("<config>", None), init=False, repr=False,
                                compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML and checkpoints)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in values.items()}

    def fail(self, path: tuple[str, ...], problem: str) -> ConfigError:
        """A ``ConfigError`` naming the file or override that set ``path``."""
        return self.provenance.fail(path, problem)


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> FitConfig:
    """Build a ``FitConfig`` from nested data; ``ConfigError`` names ``source``, the key and the problem."""
    cfg = from_data(FitConfig, raw, source)
    cfg.provenance = Context(source, None)
    return cfg


def load_config(path: str | os.PathLike | None, overrides: dict[str, Any] | list[str] | None = None) -> FitConfig:
    """Read a YAML config (or the defaults when ``path`` is None) with its ``extends`` chain, and apply
    overrides: ``{"section.key": value}`` from the command line's own options, or ``KEY=VALUE`` texts."""
    data, sources, origin = load_data(path, overrides)
    cfg = from_data(FitConfig, data, origin, sources)
    cfg.provenance = Context(origin, sources)
    return cfg
