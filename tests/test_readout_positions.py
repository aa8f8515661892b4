"""Readout positions stay where their gradient lives: a cortical map pushed far past the screen edge (where
tanh saturates) comes back under the position penalty, and does not without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurofit.data import write_store
from neurofit.models.readouts.gaussian import EDGE, GaussianReadout
from tests.conftest import tiny_recording

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

H = W = 16


def _readout(edge_penalty: float, position: str = "cortical") -> GaussianReadout:
    torch.manual_seed(0)
    readout = GaussianReadout(20, 1, coords_um=torch.rand(20, 3) * 500, position=position, scatter=True,
                              affine_init=0.0, image_shape=(H, W), edge_penalty=edge_penalty)
    with torch.no_grad():
        readout.embedding.fill_(1.0)
        if position == "cortical":
            readout.affine.bias.fill_(-5.0)  # every neuron far past the top-left corner
        else:
            readout.mu.fill_(-3.0)
    readout.embedding.requires_grad_(False)
    return readout.eval()  # no sampling jitter: the test is about the mean position


def _train(readout: GaussianReadout, steps: int = 400) -> torch.Tensor:
    """Maximise the sampled feature, which peaks at grid (0.3, -0.2), plus the readout's position penalty.
    Plain SGD, so a vanishing gradient stalls as it does under Adam once it falls below Adam's epsilon."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    feature = -((xs - 0.3) ** 2 + (ys + 0.2) ** 2)[None, None]
    opt = torch.optim.SGD([p for p in readout.parameters() if p.requires_grad], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        loss = -readout(feature).drive.sum() + readout.position_penalty()
        loss.backward()
        opt.step()
    return readout.positions().detach()


@pytest.mark.parametrize("position", ["cortical", "learned"])
def test_a_map_pushed_past_the_edge_recovers(position):
    recovered = _train(_readout(1.0, position))
    assert (recovered - torch.tensor([0.3, -0.2])).abs().max() < 0.1
    stuck = _train(_readout(0.0, position))
    assert (stuck + 1).abs().max() < 0.05  # saturated at the corner: the failure the penalty prevents


def test_penalty_is_zero_inside_and_grows_outside():
    readout = _readout(2.0)
    with torch.no_grad():
        readout.affine.bias.fill_(0.0)
        readout.affine.weight.zero_()
        readout.position_net[-1].weight.zero_()
        readout.position_net[-1].bias.zero_()
    assert readout.position_penalty().item() == 0.0
    with torch.no_grad():
        readout.affine.bias.fill_(EDGE + 1.0)
    assert readout.position_penalty().item() == pytest.approx(2.0 * 20 * 2 * 1.0, rel=1e-5)


def test_non_finite_shift_gives_finite_grid_and_gradients():
    readout = _readout(1.0).train()
    x = torch.randn(3, 1, H, W, requires_grad=True)
    shift = torch.tensor([[float("nan"), 0.0], [float("inf"), -float("inf")], [0.1, 0.2]])
    readout(x, shift).drive.sum().backward()
    assert torch.isfinite(x.grad).all()



#: Builds the default model (a small core) for a store and starts its readouts from the data, in a fresh
#: process, and prints a digest of every readout parameter.
_READOUT_START = """
import hashlib, sys
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
from neurofit.config import load_config
from neurofit.data.datamodule import NeuralDataModule
from neurofit.training.module import EncoderModule
from neurofit.training.readout_init import init_readouts
cfg = load_config(sys.argv[1], [f"data.path={sys.argv[2]}", "model.core.channels=4", "model.core.layers=1"])
dm = NeuralDataModule.from_config(cfg.data, 0)
module = EncoderModule(cfg, [s.to_dict() for s in dm.prepare_specs()])
init_readouts(module.encoder, dm.recordings)
state = torch.cat([p.detach().flatten() for n, p in module.encoder.named_parameters() if "readouts" in n])
print(hashlib.sha256(state.numpy().tobytes()).hexdigest())
"""


def test_the_data_driven_start_is_the_same_in_every_process(tmp_path):
    # A bit of difference at the start grows into a different fit (same-seed runs ended 0.44-0.66 of the
    # ceiling apart): torch's CPU lstsq returned different bits in different processes (3 digests in 4 runs).
    recs, truths = {}, {}
    for i, n in enumerate((40, 30)):
        recs[f"m{i}"], truths[f"m{i}"] = tiny_recording(f"m{i}", n_neurons=n, seed=i, n_train=200)
    store = write_store(tmp_path / "tiny.zarr", recs, truths)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    digests = {subprocess.run([sys.executable, "-c", _READOUT_START, str(CONFIGS / "default.yaml"), str(store)],
                              capture_output=True, text=True, check=True, env=env).stdout for _ in range(4)}
    assert len(digests) == 1
