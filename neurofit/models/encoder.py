"""The Encoder: one shared core, then per recording a readout, behaviour modulator, shifter and interaction
layers, then the output nonlinearity. Built from the ``model`` section of a config."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from neurofit.data.spec import RecordingSpec
from neurofit.errors import ConfigError
from neurofit.models.interactions.context import residuals
from neurofit.models.modulators import BehaviorModulator, Shifter
from neurofit.models.readouts.base import ReadoutOutput

if TYPE_CHECKING:
    from neurofit.config.schema import CoreSpec, ModelConfig, RegularizationConfig

OUTPUTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "elu1": lambda x: F.elu(x) + 1.0,
    "softplus": F.softplus,
}


def _construct(section: str, factory: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    """``factory(**kwargs)``, with a bad option (unknown name, invalid value) turned into one ConfigError that
    names the config section instead of a traceback."""
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.{section}: {err}") from None


def _neutral_fill(x: torch.Tensor) -> torch.Tensor:
    """``x`` with NaN and inf replaced by 0 (``torch.where`` keeps the gradient of the finite entries)."""
    return torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype, device=x.device))


def build_core(spec: CoreSpec, in_channels: int) -> nn.Module:
    """A core from its config (``model.core``): a static core (``conv``, ``dwise``, ``identity`` for the LN
    baseline) or a video core (``gru``, ``ctrnn``, ``conv3d``, ``dwise_video``); names in ``CORES``."""
    from neurofit.models.cores import CORES

    return _construct(f"core ({spec.name})", CORES[spec.name], in_channels=in_channels, **spec.options)


class Encoder(nn.Module):
    """Core -> per-recording readout -> modulation -> interactions -> output nonlinearity.

    Inputs are raw (the recording's units); normalisation statistics from the training tier are buffers,
    so a saved model is self-contained. ``forward`` returns rates in *normalised* response units
    (responses / training std, what the loss compares against); ``predict`` returns recording units.

    Shapes: static stimulus (B, H, W), behaviour (B, C_b), pupil (B, 2) -> (B, N);
    video stimulus (B, T, H, W), behaviour (B, T, C_b), pupil (B, T, 2) -> (B, T, N).
    """

    def __init__(self, model_cfg: ModelConfig, specs: list[RecordingSpec]) -> None:
        super().__init__()
        from neurofit.models.readouts import READOUTS

        self.specs = {s.name: s for s in specs}
        if any(s.image_shape is None for s in specs):
            missing = [s.name for s in specs if s.image_shape is None]
            raise ConfigError(f"recordings {missing} have no stimulus; an encoder needs images or videos")
        self.core = build_core(model_cfg.core, 1)
        readout = model_cfg.readout
        self.output_name = model_cfg.output
        # log of a per-neuron gain after the nonlinearity, 0 at the start: the plain model is the start
        self.output_scales = nn.ParameterDict(
            {s.name: nn.Parameter(torch.zeros(s.n_neurons)) for s in specs} if model_cfg.output_scale else {})
        self.readouts = nn.ModuleDict()
        self.modulators = nn.ModuleDict()
        self.shifters = nn.ModuleDict()
        self.interactions = nn.ModuleDict()
        interaction_cfgs = list(model_cfg.interactions)
        for spec in specs:
            coords = torch.tensor(spec.coords_um, dtype=torch.float32).reshape(spec.n_neurons, 3)
            self.readouts[spec.name] = _construct(
                f"readout ({readout.name})", READOUTS[readout.name], n_neurons=spec.n_neurons,
                in_channels=self.core.out_channels, coords_um=coords, image_shape=spec.image_shape,
                **readout.options)
            if model_cfg.modulator is not None and spec.behavior_channels:
                self.modulators[spec.name] = _construct(
                    "modulator", BehaviorModulator, n_channels=len(spec.behavior_channels),
                    n_neurons=spec.n_neurons, **model_cfg.modulator.options)
            if model_cfg.shifter is not None and spec.has_pupil:
                self.shifters[spec.name] = _construct("shifter", Shifter, **model_cfg.shifter.options)
            if interaction_cfgs:
                from neurofit.models.interactions import build_interactions

                self.interactions[spec.name] = build_interactions(
                    interaction_cfgs, n_neurons=spec.n_neurons, embedding_dim=self.core.out_channels,
                    feature_dim=self.core.out_channels, positions_um=coords)
            self._register_stats(spec)

    def _register_stats(self, spec: RecordingSpec) -> None:
        st = spec.stats
        self.register_buffer(f"stim_{spec.name}", torch.tensor([st.get("stimulus_mean", 0.0),
                                                               st.get("stimulus_std", 1.0)]))
        self.register_buffer(f"resp_std_{spec.name}", torch.tensor(st["response_std"], dtype=torch.float32))
        if spec.behavior_channels:
            self.register_buffer(f"beh_{spec.name}", torch.tensor([st["behavior_mean"], st["behavior_std"]]))
        if spec.has_pupil:
            self.register_buffer(f"pupil_{spec.name}", torch.tensor([st["pupil_mean"], st["pupil_std"]]))

    def embedding(self, recording: str, unit_ids: list | None = None) -> torch.Tensor:
        """Learned neuron embeddings (K, C) of ``recording`` for the given ``unit_id`` values, in that order
        (all neurons, in recording order, when None)."""
        weights = self.readouts[recording].embedding
        if unit_ids is None:
            return weights
        index = {uid: i for i, uid in enumerate(self.specs[recording].unit_id)}
        missing = [u for u in unit_ids if u not in index]
        if missing:
            raise ConfigError(f"recording {recording!r} has no unit_id(s) {missing[:5]}")
        return weights[torch.as_tensor([index[u] for u in unit_ids], device=weights.device)]

    def response_std(self, recording: str) -> torch.Tensor:
        """Training-tier std per neuron (N,), the unit of the normalised responses."""
        return getattr(self, f"resp_std_{recording}")

    def _normalise(self, recording: str, stimulus: torch.Tensor, behavior: torch.Tensor | None,
                   pupil_center: torch.Tensor | None):
        """z-score the inputs with the training statistics; non-finite entries (the NaN padding of released
        SENSORIUM 2023 trials, or a user's missing values) become 0, the training mean, so they reach the
        core, modulator and shifter as neutral values (their frames carry no loss through the mask)."""
        stim = getattr(self, f"stim_{recording}")
        stimulus = _neutral_fill((stimulus - stim[0]) / stim[1])
        if behavior is not None and recording in self.modulators:
            beh = getattr(self, f"beh_{recording}")
            behavior = _neutral_fill((behavior - beh[0]) / beh[1])
        if pupil_center is not None and recording in self.shifters:
            pup = getattr(self, f"pupil_{recording}")
            pupil_center = _neutral_fill((pupil_center - pup[0]) / pup[1])
        return stimulus, behavior, pupil_center

    def core_features(self, stimulus: torch.Tensor) -> torch.Tensor:
        """Normalised stimulus (B, H, W) -> (B, C, H, W); video (B, T, H, W) -> (B*T, C, H, W)."""
        if stimulus.dim() == 4:
            b, t = stimulus.shape[:2]
            feats = self.core(stimulus.unsqueeze(1))  # (B, T, C, H, W)
            return feats.reshape(b * t, *feats.shape[2:])
        return self.core(stimulus.unsqueeze(1))

    def readout(self, recording: str, stimulus: torch.Tensor, behavior: torch.Tensor | None = None,
                pupil_center: torch.Tensor | None = None) -> tuple[ReadoutOutput, torch.Tensor | None]:
        """Readout drive and sampled features for raw inputs, before interactions; video outputs keep time:
        drive (B, [T,] N), features (B, [T,] N, C). Also returns the behavioural gain (B, [T,] N) or None."""
        if recording not in self.readouts:
            raise ConfigError(f"model has no readout for recording {recording!r} (has {list(self.readouts)})")
        lead = stimulus.shape[:-2]
        stimulus, behavior, pupil_center = self._normalise(recording, stimulus, behavior, pupil_center)
        feats = self.core_features(stimulus)
        shift = self.shifters[recording](pupil_center.reshape(-1, 2)) if recording in self.shifters else None
        out = self.readouts[recording](feats, shift)
        gain = None
        if recording in self.modulators and behavior is not None:
            gain = self.modulators[recording](behavior.reshape(-1, behavior.shape[-1])).reshape(*lead, -1)
        n = out.drive.shape[-1]
        return ReadoutOutput(out.drive.reshape(*lead, n), out.features.reshape(*lead, n, -1)), gain

    def forward(self, recording: str, stimulus: torch.Tensor, behavior: torch.Tensor | None = None,
                pupil_center: torch.Tensor | None = None, responses: torch.Tensor | None = None) -> torch.Tensor:
        """Rates (normalised units). With recorded ``responses`` (recording units, (B, [T,] N)) and a context
        layer (``has_context``): the prediction with population context, each neuron given the others'
        recorded activity; otherwise the stimulus-only prediction."""
        rate, with_context = self.forward_modes(recording, stimulus, behavior, pupil_center, responses)
        return rate if with_context is None else with_context

    def forward_modes(self, recording: str, stimulus: torch.Tensor, behavior: torch.Tensor | None = None,
                      pupil_center: torch.Tensor | None = None,
                      responses: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both predictions from one pass of the core: the stimulus-only rate, and the rate with population
        context (None without ``responses`` or a context layer), (B, [T,] N) normalised units each."""
        out, gain = self.readout(recording, stimulus, behavior, pupil_center)
        drive = out.drive
        layers = self.interactions[recording] if recording in self.interactions else None  # noqa: SIM401 (ModuleDict has no .get)
        embedding = self.readouts[recording].embedding
        if layers is not None:
            drive = layers.before_output(drive, out.features, embedding)
        rate = self._to_rate(recording, drive, out.features, embedding, gain)
        if responses is None or not self.has_context(recording):
            return rate, None
        correction = layers.context(residuals(responses, rate, self.response_std(recording)), embedding)
        return rate, self._to_rate(recording, drive + correction, out.features, embedding, gain)

    def _to_rate(self, recording: str, drive: torch.Tensor, features: torch.Tensor, embedding: torch.Tensor,
                 gain: torch.Tensor | None) -> torch.Tensor:
        """Drive after the drive-acting layers -> rate: output nonlinearity, scale, behaviour gain, rate layers."""
        rate = OUTPUTS[self.output_name](drive)
        if recording in self.output_scales:
            rate = rate * self.output_scales[recording].exp()
        if gain is not None:
            rate = rate * gain
        if recording in self.interactions:
            rate = self.interactions[recording].after_output(rate, features, embedding)
        return rate

    def has_context(self, recording: str) -> bool:
        """Whether the recording's interactions include a layer that conditions on recorded activity."""
        return recording in self.interactions and self.interactions[recording].has_context

    @torch.no_grad()
    def predict(self, recording: str, stimulus: torch.Tensor, behavior: torch.Tensor | None = None,
                pupil_center: torch.Tensor | None = None, responses: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted responses in the recording's own units, (B, [T,] N); with ``responses`` (recorded,
        recording units) given population context where the model has a context layer (``forward``)."""
        return self(recording, stimulus, behavior, pupil_center, responses) * self.response_std(recording)

    @torch.no_grad()
    def predict_modes(self, recording: str, stimulus: torch.Tensor, behavior: torch.Tensor | None = None,
                      pupil_center: torch.Tensor | None = None,
                      responses: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``forward_modes`` in the recording's own units: the stimulus-only prediction and the one with
        population context (None without ``responses`` or a context layer), (B, [T,] N) each, one core pass."""
        rate, with_context = self.forward_modes(recording, stimulus, behavior, pupil_center, responses)
        std = self.response_std(recording)
        return rate * std, None if with_context is None else with_context * std

    def regularizer(self, weights: RegularizationConfig) -> torch.Tensor:
        """Weighted sum of the components' penalties: ``core`` (first-layer smoothness), ``readout``
        (feature sparsity), ``interactions`` (their own penalty, e.g. pool sparsity), plus the readouts'
        position penalty (weighted by their own ``edge_penalty``)."""
        total = torch.zeros((), device=self.response_std(next(iter(self.specs))).device)
        if weights.core:
            total = total + weights.core * self.core.regularizer()
        if weights.readout:
            total = total + weights.readout * sum(r.regularizer() for r in self.readouts.values())
        # Not a tunable prior but a guard against saturated positions, so it is on whatever the weights say.
        for readout in self.readouts.values():
            if hasattr(readout, "position_penalty"):
                total = total + readout.position_penalty()
        if weights.interactions and len(self.interactions):
            total = total + weights.interactions * sum(m.regularizer() for m in self.interactions.values())
        return total
