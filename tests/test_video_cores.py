"""Video cores: shapes, causality, chunked runs with carried state equal whole-video runs, Dale's law after
training of the CTRNN core, CTRNN options from the config, and truncated BPTT in the training module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofit.config import load_config, model_from_data
from neurofit.data.spec import RecordingSpec, spec_from_recording
from neurofit.errors import ConfigError
from neurofit.models.cores import CORES, CTRNNCore, VideoCore
from neurofit.models.cores.frontend import FrameConv3d
from neurofit.models.encoder import Encoder
from neurofit.training.module import EncoderModule
from tests.conftest import tiny_recording

SMALL_FRONT = {"channels": 4, "layers": 2, "input_kernel": 3, "hidden_kernel": 3, "temporal_kernel": 3}
SMALL = {
    "gru": {"frontend": SMALL_FRONT, "hidden_channels": 5},
    "ctrnn": {"frontend": SMALL_FRONT, "hidden_size": 10, "tau": 2.0, "preact_noise": 0.1},
    "conv3d": {"channels": 4, "layers": 2, "input_kernel": 3, "hidden_kernel": 3, "temporal_kernel": 3},
    "dwise_video": {"channels": 6, "blocks": 2, "input_kernel": 3, "kernel": 3, "expansion": 2, "se_ratio": 0.5,
                    "temporal_kernel": 4},
}


def video_specs() -> list[RecordingSpec]:
    """Spec of a tiny video recording "m0": 12 neurons, 8 x 10 frames, behaviour and pupil."""
    ds, _ = tiny_recording("m0", video_frames=6)
    return [spec_from_recording(ds, "m0", np.flatnonzero(ds["tier"].values == "train"))]


def _core(name: str, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return CORES[name](**SMALL[name], **extra)


def _video(batch: int = 2, frames: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, frames, 8, 10, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name, channels", [("gru", 5), ("ctrnn", 10), ("conv3d", 4)])
def test_shapes_keep_the_image_plane(name, channels):
    core = _core(name)
    assert core.out_channels == channels
    out = core(_video())
    assert out.shape == (2, 9, channels, 8, 10)
    assert torch.isfinite(out).all()
    assert core.regularizer().dim() == 0


STRIDED = {"gru": {"frontend": {**SMALL_FRONT, "input_stride": 2, "depthwise": True}},
           "ctrnn": {"frontend": {**SMALL_FRONT, "input_stride": 2, "depthwise": True}},
           "conv3d": {"input_stride": 2, "depthwise": True}}


@pytest.mark.parametrize("taps, groups, stride", [(1, 1, 1), (1, 3, 2), (3, 3, 1), (4, 1, 2)])
def test_frame_conv_is_the_3d_convolution(taps, groups, stride):
    """The 2D-per-frame path computes nn.Conv3d's output and gradients with the same parameters."""
    torch.manual_seed(0)
    shape = dict(kernel_size=(taps, 5, 5), stride=(1, stride, stride), padding=(0, 2, 2), groups=groups)
    frame, plain = FrameConv3d(3, 6, **shape), torch.nn.Conv3d(3, 6, **shape)
    plain.load_state_dict(frame.state_dict())
    x = torch.randn(2, 3, 7, 9, 11, requires_grad=True)
    ours, ref = frame(x), plain(x)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(ref)
    grads = torch.autograd.grad((ours * weights).sum(), (x, frame.weight, frame.bias))
    ref_grads = torch.autograd.grad((ref * weights).sum(), (x, plain.weight, plain.bias))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="temporal stride 1, padding 0"):
        FrameConv3d(3, 6, (taps, 5, 5), padding=1)


@pytest.mark.parametrize("name", sorted(STRIDED))
def test_strided_depthwise_front_ends_halve_the_plane_and_stay_causal_in_chunks(name):
    torch.manual_seed(0)
    options = {**SMALL[name], **STRIDED[name]}
    core, plain = CORES[name](**options).eval(), _core(name)
    assert sum(p.numel() for p in core.parameters()) < sum(p.numel() for p in plain.parameters())
    x = _video(frames=11)
    with torch.no_grad():
        whole, _ = core.forward_chunk(x)
        first, state = core.forward_chunk(x[:, :, :4])
        rest, _ = core.forward_chunk(x[:, :, 4:], state)
        changed = x.clone()
        changed[:, :, 6:] += 3.0
        later, _ = core.forward_chunk(changed)
    assert whole.shape[-2:] == (4, 5)  # 8 x 10 at stride 2
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, rtol=1e-5, atol=1e-5)
    assert torch.equal(later[:, :6], whole[:, :6])
    assert core.regularizer().dim() == 0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_output_at_frame_t_ignores_later_frames(name):
    core = _core(name).eval()  # batch norm in training mode pools statistics over all frames
    x = _video()
    changed = x.clone()
    changed[:, :, 5:] = torch.randn_like(changed[:, :, 5:]) * 3
    with torch.no_grad():
        a, b = core(x), core(changed)
    assert torch.equal(a[:, :5], b[:, :5])
    assert (a[:, 5:] - b[:, 5:]).abs().max() > 1e-3  # and later frames do see the change


