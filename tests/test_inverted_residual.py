"""Inverted-residual blocks and the dwise cores: shapes, causality, chunked runs equal whole videos, drop path
(identity in eval, whole samples dropped in training), finite gradients, parameter counts, the best_* configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofit.config import load_config
from neurofit.data.spec import spec_from_recording
from neurofit.models.cores import CORES, DwiseCore, DwiseVideoCore, VideoCore
from neurofit.models.cores.inverted_residual import CausalInvertedResidual, InvertedResidual, drop_path
from neurofit.models.encoder import Encoder
from tests.conftest import tiny_recording

SMALL = {"channels": 6, "blocks": 2, "input_kernel": 3, "kernel": 3, "expansion": 2, "se_ratio": 0.5}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _video_core(**extra) -> DwiseVideoCore:
    torch.manual_seed(0)
    return DwiseVideoCore(**{**SMALL, "temporal_kernel": 3, **extra})


def _video(batch: int = 2, frames: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, frames, 8, 10, generator=torch.Generator().manual_seed(seed))


def test_registered_under_their_config_names():
    assert CORES["dwise"] is DwiseCore and CORES["dwise_video"] is DwiseVideoCore
    assert issubclass(DwiseVideoCore, VideoCore) and not issubclass(DwiseCore, VideoCore)


@pytest.mark.parametrize("stride, plane", [(1, (8, 10)), (2, (4, 5)), (3, (3, 4))])
def test_shapes_follow_the_stem_stride(stride, plane):
    """H x W as ConvCore's: the blocks keep the stem's ceil(H / stride) x ceil(W / stride)."""
    torch.manual_seed(0)
    static = DwiseCore(**SMALL, input_stride=stride)
    out = static(torch.randn(3, 1, 8, 10))
    assert static.out_channels == 6 and out.shape == (3, 6, *plane) and torch.isfinite(out).all()
    video = _video_core(input_stride=stride)
    out = video(_video())
    assert video.out_channels == 6 and out.shape == (2, 9, 6, *plane) and torch.isfinite(out).all()
    for core in (static, video):
        penalty = core.regularizer()
        assert penalty.dim() == 0 and penalty > 0


def test_videos_of_a_batch_stay_apart():
    """The blocks fold videos and frames into one batch; no video's output depends on another's frames."""
    core = _video_core().eval()
    x = _video(batch=3)
    with torch.no_grad():
        together = core(x)
        alone = core(x[1:2])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-5, atol=1e-6)


def test_drop_path_drops_whole_samples_in_training_only():
    x = torch.ones(400, 3, 2, 2)
    assert drop_path(x, 0.5, training=False) is x and drop_path(x, 0.0, training=True) is x
    torch.manual_seed(0)
    per_row = drop_path(x, 0.25, training=True)
    values = per_row.unique()
    assert len(values) == 2 and values[0] == 0 and values[1] == pytest.approx(4 / 3)  # kept: 1 / (1 - rate)
    assert (per_row.flatten(1) == per_row[:, :1, 0, 0]).all()  # every row dropped or kept as a whole
    assert 0.15 < (per_row[:, 0, 0, 0] == 0).float().mean() < 0.35
    per_video = drop_path(x, 0.5, training=True, samples=40).reshape(40, 10, -1)  # 40 videos of 10 frames
    assert (per_video == per_video[:, :1, :1]).all() and (per_video[:, 0, 0] == 0).any()
    with pytest.raises(ValueError, match=r"drop_path must be in \[0, 1\)"):
        InvertedResidual(4, drop_path=1.0)


@pytest.mark.parametrize("video", [False, True])
def test_drop_path_blocks_are_identity_in_eval_and_drop_the_branch_in_training(video):
    """A block with drop path computes the block without it in eval; in training each sample (each video, its
    frames together) gets either the shortcut alone or shortcut + branch / (1 - rate)."""
    torch.manual_seed(0)
    make = (lambda p: CausalInvertedResidual(4, temporal_kernel=3, drop_path=p)) if video else \
        (lambda p: InvertedResidual(4, drop_path=p))
    plain, dropping = make(0.0), make(0.5)
    dropping.load_state_dict(plain.state_dict())
    batch, frames = 16, (5 if video else 1)
    x = torch.randn(batch * frames, 4, 6, 7)

    def run(block: torch.nn.Module) -> torch.Tensor:
        return block(x, batch)[0] if video else block(x)

    with torch.no_grad():
        assert torch.equal(run(plain.eval()), run(dropping.eval()))
        plain.train(), dropping.train()
        shortcut = plain.shortcut(x)
        full, dropped = run(plain) - shortcut, run(dropping) - shortcut
    kept = dropped.reshape(batch, -1).abs().amax(1) > 0
    assert 0 < kept.sum() < batch
    torch.testing.assert_close(dropped.reshape(batch, -1)[kept], 2 * full.reshape(batch, -1)[kept])


def test_gradients_are_finite_and_reach_every_parameter():
    core = _video_core(drop_path=0.2, input_stride=2).train()
    with core.carry_state():  # two chunks, the second from the first's state as in truncated BPTT
        core(_video(batch=4, frames=4))
        core.detach_state()
        loss = core(_video(batch=4, frames=5, seed=1)).pow(2).mean() + core.regularizer()
    loss.backward()
    for name, p in core.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def _block_parameters(c: int, k: int, e: int, squeeze: int, kt: int = 0) -> int:
    """Weights of one block by hand: expansion, depthwise, [temporal,] SE, projection, plus batch norms."""
    wide = e * c
    convs = c * wide + wide * k * k + wide * kt + 2 * wide * squeeze + squeeze + wide + wide * c
    norms = 2 * wide * (3 if kt else 2) + 2 * c + 2 * c  # expand, depthwise, [temporal,] projection, shortcut
    return convs + norms


def test_parameter_counts():
    stem = 1 * 6 * 3 * 3 + 2 * 6
    assert sum(p.numel() for p in DwiseCore(**SMALL).parameters()) == stem + 2 * _block_parameters(6, 3, 2, 3)
    video = sum(p.numel() for p in _video_core().parameters())
    assert video == stem + 2 * _block_parameters(6, 3, 2, 3, kt=3)
    no_se = sum(p.numel() for p in DwiseCore(**{**SMALL, "se_ratio": 0.0}).parameters())
    assert no_se == stem + 2 * (_block_parameters(6, 3, 2, 0) - 12)  # no SE biases either
    # The shipped video core is no bigger than the wide GRU it is sized against.
    best = Encoder(load_config(CONFIGS / "best_video.yaml").model, _specs(video=True)).core
    gru = Encoder(load_config(CONFIGS / "video_gru_wide.yaml").model, _specs(video=True)).core
    assert 10_000 < sum(p.numel() for p in best.parameters()) < sum(p.numel() for p in gru.parameters())


def _specs(video: bool):
    ds, _ = tiny_recording("m0", video_frames=6 if video else 0)
    return [spec_from_recording(ds, "m0", np.flatnonzero(ds["tier"].values == "train"))]


def test_best_static_config_builds_and_predicts():
    cfg = load_config(CONFIGS / "best_static.yaml")
    encoder = Encoder(cfg.model, _specs(video=False)).eval()
    assert isinstance(encoder.core, DwiseCore)
    with torch.no_grad():
        rate = encoder("m0", torch.rand(4, 8, 10), torch.rand(4, 3), torch.rand(4, 2))
    assert rate.shape == (4, 12) and torch.isfinite(rate).all() and (rate > 0).all()
