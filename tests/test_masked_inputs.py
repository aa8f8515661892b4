"""Masked frames and missing values never reach the model as NaN: random NaN patterns in every input array
go through a training step with a finite loss and finite gradients, for static and video models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofit.config import load_config
from neurofit.data import write_store
from neurofit.data.datamodule import NeuralDataModule
from neurofit.training.module import EncoderModule
from tests.conftest import tiny_recording

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
VIDEO_SMALL = ["model.core.frontend={channels: 4, layers: 1, input_kernel: 3, temporal_kernel: 3}",
               "model.core.hidden_channels=6", "training.tbptt_frames=0", "training.skip_frames=2"]


def _module_and_batch(tmp_path: Path, video: bool):
    rec, _ = tiny_recording("m0", n_neurons=7, video_frames=8 if video else 0)
    store = write_store(tmp_path / "s.zarr", {"m0": rec})
    cfg = load_config(CONFIGS / ("video_gru.yaml" if video else "default.yaml"), VIDEO_SMALL if video else [])
    dm = NeuralDataModule(store, batch_size=6)
    specs = [s.to_dict() for s in dm.prepare_specs()]
    module = EncoderModule(cfg, specs)
    arrays = dm.recordings["m0"].read(dm.recordings["m0"].trials("train")[:6])
    return module, arrays


def _with_nans(arrays: dict, rng: np.random.Generator, masked_only: bool) -> dict[str, torch.Tensor]:
    """A batch with NaN at random places of every input; responses NaN (and masked) on some frames."""
    batch = {k: torch.as_tensor(np.array(v, copy=True)) for k, v in arrays.items()}
    lead = batch["responses"].shape[:-1]
    mask = torch.as_tensor(rng.random(lead) > 0.3)
    mask.view(-1)[0] = True  # at least one scored entry
    batch["response_mask"] = mask
    batch["responses"][~mask] = float("nan")
    for key in ("stimulus", "behavior", "pupil_center"):
        x = batch[key]
        hit = torch.as_tensor(rng.random(x.shape) < rng.uniform(0.05, 0.9))
        if masked_only:
            hit &= ~mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim()))
        x[hit] = float(rng.choice([np.nan, np.inf, -np.inf]))
    batch["recording"] = "m0"
    return batch


@pytest.mark.parametrize("video", [False, True], ids=["static", "video"])
@pytest.mark.parametrize("masked_only", [True, False], ids=["padding", "anywhere"])
def test_random_nan_patterns_give_finite_loss_and_gradients(tmp_path, video, masked_only):
    module, arrays = _module_and_batch(tmp_path, video)
    rng = np.random.default_rng(0)
    for _ in range(8):
        module.zero_grad()
        loss = module.training_step(_with_nans(arrays, rng, masked_only), 0)
        assert torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


def test_masked_inputs_do_not_change_scored_predictions(tmp_path):
    """Whatever a padded frame holds (NaN, or the training mean), the predictions of a causal video model
    on the frames before it are the same: padding is neutral."""
    module, arrays = _module_and_batch(tmp_path, video=True)
    module.eval()
    batch = {k: torch.as_tensor(np.array(v, copy=True)) for k, v in arrays.items() if k != "response_mask"}
    nan_pad = {k: v.clone() for k, v in batch.items()}
    for key in ("stimulus", "behavior", "pupil_center"):
        nan_pad[key][:, 5:] = float("nan")
    with torch.no_grad():
        clean = module.encoder("m0", batch["stimulus"], batch["behavior"], batch["pupil_center"])
        padded = module.encoder("m0", nan_pad["stimulus"], nan_pad["behavior"], nan_pad["pupil_center"])
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(padded[:, :5], clean[:, :5])