@pytest.mark.parametrize("name", sorted(SMALL))
def test_chunks_with_carried_state_equal_the_whole_video(name):
    core = _core(name).eval()
    x = _video(frames=11)
    with torch.no_grad():
        whole, _ = core.forward_chunk(x)
        state, parts = None, []
        for frames in (slice(0, 4), slice(4, 5), slice(5, 11)):  # a chunk shorter than the temporal kernel too
            out, state = core.forward_chunk(x[:, :, frames], state)
            parts.append(out)
        with core.carry_state():
            carried = torch.cat([core(x[:, :, s:s + 3]) for s in range(0, 11, 3)], dim=1)
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(carried, whole, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # outside the block the core starts from zeros again
        torch.testing.assert_close(core(x[:, :, 3:6]), core.forward_chunk(x[:, :, 3:6])[0])


def test_encoder_in_chunks_matches_the_whole_trial():
    """The forward pass truncated BPTT makes: the Encoder over consecutive chunks with the core's state
    carried (readout, modulator and shifter per frame) equals one pass over the whole trial."""
    torch.manual_seed(0)
    model = {"core": {"name": "gru", **SMALL["gru"]}, "readout": {"name": "gaussian"},
             "modulator": {"hidden": 4}, "shifter": {"hidden": 4}}
    encoder = Encoder(model_from_data(model), video_specs()).eval()
    gen = torch.Generator().manual_seed(1)
    stim, beh, pupil = torch.rand(2, 10, 8, 10, generator=gen), torch.rand(2, 10, 3), torch.rand(2, 10, 2)
    with torch.no_grad():
        whole = encoder("m0", stim, beh, pupil)
        with encoder.core.carry_state():
            chunks = [encoder("m0", stim[:, s:s + 4], beh[:, s:s + 4], pupil[:, s:s + 4]) for s in (0, 4, 8)]
    assert whole.shape == (2, 10, 12)
    torch.testing.assert_close(torch.cat(chunks, dim=1), whole, rtol=1e-5, atol=1e-5)


def test_dale_signs_hold_after_training():
    core = _core("ctrnn", e_fraction=0.8, rate_l2=1e-3, weight_l2=1e-3, weight_l1=1e-4)
    cell = core.rnn.cell
    before = cell.recurrent_weight().detach().clone()
    opt = torch.optim.Adam(core.parameters(), lr=0.05)
    x, target = _video(frames=6), torch.rand(2, 6, 10, 8, 10, generator=torch.Generator().manual_seed(2))
    for _ in range(5):
        loss = (core(x) - target).pow(2).mean() + core.regularizer()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = cell.recurrent_weight().detach()
    assert (w - before).abs().max() > 1e-2  # training moved the weights
    signs = cell.signs
    assert int((signs > 0).sum()) == 8 and int((signs < 0).sum()) == 2
    # Every weight W[post, pre] has the sign of its presynaptic unit (or is zero).
    assert (w * signs[None, :] >= 0).all()
    assert (w[:, signs > 0] > 0).any() and (w[:, signs < 0] < 0).any()


def test_ctrnn_options_from_the_config():
    core = CTRNNCore(frontend=SMALL_FRONT, hidden_size=12, tau=list(range(2, 14)), density=0.5,
                     plastic_density=0.5, preact_noise=0.5, postact_noise=0.1,
                     multi_area={"sizes": [8, 4], "between_density": 0.0, "readout_areas": [1]})
    cell = core.rnn.cell
    assert core.out_channels == 4  # only the read-out area's units are features
    assert torch.allclose(cell.alpha, 1.0 / torch.arange(2, 14).float())
    assert not cell.recurrent_weight()[:8, 8:].any() and not cell.recurrent_weight()[8:, :8].any()
    assert 0.2 < cell.plasticity_mask.float().mean() < 0.8
    x = _video()
    core.eval()
    with torch.no_grad():  # noise is for training only: predictions are deterministic
        assert torch.equal(core(x), core(x))
    with pytest.raises(ConfigError, match="multi_area has 12 units"):
        CTRNNCore(hidden_size=10, multi_area={"sizes": [8, 4]})


def test_tbptt_needs_a_video_core():
    config = {"model": {"core": {"name": "conv", "channels": 4, "layers": 1, "input_kernel": 3},
                        "readout": {"name": "gaussian"}},
              "training": {"tbptt_frames": 5}}
    with pytest.raises(ConfigError, match="tbptt_frames needs a video core"):
        EncoderModule(config, [s.to_dict() for s in video_specs()])


@pytest.mark.parametrize("name, recurrent", [("gru", 5), ("ctrnn", 10)])
def test_skip_adds_the_front_end_features_after_the_recurrent_ones(name, recurrent):
    """With ``skip`` the readout sees the recurrent output unchanged plus the front end's features, and the
    chunked run still equals the whole video."""
    plain, skipping = _core(name).eval(), _core(name, skip=True).eval()
    assert skipping.out_channels == recurrent + SMALL_FRONT["channels"]
    x = _video(frames=11)
    with torch.no_grad():
        whole, _ = skipping.forward_chunk(x)
        front, _ = skipping.frontend(x)
        first, state = skipping.forward_chunk(x[:, :, :4])
        rest, _ = skipping.forward_chunk(x[:, :, 4:], state)
        torch.testing.assert_close(whole[:, :, :recurrent], plain(x))
    assert torch.equal(whole[:, :, recurrent:], front.transpose(1, 2))
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, rtol=1e-5, atol=1e-5)


# Every video config (video_*.yaml, best_video.yaml); video_base.yaml holds shared training settings, no model.
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VIDEO_CONFIGS = sorted(p for p in CONFIGS.glob("*video*.yaml") if p.stem != "video_base")


@pytest.mark.parametrize("path", VIDEO_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_video_config_builds_and_predicts_per_frame(path):
    cfg = load_config(path)
    encoder = Encoder(cfg.model, video_specs()).eval()
    assert isinstance(encoder.core, VideoCore)
    with torch.no_grad():
        rate = encoder("m0", torch.rand(2, 7, 8, 10), torch.rand(2, 7, 3), torch.rand(2, 7, 2))
    assert rate.shape == (2, 7, 12) and torch.isfinite(rate).all() and (rate > 0).all()
