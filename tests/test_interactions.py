"""Interaction layers: neuron self-attention and divisive normalisation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from neurofit.config import Context, InteractionSpec
from neurofit.errors import ConfigError
from neurofit.models.interactions import (
    DivisiveNormalization,
    InteractionStack,
    NeuronAttention,
    build_interaction,
    build_interactions,
)
from neurofit.models.interactions.attention import spatial_order

N, C, D, B = 200, 8, 6, 3


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"positions": torch.rand(N, 3, generator=gen) * torch.tensor([600.0, 600.0, 100.0]),
            "drive": torch.randn(B, N, generator=gen), "features": torch.randn(B, N, C, generator=gen),
            "embedding": torch.randn(N, D, generator=gen)}


def _attention(inputs, gate: float = 1.0, **options) -> NeuronAttention:
    torch.manual_seed(1)
    layer = build_interaction("attention", n_neurons=N, embedding_dim=D, feature_dim=C,
                              positions_um=options.pop("positions", inputs["positions"]), heads=2, head_dim=8,
                              **options)
    with torch.no_grad():
        layer.gate.fill_(gate)
    return layer


def _naive_maps(layer: NeuronAttention, inputs) -> torch.Tensor:
    """(H, N, N) softmax maps from the layer's queries/keys, windows as an explicit mask."""
    q, k = layer._queries_keys(inputs["embedding"])
    logits = q @ k.transpose(-1, -2)
    if layer.window is not None:
        block = torch.empty(N, dtype=torch.long)
        block[layer.order] = torch.arange(N) // layer.window
        logits = logits.masked_fill((block[:, None] - block[None, :]).abs() > 1, float("-inf"))
    return logits.softmax(-1)


def _naive_forward(layer: NeuronAttention, drive, features, embedding) -> torch.Tensor:
    """The layer's formula written out: drive + gate * sum_h A_h @ v_h with v_h = w_h . [LN(f), drive] + b_h,
    where ``values`` drops the feature or the drive part."""
    maps = _naive_maps(layer, {"embedding": embedding})
    w, b = layer.value.weight, layer.value.bias  # (H, C + 1 | C | 1), (H,)
    values = b.expand(*drive.shape, -1)
    if layer.use_features:
        normed = torch.nn.functional.layer_norm(features, (C,), layer.norm.weight, layer.norm.bias)
        values = values + normed @ w[:, :C].T
    if layer.use_drive:
        values = values + drive[..., None] * w[:, -1]
    update = torch.einsum("hij,bjh->bi", maps, values)
    return drive + layer.gate * update


ATTENTION_VARIANTS = [{}, {"window": 32}, {"positions": None}, {"positions": None, "window": 32},
                      {"locality": False, "fourier_features": 0}, {"window": 7}, {"values": "features"},
                      {"values": "drive+features", "window": 32}, {"neuron_gate": False}]


@pytest.mark.parametrize("options", ATTENTION_VARIANTS)
def test_attention_is_identity_at_init_for_static_and_video(inputs, options):
    layer = _attention(inputs, gate=0.0, **options)
    assert torch.equal(layer(inputs["drive"], inputs["features"], inputs["embedding"]), inputs["drive"])
    video = torch.randn(B, 5, N)
    out = layer(video, torch.randn(B, 5, N, C), inputs["embedding"])
    assert out.shape == (B, 5, N) and torch.equal(out, video)


