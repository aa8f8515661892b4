"""CutMix that keeps receptive fields in place, and the per-neuron output scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofit.config.schema import CutMixConfig
from neurofit.training.augment import cutmix


def _batch(video: bool):
    gen = torch.Generator().manual_seed(0)
    lead = (6, 5) if video else (6,)
    batch = {"stimulus": torch.rand(*lead, 12, 16, generator=gen),
             "responses": torch.rand(*lead, 4, generator=gen),
             "behavior": torch.rand(*lead, 3, generator=gen), "recording": "m0"}
    if video:
        mask = torch.ones(lead, dtype=torch.bool)
        mask[0, 3:] = False  # a padded tail
        batch["responses"][0, 3:] = float("nan")
        batch["response_mask"] = mask
    return batch


@pytest.mark.parametrize("video", [False, True], ids=["static", "video"])
def test_cutmix_pastes_one_box_and_mixes_the_responses_by_area(video):
    batch = _batch(video)
    out = cutmix(batch, CutMixConfig(probability=1.0, alpha=1.0), torch.Generator().manual_seed(3))
    changed = (out["stimulus"] != batch["stimulus"])
    box = changed.reshape(-1, 12, 16).any(0)
    rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
    assert box.sum() > 0 and box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one rectangle
    if video:  # the same box on every frame
        assert torch.equal(changed[:, 0], changed[:, -1])
        assert not out["response_mask"][0, 3:].any()
        assert torch.isfinite(out["responses"][out["response_mask"]]).all()
    lam = 1 - box.sum().item() / (12 * 16)
    sources = range(6)
    # every mixed response is lam * own + (1 - lam) * one other trial's
    own = torch.nan_to_num(batch["responses"])
    for i in sources:
        candidates = [lam * own[i] + (1 - lam) * own[j] for j in sources]
        assert any(torch.allclose(out["responses"][i], c, atol=1e-6) for c in candidates)
    assert torch.equal(out["behavior"], batch["behavior"])


def test_cutmix_off_leaves_the_batch_alone():
    batch = _batch(False)
    assert cutmix(batch, CutMixConfig(probability=0.0)) is batch


def test_output_scale_starts_at_one_and_learns(tiny_store):
    from neurofit.config import load_config
    from neurofit.data.datamodule import NeuralDataModule
    from neurofit.training.module import EncoderModule

    dm = NeuralDataModule(tiny_store, batch_size=8)
    specs = [s.to_dict() for s in dm.prepare_specs()]
    plain = EncoderModule(load_config("configs/ln.yaml"), specs)
    scaled = EncoderModule(load_config("configs/ln.yaml", ["model.output_scale=true"]), specs)
    scaled.encoder.load_state_dict(plain.encoder.state_dict(), strict=False)
    arrays = dm.recordings["m0"].read(dm.recordings["m0"].trials("train")[:8])
    batch = {k: torch.as_tensor(v) for k, v in arrays.items()}
    with torch.no_grad():
        torch.testing.assert_close(scaled.encoder("m0", batch["stimulus"]), plain.encoder("m0", batch["stimulus"]))
    batch["recording"] = "m0"
    scaled.training_step(batch, 0).backward()
    assert scaled.encoder.output_scales["m0"].grad.abs().sum() > 0
