"""CTRNN core: dynamics, Dale's law after training, masks, plasticity, multi-area structure, regulariser."""

from __future__ import annotations

import math

import pytest
import torch

from neurofit.errors import ConfigError
from neurofit.models import constraints
from neurofit.models.cores.ctrnn import CTRNN, CTRNNCell, MultiArea, song_yang_penalty


def _train(net: CTRNN, steps: int = 60) -> list[float]:
    """Fit a toy target (the running mean of the input) with Adam and the Song-Yang regulariser."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 20, net.cell.input_size, generator=gen)
    target = torch.cumsum(x[..., :1], dim=1) / torch.arange(1, 21)[None, :, None]
    readout = torch.nn.Linear(len(net.readout_index), 1)
    opt = torch.optim.Adam([*net.parameters(), *readout.parameters()], lr=0.02)
    losses = []
    for _ in range(steps):
        rates, _ = net(x)
        loss = (readout(net.readout(rates)) - target).pow(2).mean()
        loss = loss + song_yang_penalty(rates, net.cell, rate_l2=1e-3, weight_l2=1e-3, weight_l1=1e-4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_euler_step_matches_the_equation():
    torch.manual_seed(0)
    cell = CTRNNCell(3, 5, dt=2.0, tau=[4.0, 8.0, 10.0, 20.0, 40.0], activation="tanh")
    h, x = torch.randn(2, 5), torch.randn(2, 3)
    h_next, r_next = cell(x, h)
    drive = torch.tanh(h) @ cell.recurrent_weight().T + x @ cell.input_weight().T + cell.bias
    alpha = 2.0 / torch.tensor([4.0, 8.0, 10.0, 20.0, 40.0])
    torch.testing.assert_close(h_next, h + alpha * (drive - h))
    torch.testing.assert_close(r_next, torch.tanh(h_next))


def test_dale_signs_hold_for_every_weight_after_training():
    torch.manual_seed(0)
    net = CTRNN(3, 40, dt=10.0, tau=100.0, activation="relu", e_fraction=0.8, g=1.2,
                generator=torch.Generator().manual_seed(0))
    signs = net.cell.signs
    assert int((signs > 0).sum()) == 32 and int((signs < 0).sum()) == 8  # 4:1
    losses = _train(net, steps=25)
    assert losses[-1] < losses[0]
    w = net.cell.recurrent_weight().detach()
    # Every outgoing weight of an E unit is >= 0, of an I unit <= 0; and most are non-zero (no collapse).
    assert bool((w * signs[None, :] >= 0).all())
    assert float((w != 0).float().mean()) > 0.9
    assert float(net.cell.weight_hh.detach().sub(net.cell.weight_hh_init).abs().max()) > 0  # it did learn


def test_spectral_radius_initialisation():
    cell = CTRNNCell(2, 200, g=1.5, generator=torch.Generator().manual_seed(0))
    assert constraints.spectral_radius(cell.recurrent_weight().detach()) == pytest.approx(1.5, rel=1e-4)
    dale = CTRNNCell(2, 200, g=0.9, e_fraction=0.8, generator=torch.Generator().manual_seed(0))
    assert constraints.spectral_radius(dale.recurrent_weight().detach()) == pytest.approx(0.9, rel=1e-4)


def test_masks_and_frozen_connections_survive_training():
    gen = torch.Generator().manual_seed(0)
    mask = constraints.random_mask((30, 30), 0.3, gen)
    plastic = constraints.random_mask((30, 30), 0.5, gen)
    net = CTRNN(3, 30, recurrent_mask=mask, plasticity_mask=plastic, activation="tanh", generator=gen)
    before = net.cell.recurrent_weight().detach().clone()
    _train(net, steps=20)
    after = net.cell.recurrent_weight().detach()
    assert bool((after[~mask] == 0).all())
    torch.testing.assert_close(after[~plastic], before[~plastic])  # frozen entries never move
    assert float((after[plastic & mask] - before[plastic & mask]).abs().max()) > 1e-3


def test_multi_area_blocks_inputs_and_readout():
    chain = [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]]  # area 0 -> 1 -> 2
    areas = MultiArea(sizes=[20, 10, 10], within_density=0.8, between_density=chain, input_areas=[0],
                      readout_areas=[2])
    net = CTRNN(4, 40, multi_area=areas, generator=torch.Generator().manual_seed(0))
    w = net.cell.recurrent_weight().detach()
    assert bool((w[:20, 20:] == 0).all())  # area 0 receives from nothing else
    assert bool((w[20:30, 30:] == 0).all())  # area 1 only from areas 0 and 1
    assert bool((w[20:30, :20] != 0).any()) and bool((w[30:, 20:30] != 0).any())  # the feed-forward chain exists
    assert bool((net.cell.input_weight()[20:] == 0).all())
    assert net.readout(torch.zeros(1, 40)).shape == (1, 10)
    rates, h = net(torch.randn(2, 5, 4))
    assert rates.shape == (2, 5, 40) and h.shape == (2, 40)


def test_noise_and_regulariser():
    cell = CTRNNCell(2, 10, dt=1.0, tau=10.0, preact_noise=0.5, postact_noise=0.1)
    h, x = torch.zeros(500, 10), torch.zeros(500, 2)
    with torch.no_grad():
        h_next, _ = cell(x, h)
    # Pre-activation noise has standard deviation sqrt(2 alpha) sigma = sqrt(0.2) * 0.5.
    assert float(h_next.std()) == pytest.approx(math.sqrt(0.2) * 0.5, rel=0.1)
    with torch.no_grad():
        h_eval, _ = cell.eval()(x, h)
    assert float(h_eval.abs().max()) == 0.0  # evaluation is deterministic
    quiet = CTRNNCell(2, 10, activation="tanh")
    rates = torch.full((1, 3, 10), 0.5)
    penalty = song_yang_penalty(rates, quiet, rate_l2=2.0)
    assert float(penalty.detach()) == pytest.approx(0.5)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown activation"):
        CTRNNCell(2, 4, activation="swish")
    with pytest.raises(ConfigError, match="mask has shape"):
        CTRNNCell(2, 4, recurrent_mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="positive"):
        CTRNNCell(2, 4, tau=0.0)
