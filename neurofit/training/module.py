"""LightningModule that trains an Encoder with a Poisson loss on many recordings at once."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any

import lightning as L
import numpy as np
import torch

from neurofit.config import ExperimentConfig, experiment_from_data
from neurofit.data.spec import RecordingSpec
from neurofit.errors import ConfigError, TrainingError
from neurofit.metrics import correlation
from neurofit.models.cores.video import VideoCore
from neurofit.models.encoder import Encoder
from neurofit.training.augment import cutmix
from neurofit.training.losses import poisson_loss


def batch_mask(batch: dict, skip_frames: int) -> torch.Tensor | None:
    """Loss/metric mask (B, [T]) from the recorded-response mask, with video burn-in frames removed."""
    mask = batch.get("response_mask")
    video = batch["responses"].dim() == 3
    if mask is None and not (video and skip_frames):
        return None
    if mask is None:
        mask = torch.ones(batch["responses"].shape[:-1], dtype=torch.bool, device=batch["responses"].device)
    if video and skip_frames:
        mask = mask.clone()
        mask[:, :skip_frames] = False
    return mask


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of DDP rank ``rank`` in a run seeded ``seed``: distinct per rank, reproducible."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def time_slice(batch: dict, frames: slice) -> dict:
    """The batch restricted to ``frames``: every tensor is sliced on its time axis (dim 1)."""
    return {k: v[:, frames] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class EncoderModule(L.LightningModule):
    """Trains ``Encoder(config.model, specs)``.

    Args:
        config: the experiment config (``model`` and ``training`` are used here), or its plain-data form
            as saved in a checkpoint.
        specs: RecordingSpec dicts of the training recordings (saved in the checkpoint's hyperparameters,
            so ``load_from_checkpoint`` rebuilds the model without the data).
    Logs ``train/loss`` and ``val/correlation`` (mean single-trial r over neurons, then recordings).
    With ``training.ema_decay``, validation (so early stopping and the best checkpoint) and every analysis of
    the run use the moving average of the weights (``evaluated_encoder``), as the SENSORIUM winners did.

    With ``training.tbptt_frames`` (video cores only) training uses truncated backpropagation through time:
    each batch is cut into chunks of that many frames, the core carries its state from chunk to chunk, and
    every chunk gets its own backward pass and optimiser step with the state detached after it (Lightning
    2.x's manual-optimisation pattern). Chunks made only of burn-in frames advance the state without
    gradients. Validation runs whole trials.

    With ``training.freeze: core`` the core takes no gradient, stays out of the optimiser and runs in eval mode
    whatever ``train()`` asks (batch norm keeps its running statistics; no drop path or noise), so it stays
    bit-identical to the run it came from (``training.init_from``); otherwise the core trains at ``lr`` x
    ``training.core_lr_scale``.
    """

    def __init__(self, config: ExperimentConfig | dict[str, Any], specs: list[dict[str, Any]]) -> None:
        super().__init__()
        if isinstance(config, dict):  # the serialised form kept in checkpoints
            config = experiment_from_data(config, "checkpoint config", name=str(config.get("name", "run")))
        # Checkpoints keep the config as plain data, so they load without unpickling neurofit classes.
        self.save_hyperparameters({"config": config.to_data(), "specs": specs})
        self.config = config
        self.train_cfg = config.training
        self.encoder = Encoder(config.model, [RecordingSpec.from_dict(s) for s in specs])
        self.frozen_core = self.train_cfg.freeze == "core"
        # A frozen core's penalty is a constant without gradient: not worth computing every step.
        self.regularization = (dataclasses.replace(self.train_cfg.regularization, core=0.0) if self.frozen_core
                               else self.train_cfg.regularization)
        if self.frozen_core:
            self.encoder.core.requires_grad_(False)
        self.skip_frames = self.train_cfg.skip_frames
        self.tbptt_frames = self.train_cfg.tbptt_frames
        if self.tbptt_frames:
            if not isinstance(self.encoder.core, VideoCore):
                raise ConfigError("training.tbptt_frames needs a video core (gru, ctrnn, conv3d, dwise_video), "
                                  f"not {config.model.core.name!r}")
            self.automatic_optimization = False
        self.ema = _ema_copy(self.encoder, self.train_cfg.ema_decay)
        self._val: dict[str, list] = defaultdict(list)
        self.train(self.training)  # puts a frozen core in eval mode

    def train(self, mode: bool = True) -> EncoderModule:
        """``nn.Module.train``, except that a frozen core stays in eval mode."""
        super().train(mode)
        if self.frozen_core:
            self.encoder.core.eval()
        return self

    def restart_average(self) -> None:
        """Start the moving average of the weights (``training.ema_decay``) at the current weights. The copy
        made in ``__init__`` predates the mapped readout positions and a transferred core; the first training
        batch replaces it anyway, but ``checkpoints/init.ckpt`` is evaluated through it."""
        if self.ema is not None:
            self.ema.module.load_state_dict(self.encoder.state_dict())

    @property
    def evaluated_encoder(self) -> Encoder:
        """The weights that validation scores and analyses use: the moving average with
        ``training.ema_decay``, else the trained weights."""
        return self.encoder if self.ema is None else self.ema.module

    def on_train_start(self) -> None:
        # Lightning seeds every DDP process alike, so each rank would draw the same training noise (readout
        # position jitter, core noise, cutmix boxes) for its different trials: noise correlated across the
        # global batch, which one process never has. Each rank gets its own stream instead.
        if self.trainer.world_size > 1:
            torch.manual_seed(rank_seed(self.train_cfg.seed, self.global_rank))

    def on_train_batch_end(self, outputs: Any, batch: dict, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.encoder)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.encoder(batch["recording"], batch["stimulus"], batch.get("behavior"),
                            batch.get("pupil_center"))

    def _loss(self, batch: dict, mask: torch.Tensor | None) -> torch.Tensor:
        target = batch["responses"] / self.encoder.response_std(batch["recording"])
        rate, with_context = self.encoder.forward_modes(batch["recording"], batch["stimulus"],
                                                        batch.get("behavior"), batch.get("pupil_center"),
                                                        batch["responses"])
        loss = poisson_loss(rate, target, mask)
        # With a context layer both modes are trained: the stimulus-only prediction stays a model of its own
        # (the SENSORIUM-style metrics score it), and the layer learns what the others' activity adds to it.
        return loss if with_context is None else 0.5 * (loss + poisson_loss(with_context, target, mask))

    def _require_finite(self, loss: torch.Tensor, recording: str) -> None:
        """Stop training on a non-finite loss before it reaches the weights, so every checkpoint on disk
        is a good one. Under DDP the decision is shared, so no rank waits for another that stopped."""
        bad = not bool(torch.isfinite(loss.detach()))
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise TrainingError(f"recording {recording!r}: the training loss is {float(loss):g} at epoch "
                                f"{self.current_epoch}, step {self.global_step}; stopped before the update "
                                "(try a lower training.lr or check the inputs)")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = [k for k, v in checkpoint["state_dict"].items()
               if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]
        if bad:
            raise TrainingError(f"non-finite weights ({', '.join(bad[:3])}) at epoch {self.current_epoch}; "
                                "the checkpoint was not written")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if self.train_cfg.cutmix.probability:  # whole trials, before any chunking
            batch = cutmix(batch, self.train_cfg.cutmix)
        if self.tbptt_frames:
            return self._tbptt_step(batch)
        loss = self._loss(batch, batch_mask(batch, self.skip_frames))
        self._require_finite(loss, batch["recording"])
        reg = self.encoder.regularizer(self.regularization)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["responses"]))
        return loss + reg

    def _tbptt_step(self, batch: dict) -> None:
        """Truncated BPTT over one batch of videos: one optimiser step per chunk of ``tbptt_frames``."""
        opt = self.optimizers()
        core = self.encoder.core
        mask = batch_mask(batch, self.skip_frames)
        losses = []
        with core.carry_state():
            for start in range(0, batch["responses"].shape[1], self.tbptt_frames):
                frames = slice(start, start + self.tbptt_frames)
                chunk = time_slice(batch, frames)
                # Decided by frame index alone (not the data mask), so every DDP rank takes the same path.
                if start + self.tbptt_frames <= self.skip_frames:
                    with torch.no_grad():
                        self(chunk)
                    continue
                loss = self._loss(chunk, None if mask is None else mask[:, frames])
                self._require_finite(loss, batch["recording"])
                opt.zero_grad()
                self.manual_backward(loss + self.encoder.regularizer(self.regularization))
                opt.step()
                core.detach_state()
                losses.append(loss.detach())
        if self.train_cfg.scheduler == "cosine":
            self.lr_schedulers().step()  # per batch, as Lightning would with interval "step"
        if losses:
            self.log("train/loss", torch.stack(losses).mean(), prog_bar=True, batch_size=len(batch["responses"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        rate = self.evaluated_encoder(batch["recording"], batch["stimulus"], batch.get("behavior"),
                                      batch.get("pupil_center"))
        mask = batch_mask(batch, self.skip_frames)
        pred, resp = rate.float(), batch["responses"].float()
        if mask is not None:
            pred, resp = pred[mask], resp[mask]
        else:
            pred, resp = pred.reshape(-1, pred.shape[-1]), resp.reshape(-1, resp.shape[-1])
        self._val[batch["recording"]].append((pred.cpu().numpy(), resp.cpu().numpy()))

    def on_validation_epoch_end(self) -> None:
        per_rec = []
        for name, parts in self._val.items():
            pred = np.concatenate([p for p, _ in parts])
            resp = np.concatenate([r for _, r in parts])
            r = float(np.mean(correlation(pred, resp)))
            per_rec.append(r)
            self.log(f"val/correlation/{name}", r, sync_dist=False)
        self._val.clear()
        if per_rec:
            # Every rank scores the full validation set, so this value is identical across ranks.
            self.log("val/correlation", float(np.mean(per_rec)), prog_bar=True, sync_dist=False)
            # Lightning steps schedulers only under automatic optimisation
            if not self.automatic_optimization and self.train_cfg.scheduler == "plateau":
                self.lr_schedulers().step(float(np.mean(per_rec)))

    def on_train_epoch_end(self) -> None:
        # Lightning steps epoch-interval schedulers only under automatic optimisation.
        if not self.automatic_optimization and self.train_cfg.scheduler == "step":
            self.lr_schedulers().step()

    def configure_optimizers(self) -> dict:
        """AdamW with ``training.scheduler``: "plateau" (decay by ``lr_decay_factor`` when the validation
        correlation stalls for ``lr_patience`` validations), "step" (decay by ``lr_decay_factor`` after each
        epoch listed in ``lr_milestones``; for when validation creeps up too slowly for the plateau test to
        fire) or "cosine" (linear warm-up over ``warmup_epochs``, then cosine decay to 1% of ``lr`` at the last
        step of ``max_epochs``; what a fixed epoch budget wants). The schedulers scale every parameter group's
        rate alike, so the core keeps its ``core_lr_scale``."""
        cfg = self.train_cfg
        opt = torch.optim.AdamW(self._parameter_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            warmup = int(cfg.warmup_epochs * total / max(1, self.trainer.max_epochs))

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = min(1.0, (step - warmup) / max(1, total - warmup))
                return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            # Under truncated BPTT (manual optimisation) _tbptt_step steps it once per batch.
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if cfg.scheduler == "step":
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, cfg.lr_milestones, gamma=cfg.lr_decay_factor)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=cfg.lr_decay_factor, patience=cfg.lr_patience, threshold=1e-3, min_lr=1e-5)
        if not self.automatic_optimization:  # stepped in on_validation_epoch_end instead
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched}}
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/correlation"}}


    def _parameter_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameters: one group at ``lr``, without a frozen core; the core in a group of
        its own at ``lr * core_lr_scale`` when that differs from 1 (one group otherwise, so that optimiser
        states saved before this option existed still resume)."""
        core = {id(p) for p in self.encoder.core.parameters()}
        trained = [p for p in self.encoder.parameters() if p.requires_grad]
        scale = self.train_cfg.core_lr_scale
        if self.frozen_core or scale == 1.0:
            return [{"params": trained}]
        return [{"params": [p for p in trained if id(p) not in core]},
                {"params": [p for p in trained if id(p) in core], "lr": self.train_cfg.lr * scale}]


def _ema_copy(encoder: Encoder, decay: float | None) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``encoder``'s weights and buffers (updated once per training batch,
    w_ema <- decay * w_ema + (1 - decay) * w), or None when ``decay`` is None. Its parameters take no
    gradient: the optimiser and DDP see the trained encoder only."""
    if decay is None:
        return None
    ema = torch.optim.swa_utils.AveragedModel(
        encoder, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema
