"""The encoder experiment schema: every section, key, type, range and default of a ``neurofit fit`` config.

This is the one place defaults live. Shipped YAML files state only what differs. Model components (core,
readout, modulator, shifter, interaction layers) are a registry name plus options; their options are
checked against, and completed from, the keyword parameters of the class that builds them, so a
component's defaults live in its constructor and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from neurofit.config.typed import Context, check, check_options, suggest, to_data
from neurofit.errors import ConfigError

#: Constructor parameters that the model fills in from the data, never from a config.
STRUCTURAL = frozenset({"in_channels", "n_neurons", "coords_um", "image_shape", "height", "width", "n_channels",
                        "embedding_dim", "feature_dim", "positions_um"})
PRECISIONS = Literal["32-true", "32", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"]
#: torch.compile modes (``training.compile_mode``).
COMPILE_MODES = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
#: What a run started from another run's core freezes (``training.freeze``, ``--freeze``).
FREEZE = Literal["none", "core"]
_MAX_TIME = re.compile(r"^\d{1,2}:\d{2}:\d{2}:\d{2}$")


@dataclass
class Component:
    """A named model component and its resolved options (every constructor keyword, defaults filled in).
    In YAML: ``{name: conv, channels: 32}`` or just the name."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "component"

    @classmethod
    def registry(cls) -> dict[str, Callable]:
        """Name -> the class (or factory) that builds it."""
        raise NotImplementedError

    @classmethod
    def parse(cls, value: Any, ctx: Context, path: tuple[str, ...]) -> Component:
        """Check a YAML value (a name or ``{name: ..., **options}``) against the registry."""
        if isinstance(value, cls):
            value = value.to_data()
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            raise ctx.fail(path, f"must be a {cls.kind} name or a mapping with 'name', got {value!r}")
        options = dict(value)
        name = options.pop("name", None)
        registry = cls.registry()
        if name not in registry:
            hint = suggest(str(name), list(registry)) if isinstance(name, str) else \
                f" (choose from {sorted(registry)})"
            raise ctx.fail(path + ("name",), f"unknown {cls.kind} {name!r}{hint}")
        return cls(name, check_options(registry[name], options, ctx, path, STRUCTURAL))

    @classmethod
    def default(cls, name: str) -> Component:
        """The component with every option at its constructor default."""
        return cls.parse({"name": name}, Context("<defaults>", {}), ())

    def to_data(self) -> dict[str, Any]:
        return {"name": self.name, **to_data(self.options)}


class CoreSpec(Component):
    """``model.core``: a core from ``neurofit.models.cores.CORES``."""

    kind = "core"

    @classmethod
    def registry(cls) -> dict[str, Callable]:
        from neurofit.models.cores import CORES

        return CORES


class ReadoutSpec(Component):
    """``model.readout``: a readout from ``neurofit.models.readouts.READOUT_CLASSES``."""

    kind = "readout"

    @classmethod
    def registry(cls) -> dict[str, Callable]:
        from neurofit.models.readouts import READOUT_CLASSES

        return READOUT_CLASSES


class InteractionSpec(Component):
    """One entry of ``model.interactions``: a layer from ``neurofit.models.interactions.INTERACTIONS``."""

    kind = "interaction"

    @classmethod
    def registry(cls) -> dict[str, Callable]:
        from neurofit.models.interactions import INTERACTIONS

        return INTERACTIONS


@dataclass
class Options:
    """The options of a component with one implementation (``model.modulator``, ``model.shifter``); null in
    YAML disables it."""

    options: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "options"

    @classmethod
    def factory(cls) -> Callable:
        """The class these options build."""
        raise NotImplementedError

    @classmethod
    def parse(cls, value: Any, ctx: Context, path: tuple[str, ...]) -> Options:
        if isinstance(value, cls):
            value = value.to_data()
        if not isinstance(value, dict):
            raise ctx.fail(path, f"must be a mapping of {cls.kind} options or null, got {value!r}")
        return cls(check_options(cls.factory(), value, ctx, path, STRUCTURAL))

    @classmethod
    def default(cls) -> Options:
        return cls.parse({}, Context("<defaults>", {}), ())

    def to_data(self) -> dict[str, Any]:
        return to_data(self.options)


class ModulatorSpec(Options):
    """``model.modulator``: behaviour -> per-neuron gain (``BehaviorModulator``)."""

    kind = "modulator"

    @classmethod
    def factory(cls) -> Callable:
        from neurofit.models.modulators import BehaviorModulator

        return BehaviorModulator


class ShifterSpec(Options):
    """``model.shifter``: eye position -> readout shift (``Shifter``)."""

    kind = "shifter"

    @classmethod
    def factory(cls) -> Callable:
        from neurofit.models.modulators import Shifter

        return Shifter


