"""The interaction layer that conditions on recorded activity (issue #22): leave-one-out, one frame late for
movies, exactly the plain model when not given responses, trained in both modes, and able to learn planted
coupling from residuals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofit.analysis.interaction_scores import auc
from neurofit.models.interactions import ContextAttention, build_interaction
from neurofit.models.interactions.context import residuals

N, D = 12, 8


def _layer(**options) -> ContextAttention:
    torch.manual_seed(0)
    layer = build_interaction("context_attention", n_neurons=N, embedding_dim=D, feature_dim=D,
                              positions_um=torch.rand(N, 3) * 300, **options)
    with torch.no_grad():
        layer.gate.fill_(0.5)
        layer.population.fill_(0.3)
    return layer


def test_a_neuron_never_reads_its_own_response():
    layer = _layer()
    emb = torch.randn(N, D)
    e = torch.randn(5, N, requires_grad=True)
    out = layer(e, emb)
    for i in range(N):
        (grad,) = torch.autograd.grad(out[:, i].sum(), e, retain_graph=True)
        assert torch.all(grad[:, i] == 0) and grad[:, [j for j in range(N) if j != i]].abs().sum() > 0
    weights = layer.attention_map(emb)
    assert weights.shape == (4, N, N) and torch.allclose(weights.sum(-1), torch.ones(4, N))
    assert torch.all(weights.diagonal(dim1=-2, dim2=-1) == 0)
    assert torch.allclose(layer.coupling(emb).diagonal(), torch.zeros(N))


def test_movies_are_read_one_frame_late():
    layer = _layer()
    e = torch.randn(2, 6, N, requires_grad=True)
    out = layer(e, torch.randn(N, D))
    (grad,) = torch.autograd.grad(out[:, 3].sum(), e)
    assert grad[:, 2].abs().sum() > 0 and torch.all(grad[:, [0, 1, 3, 4, 5]] == 0)
    assert torch.all(layer(torch.randn(2, 6, N), torch.randn(N, D))[:, 0] == 0)  # nothing before frame 0


def test_residuals_are_standardised_and_neutral_where_missing():
    resp = torch.tensor([[2.0, float("nan")], [4.0, 1.0]])
    e = residuals(resp, torch.ones(2, 2), torch.tensor([2.0, 1.0]))
    assert e.tolist() == [[0.0, 0.0], [1.0, 0.0]]


def test_the_start_is_the_plain_model_and_bad_options_are_refused():
    layer = build_interaction("context_attention", n_neurons=N, embedding_dim=D, feature_dim=D)
    assert torch.all(layer(torch.randn(3, N), torch.randn(N, D)) == 0)
    with pytest.raises(Exception, match="at least 2 neurons"):
        build_interaction("context_attention", n_neurons=1, embedding_dim=D, feature_dim=D)


def test_the_layer_learns_who_predicts_whom_from_residuals():
    """Residuals with a planted sparse coupling (y = e + W e, W 3 partners per neuron): fitting the layer's
    correction to y - e recovers the coupled pairs."""
    n = 40
    gen = torch.Generator().manual_seed(1)
    w = (torch.rand(n, n, generator=gen) < 3 / n).float() * 0.5
    w.fill_diagonal_(0)
    layer = build_interaction("context_attention", n_neurons=n, embedding_dim=4, feature_dim=4,
                              positions_um=torch.rand(n, 3, generator=gen) * 300)
    emb = torch.randn(n, 4, generator=gen)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(300):
        e = torch.randn(256, n, generator=gen)
        loss = (layer(e, emb) - e @ w.T).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned = layer.coupling(emb).numpy()
    off = ~np.eye(n, dtype=bool)
    assert auc(learned[off], w.numpy()[off] > 0) > 0.75  # measured 0.84 (300 steps)