@pytest.mark.parametrize("batch", [B, 40])  # 40 trials: more than one packed value group of head_dim 8
@pytest.mark.parametrize("options", ATTENTION_VARIANTS)
def test_attention_output_equals_naive_softmax_attention(inputs, options, batch):
    layer = _attention(inputs, gate=0.7, **options)
    gen = torch.Generator().manual_seed(3)
    drive, feats = torch.randn(batch, N, generator=gen), torch.randn(batch, N, C, generator=gen)
    expected = _naive_forward(layer, drive, feats, inputs["embedding"])
    torch.testing.assert_close(layer(drive, feats, inputs["embedding"]), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("options", ATTENTION_VARIANTS)
def test_blockwise_attention_map_equals_naive_map(inputs, options):
    layer = _attention(inputs, **options)
    naive = _naive_maps(layer, inputs)
    per_head = layer.attention_map(inputs["embedding"])
    torch.testing.assert_close(per_head, naive, atol=1e-6, rtol=1e-5)
    averaged = layer.attention_map(inputs["embedding"], heads=False)
    torch.testing.assert_close(averaged, naive.mean(0), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(averaged.sum(-1), torch.ones(N))


@pytest.mark.parametrize("options", [{}, {"window": 32}, {"values": "drive+features"}])
def test_drive_coupling_is_the_part_of_the_update_linear_in_the_drive(inputs, options):
    layer = _attention(inputs, gate=0.7, **options)
    coupling = layer.drive_coupling(inputs["embedding"])
    drive, feats, emb = inputs["drive"], inputs["features"], inputs["embedding"]
    linear = layer(drive, feats, emb) - layer(torch.zeros_like(drive), feats, emb) - drive
    torch.testing.assert_close(linear, drive @ coupling.T, atol=1e-5, rtol=1e-4)
    assert _attention(inputs, values="features").drive_coupling(emb) is None


@pytest.mark.parametrize("detach", [False, True])
def test_detached_values_keep_each_neurons_gradient_to_itself(inputs, detach):
    layer = _attention(inputs, gate=0.7, detach_values=detach)
    drive = inputs["drive"].clone().requires_grad_()
    layer(drive, inputs["features"], inputs["embedding"])[:, 0].sum().backward()
    assert torch.equal(drive.grad[:, 0], torch.ones(B)) if detach else drive.grad[:, 0].ne(1).all()
    assert (drive.grad[:, 1:].abs().max() == 0) == detach
    assert layer.value.weight.grad.abs().sum() > 0  # the coupling itself still learns


def test_attention_maps_are_a_property_of_the_population_not_the_stimulus(inputs):
    layer = _attention(inputs, gate=0.7)
    emb = inputs["embedding"]
    coupling = layer.drive_coupling(emb)  # from attention_map(embedding): no stimulus enters
    for seed in (5, 6):  # the forward pass mixes any stimulus's drives with that same map
        gen = torch.Generator().manual_seed(seed)
        drive = torch.randn(inputs["drive"].shape, generator=gen)
        feats = torch.randn(inputs["features"].shape, generator=gen)
        linear = layer(drive, feats, emb) - layer(torch.zeros_like(drive), feats, emb) - drive
        torch.testing.assert_close(linear, drive @ coupling.T, atol=1e-5, rtol=1e-4)
    shuffled = emb[torch.randperm(N, generator=torch.Generator().manual_seed(6))]
    assert (layer.attention_map(emb, heads=False) - layer.attention_map(shuffled, heads=False)).abs().max() > 1e-3


def test_folded_locality_bias_is_a_gaussian_of_distance(inputs):
    """With the learned query/key projection zeroed, the logits are exactly -alpha |x_i - x_j|^2 (up to
    a per-row constant), so each row of the map is a normalised Gaussian of cortical distance."""
    layer = _attention(inputs)
    with torch.no_grad():
        layer.qk.weight.zero_()
        layer.qk.bias.zero_()
        layer.locality_logit.copy_(torch.tensor([0.0, 1.0]))
    x = layer.scaled_positions
    logits = -layer.locality_alpha()[:, None, None] * torch.cdist(x, x).pow(2)
    maps = layer.attention_map(inputs["embedding"])
    torch.testing.assert_close(maps, logits.softmax(-1), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("batch", [B, 8, 16, 40])  # multiples of head_dim 8 pack without padding
def test_global_attention_runs_on_the_flash_kernel_not_the_quadratic_math_path(inputs, batch):
    layer = _attention(inputs)
    drive, feats = torch.randn(batch, N), torch.randn(batch, N, C)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        layer(drive, feats, inputs["embedding"]).sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu_backward" in names
    assert "aten::_scaled_dot_product_attention_math" not in names


@pytest.mark.parametrize("window", [None, 32])
def test_attention_gradients_reach_every_parameter(inputs, window):
    layer = _attention(inputs, gate=0.5, window=window)
    layer(inputs["drive"], inputs["features"], inputs["embedding"]).pow(2).sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_spatial_order_is_a_hilbert_curve_through_the_sheet():
    """On a full 16 x 16 grid every step along the order moves to a grid neighbour."""
    grid = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij"), -1).reshape(-1, 2)
    shuffle = torch.randperm(256, generator=torch.Generator().manual_seed(0))
    pos = torch.cat([grid, torch.zeros(256, 1)], 1)[shuffle]
    order = spatial_order(pos, bits=4)
    assert sorted(order.tolist()) == list(range(256))
    steps = (pos[order[1:], :2] - pos[order[:-1], :2]).abs().sum(1)
    assert torch.equal(steps, torch.ones(255))


_MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys, torch
    from neurofit.models.interactions import build_interaction
    n, b, window = int(sys.argv[1]), int(sys.argv[2]), None if sys.argv[3] == "none" else int(sys.argv[3])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layer = build_interaction("attention", n_neurons=n, embedding_dim=64, feature_dim=64,
                              positions_um=torch.rand(n, 3) * 1000, window=window)
    with torch.no_grad():
        layer.gate.fill_(0.1)
    drive, feats = torch.randn(b, n, requires_grad=True), torch.randn(b, n, 64, requires_grad=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    layer(drive, feats, torch.randn(n, 64)).sum().backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"extra_mb": (peak - before) / 1024, "finite": bool(torch.isfinite(drive.grad).all())}))
""")


def _extra_memory_mb(n: int, batch: int, window: int | None) -> float:
    proc = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(n), str(batch), str(window or "none")],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["finite"]
    return result["extra_mb"]


@pytest.mark.parametrize("batch", [1, 16])  # 16 trials fill one packed value group exactly
def test_global_attention_at_10000_neurons_never_holds_the_n_by_n_map(batch):
    """Small batches keep this fast: the 4 heads' N x N float32 maps alone would take 4 * 10^8 * 4 bytes =
    1.6 GB (measured here at batch 1: ~40 MB above the inputs, and ~17 / 26 / 40 MB at N = 2,500 / 5,000 /
    10,000; at batch 16, before the packed values were made contiguous, 2.9 GB at N = 8,000)."""
    assert _extra_memory_mb(10000, batch, None) < 300


@pytest.mark.slow
@pytest.mark.parametrize("window", [None, 128])
def test_attention_trains_with_10000_neurons_batch_64(window):
    """Forward + backward at N = 10,000, batch 64 fits comfortably (quadratic would need 100 GB)."""
    assert _extra_memory_mb(10000, 64, window) < 8000


def _normalization(inputs, **options) -> DivisiveNormalization:
    torch.manual_seed(2)
    options.setdefault("pool_gain", 1.0)
    return build_interaction("normalization", n_neurons=N, embedding_dim=D, feature_dim=C,
                             positions_um=inputs["positions"], **options)


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_normalization_fixed_point_satisfies_the_equation(inputs, exponent):
    layer = _normalization(inputs, exponent=exponent)
    u = inputs["drive"].abs() * 3
    r = layer(u, inputs["features"], inputs["embedding"])
    p, sp = layer.exponent(), layer.sigma().pow(layer.exponent())
    w = layer.pool_matrix(inputs["embedding"])
    rhs = u.pow(p) / (sp + r.pow(p) @ w.T)
    torch.testing.assert_close(r, rhs, atol=1e-5, rtol=1e-4)
    assert (w >= 0).all() and (r > 0).all()
    assert (r < u.pow(p) / sp).all()  # the pool only ever divides


def test_normalization_is_stable_and_differentiable_at_extremes(inputs):
    for exponent in (1.0, 3.0):
        layer = _normalization(inputs, exponent=exponent, pool_gain=5.0)
        for u in (torch.zeros(B, N), torch.full((B, N), 1e12), torch.rand(B, N) * 50):
            u = u.requires_grad_(True)
            r = layer(u, inputs["features"], inputs["embedding"])
            r.sum().backward()
            assert torch.isfinite(r).all() and torch.isfinite(u.grad).all()
            assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)
            layer.zero_grad()


def test_normalization_gradients_match_finite_differences(inputs):
    n = 20
    layer = DivisiveNormalization(n, D, C, inputs["positions"][:n], pool_gain=1.0, exponent=2.0,
                                  iterations=60, grad_iterations=None).double()
    u = (inputs["drive"].abs()[:1, :n] + 0.1).double().requires_grad_(True)
    emb = inputs["embedding"][:n].double()
    assert torch.autograd.gradcheck(lambda x: layer(x, None, emb), (u,), atol=1e-6)


def test_normalization_truncated_gradients_stay_close_to_exact(inputs):
    exact = _normalization(inputs, exponent=2.0, pool_gain=1.0, grad_iterations=None)
    truncated = _normalization(inputs, exponent=2.0, pool_gain=1.0)
    truncated.load_state_dict(exact.state_dict())
    u = inputs["drive"].abs() + 0.1
    grads = []
    for layer in (exact, truncated):
        layer.zero_grad()
        layer(u, inputs["features"], inputs["embedding"]).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in layer.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=0.0, atol=0.02 * float(grads[0].abs().max()))


def test_normalization_over_time_starts_at_the_static_solution_and_adapts(inputs):
    layer = _normalization(inputs, exponent=2.0, tau_pool_frames=2.0, tau_adapt_frames=3.0)
    u = inputs["drive"].abs() + 0.5
    static = layer(u, inputs["features"], inputs["embedding"])
    constant = layer(u[:, None].expand(B, 8, N), inputs["features"], inputs["embedding"])
    assert constant.shape == (B, 8, N)
    torch.testing.assert_close(constant, static[:, None].expand(B, 8, N), atol=1e-5, rtol=1e-4)
    step = torch.cat([u[:, None].expand(B, 3, N), 2 * u[:, None].expand(B, 30, N)], 1)
    r = layer(step, inputs["features"], inputs["embedding"])
    # After a step up the response overshoots, then adapts down towards the new steady state.
    assert (r[:, 3] > r[:, -1]).float().mean() > 0.95
    torch.testing.assert_close(r[:, -1], layer(2 * u, inputs["features"], inputs["embedding"]),
                               atol=1e-3, rtol=1e-3)


def test_normalization_pools_without_positions_use_embedding_similarity(inputs):
    layer = DivisiveNormalization(N, D, C, None, rank=4)
    pools = layer.pool_matrix(inputs["embedding"])
    assert pools.shape == (N, N) and (pools >= 0).all()
    own = torch.diag(torch.nn.functional.softplus(layer.adapt_raw.detach()))
    assert torch.linalg.matrix_rank(pools - own).item() <= 4  # low rank, not a dense N x N parameter
    with pytest.raises(ConfigError):
        build_interaction("normalization", n_neurons=N, embedding_dim=D, feature_dim=C, rank=0)


def test_registry_builds_stacks_and_rejects_unknown_names(inputs):
    dims = {"n_neurons": N, "embedding_dim": D, "feature_dim": C, "positions_um": inputs["positions"]}
    stack = build_interaction("attention+normalization", **dims, attention={"heads": 2}, normalization={"rank": 2})
    assert isinstance(stack, InteractionStack)
    assert isinstance(stack.find(NeuronAttention), NeuronAttention)
    normalization = InteractionSpec.parse({"name": "normalization", "rank": 2}, Context("t", {}), ())
    listed = build_interactions([InteractionSpec.default("attention"), normalization], **dims)
    drive, feats, emb = inputs["drive"], inputs["features"], inputs["embedding"]
    assert torch.equal(listed.before_output(drive, feats, emb), drive)  # attention gate starts at 0
    rate = torch.nn.functional.elu(drive) + 1
    out = listed.after_output(rate, feats, emb)
    assert out.shape == rate.shape and torch.isfinite(out).all()
    assert listed.regularizer().item() > 0
    assert torch.equal(build_interaction("none", **dims)(drive, feats, emb), drive)
    with pytest.raises(ConfigError, match="unknown interaction"):
        build_interaction("transformer", **dims)
    with pytest.raises(ConfigError, match="unknown interaction"):
        InteractionSpec.parse({"heads": 2}, Context("t", {}), ("model", "interactions", "0"))
    with pytest.raises(ConfigError, match="attention"):
        build_interaction("attention", **dims, n_heads=3)
    with pytest.raises(ConfigError, match="values must be one of"):
        build_interaction("attention", **dims, values="rates")
    with pytest.raises(ConfigError, match="per layer"):
        build_interaction("attention+normalization", **dims, heads=2)


def test_normalization_exponent_learns_from_its_default_start(inputs):
    """p starts at 1 inside its range, so a loss that wants stronger normalisation moves it."""
    layer = _normalization(inputs)
    assert abs(float(layer.exponent()) - 1.0) < 1e-5
    u = inputs["drive"].abs() + 0.5
    layer(u, inputs["features"], inputs["embedding"]).sum().backward()
    assert abs(float(layer.exponent_logit.grad)) > 1e-2