class RidgeSpec(Options):
    """The ``model`` section of a ``type: ridge`` config (``RidgePredictor``)."""

    kind = "ridge"

    @classmethod
    def factory(cls) -> Callable:
        from neurofit.models.ridge import RidgePredictor

        return RidgePredictor


@dataclass
class EnsembleSpec:
    """The ``model`` section of a ``type: ensemble`` run (``neurofit ensemble``): the member run directories
    (absolute paths) whose predictions it averages."""

    members: list[str] = field(default_factory=list)


@dataclass
class DataConfig:
    """``data``: which store and how batches are drawn from it.

    Attributes:
        path: the store (set by ``neurofit fit --data``). batch_size: trials per batch and process.
        sampling: ``proportional`` (every training trial once per epoch) or ``balanced`` (every recording as
            many batches as the largest). in_memory: true, false or ``auto`` (load when the arrays fit
            ``memory_budget_gb``, GiB). num_workers: DataLoader processes. shuffle_window: chunks per
            shuffle window when streaming. recordings: a subset of the store's recordings (default: all).
    """

    path: str | None = None
    batch_size: int = field(default=32, metadata=check(ge=1))
    sampling: Literal["proportional", "balanced"] = "proportional"
    in_memory: bool | Literal["auto"] = "auto"
    memory_budget_gb: float = field(default=4.0, metadata=check(gt=0))
    num_workers: int = field(default=0, metadata=check(ge=0))
    shuffle_window: int = field(default=8, metadata=check(ge=1))
    recordings: list[str] | None = None


def _default_core() -> CoreSpec:
    return CoreSpec.default("conv")


def _default_readout() -> ReadoutSpec:
    return ReadoutSpec.default("gaussian")


@dataclass
class ModelConfig:
    """``model`` of an encoder: core -> per-recording readout, behaviour modulator (gain), shifter (eye
    position), interaction layers, output nonlinearity. modulator/shifter null disables them; output_scale
    adds a learned gain per neuron after the nonlinearity (starting at 1)."""

    core: CoreSpec = field(default_factory=_default_core)
    readout: ReadoutSpec = field(default_factory=_default_readout)
    modulator: ModulatorSpec | None = field(default_factory=ModulatorSpec.default)
    shifter: ShifterSpec | None = field(default_factory=ShifterSpec.default)
    interactions: list[InteractionSpec] = field(default_factory=list)
    output: Literal["elu1", "softplus"] = "elu1"
    output_scale: bool = False


@dataclass
class CutMixConfig:
    """``training.cutmix``: with ``probability`` per training batch, paste a box of another trial's stimulus
    (the same box on every frame of a video) into each trial and mix the targets by area,
    r = lam r_a + (1 - lam) r_b with lam ~ Beta(alpha, alpha) the area kept (Yun et al. 2019; the SENSORIUM 2023
    winner reports a gain from it). Unlike a shift or flip of the image, it keeps every receptive field where
    it is. Behaviour and eye position stay the trial's own."""

    probability: float = field(default=0.0, metadata=check(ge=0, le=1))
    alpha: float = field(default=1.0, metadata=check(gt=0))


@dataclass
class RegularizationConfig:
    """``training.regularization``: weights of the components' penalties (core: first-layer smoothness;
    readout: feature sparsity; interactions: their own, e.g. pool sparsity)."""

    core: float = field(default=0.1, metadata=check(ge=0))
    readout: float = field(default=0.002, metadata=check(ge=0))
    interactions: float = field(default=0.0, metadata=check(ge=0))


