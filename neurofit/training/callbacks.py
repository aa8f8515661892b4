"""Trainer plug-ins and checkpoint files: atomic checkpoint writes, the run's initial checkpoint."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from neurofit.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file and rename it into place, so an interrupted save never
    leaves a truncated checkpoint that ``--resume`` would then fail on."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def save_init_checkpoint(module: L.LightningModule, path: str | os.PathLike) -> None:
    """Save ``module`` as training starts (after the readout positions were mapped) in the checkpoint
    format ``load_from_checkpoint`` reads, atomically: analyses compare the trained model with it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
               "pytorch-lightning_version": L.__version__, "epoch": -1, "global_step": 0}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