@dataclass
class TrainingConfig:
    """``training``: optimisation, schedule, stopping and precision.

    Attributes:
        max_epochs: epoch budget. max_time: wall-clock cap "DD:HH:MM:SS" (the best checkpoint is kept).
        lr, weight_decay: AdamW. patience, min_delta: early stopping on validation correlation.
        scheduler: ``plateau`` (decay by lr_decay_factor after lr_patience stalled validations), ``step``
            (after each epoch in lr_milestones) or ``cosine`` (warm-up over warmup_epochs, then cosine decay).
        regularization: penalty weights. cutmix: stimulus mixing augmentation (CutMixConfig).
        precision: Lightning precision (``16-mixed`` needs a GPU). sync_batchnorm: under DDP, normalise with
            the statistics of the global batch (every process's trials), so W processes with batch B each train
            as one process with batch W x B; no effect in one process. compile: ``torch.compile`` the core for
            training (``compile_mode``: its mode; on CPU it needs a C++ compiler). channels_last: train the
            core in channels-last memory format (its weights and inputs). ema_decay: validate, checkpoint and
            analyse a moving average of the weights (e.g. 0.999), null for the trained weights.
        skip_frames: burn-in frames per video trial without loss. tbptt_frames: truncated BPTT chunk (video
            cores; 0 trains whole trials). gradient_clip_val: norm clip (null: none). deterministic: torch
            deterministic algorithms. log_every_n_steps, val_check_interval: Lightning's. seed: set by --seed.
        init_from: a fitted encoder run whose core (from ``checkpoints/best.ckpt``; its moving average with
            ema_decay) this run starts from (``--init-from``; saved as an absolute path), null for a fresh core.
            freeze: ``core`` trains only the per-recording parts (the core in eval mode, out of the optimiser),
            ``none`` trains everything. core_lr_scale: the core's learning rate over ``lr`` when it trains.
    """

    max_epochs: int = field(default=12, metadata=check(ge=1))
    max_time: str | None = None
    lr: float = field(default=0.005, metadata=check(gt=0))
    weight_decay: float = field(default=0.0, metadata=check(ge=0))
    patience: int = field(default=5, metadata=check(ge=1))
    min_delta: float = field(default=1e-4, metadata=check(ge=0))
    scheduler: Literal["plateau", "step", "cosine"] = "plateau"
    lr_patience: int = field(default=2, metadata=check(ge=0))
    lr_decay_factor: float = field(default=0.3, metadata=check(gt=0, le=1))
    lr_milestones: list[int] = field(default_factory=list, metadata=check(ge=1))
    warmup_epochs: float = field(default=0.0, metadata=check(ge=0))
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    cutmix: CutMixConfig = field(default_factory=CutMixConfig)
    precision: PRECISIONS = "32-true"
    sync_batchnorm: bool = True
    compile: bool = False
    compile_mode: COMPILE_MODES = "default"
    channels_last: bool = False
    ema_decay: float | None = field(default=None, metadata=check(gt=0, lt=1))
    skip_frames: int = field(default=0, metadata=check(ge=0))
    tbptt_frames: int = field(default=0, metadata=check(ge=0))
    gradient_clip_val: float | None = field(default=None, metadata=check(gt=0))
    deterministic: bool = False
    log_every_n_steps: int = field(default=20, metadata=check(ge=1))
    val_check_interval: float = field(default=1.0, metadata=check(gt=0))
    seed: int = 0
    init_from: str | None = None
    freeze: FREEZE = "none"
    core_lr_scale: float = field(default=1.0, metadata=check(gt=0))

    def __post_init__(self) -> None:
        if self.max_time is not None and not _MAX_TIME.match(self.max_time):
            raise ConfigError(f"training.max_time: {self.max_time!r} must be DD:HH:MM:SS, e.g. 00:00:06:00")
        if self.lr_milestones != sorted(set(self.lr_milestones)):
            raise ConfigError(f"training.lr_milestones: {self.lr_milestones} must increase")
        if self.scheduler == "step" and not self.lr_milestones:
            raise ConfigError("training.lr_milestones: the step scheduler needs a list of epochs to decay after")
        if self.tbptt_frames and self.gradient_clip_val:
            # Lightning applies Trainer-level clipping only under automatic optimisation.
            raise ConfigError("training.gradient_clip_val cannot be combined with training.tbptt_frames")
        if self.freeze == "core" and self.init_from is None:
            raise ConfigError("--freeze core (training.freeze): needs --init-from RUN (training.init_from), the "
                              "run whose core to keep")


@dataclass
class EvaluationConfig:
    """``evaluation``: skip_frames, burn-in frames per video trial left out of the metrics (null: the
    training value)."""

    skip_frames: int | None = field(default=None, metadata=check(ge=0))


@dataclass
class ExperimentConfig:
    """A complete ``neurofit fit`` config; ``model`` is a ModelConfig for ``type: encoder``, a RidgeSpec for
    ``type: ridge`` and an EnsembleSpec for the runs ``neurofit ensemble`` writes. ``extends`` composes files;
    it is resolved away before this is built."""

    name: str
    type: Literal["encoder", "ridge", "ensemble"] = "encoder"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig | RidgeSpec | EnsembleSpec = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self) -> None:
        if self.training.init_from is not None and self.type != "encoder":
            raise ConfigError(f"--init-from {self.training.init_from}: a {self.type} config has no core to "
                              "start from")

    @property
    def eval_skip_frames(self) -> int:
        """Burn-in frames left out of the metrics."""
        skip = self.evaluation.skip_frames
        return self.training.skip_frames if skip is None else skip

    def identity(self, *ignore: str) -> dict[str, Any]:
        """``to_data()`` without the dotted keys in ``ignore`` (``"training.seed"``): what two configs must
        share to count as the same experiment when those keys may differ."""
        data = self.to_data()
        for dotted in ignore:
            *sections, key = dotted.split(".")
            node = data
            for section in sections:
                node = node[section]
            node.pop(key)
        return data

    def to_data(self) -> dict[str, Any]:
        """The complete config as YAML-ready data; ``load_config`` of it gives this config back."""
        return {"name": self.name, "type": self.type, "description": self.description,
                **{k: to_data(getattr(self, k)) for k in ("data", "model", "training", "evaluation")}}
