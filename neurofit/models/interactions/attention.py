"""Neuron self-attention after the readout: each neuron's drive is corrected by a gated, attention-weighted
mix of the other neurons' drives (optionally also their readout features).

Queries and keys come from each neuron's learned embedding and a Fourier encoding of its cortical position, so
the attention map is a property of the population (which neurons listen to which), the same for every
stimulus; values are per trial. That split is also what makes the layer cheap: the map is computed once per
step, not once per trial, and since the attended values are projected to one number per neuron and head
before they are mixed (the output is a scalar drive correction, and mixing is linear), each trial costs one
scalar per neuron and head instead of a vector.

Global attention runs through ``torch.nn.functional.scaled_dot_product_attention``; on CPU that dispatches to
the flash kernel (online softmax over key blocks, memory linear in N) only when queries, keys and values share
one head dim and no float mask is given, so the trials are packed into the value dim and a learned distance
bias is folded into extra query/key dims instead of being passed as an (N, N) mask:

    -alpha_h |x_i - x_j|^2 = 2 alpha_h x_i.x_j - alpha_h |x_j|^2 - alpha_h |x_i|^2,

and the last term is constant along each query's row, which softmax ignores. Windowed attention (neurons
ordered along a Hilbert curve of their positions, each block attending to itself and its neighbours) holds
its (H, N, 3 L) weights explicitly, linear in N.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from neurofit.models.interactions.base import Interaction, flatten_leading

#: What attended values can be read from (``NeuronAttention(values=...)``).
VALUE_SOURCES = ("drive", "features", "drive+features")

#: Elements of one block of logits in ``attention_map`` (keeps the analysis at ~256 MB of scratch).
_MAP_BLOCK_ELEMENTS = 2**26


def spatial_order(positions_um: torch.Tensor, bits: int = 10) -> torch.Tensor:
    """Order of neurons along a Hilbert curve through their (x, y) cortical positions, ties broken by z.

    Neighbours along the returned order are neighbours on the cortical sheet, which is what windowed
    attention and position-ordered plots need. positions_um: (N, 3) micrometres -> (N,) long permutation.
    """
    xy = positions_um[:, :2].double()
    lo, span = xy.min(0).values, (xy.max(0).values - xy.min(0).values).clamp_min(1e-9)
    side = 1 << bits
    grid = ((xy - lo) / span * (side - 1)).round().long()
    x, y = grid[:, 0].clone(), grid[:, 1].clone()
    index = torch.zeros_like(x)
    s = side // 2
    while s > 0:
        rx, ry = (x & s) > 0, (y & s) > 0
        index += s * s * ((3 * rx.long()) ^ ry.long())
        # Rotate the quadrant so the curve stays continuous (the standard xy -> d Hilbert step).
        flip = ~ry & rx
        x, y = torch.where(flip, side - 1 - x, x), torch.where(flip, side - 1 - y, y)
        x, y = torch.where(~ry, y, x), torch.where(~ry, x, y)
        s //= 2
    by_depth = torch.argsort(positions_um[:, 2], stable=True)
    return by_depth[torch.argsort(index[by_depth], stable=True)]


class FourierPositions(nn.Module):
    """Fixed random Fourier features of cortical position: (N, 3) um -> (N, 2 * n_features), values in [-1, 1].

    Frequencies are drawn once from N(0, 1 / scale_um^2) per axis, so the features resolve structure on the
    scale of ``scale_um``; the learned projections that read them can express smooth functions of position.
    """

    def __init__(self, n_features: int, scale_um: float, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(3, n_features, generator=gen) / scale_um)

    def forward(self, positions_um: torch.Tensor) -> torch.Tensor:
        phase = (positions_um - positions_um.mean(0)) @ self.frequencies
        return torch.cat([phase.cos(), phase.sin()], dim=-1)


class NeuronAttention(Interaction):
    """Multi-head self-attention across the neurons of one recording, residual and gated.

    new_drive_i = drive_i + gate_i * sum_h sum_j a^h_ij v^h_j, with trial values
    v^h_j = w_h . [LayerNorm(features_j), drive_j] + b_h (or from only one of the two, see ``values``) and
    stimulus-independent weights
    a^h_ij = softmax_j(q^h_i . k^h_j / sqrt(d) - alpha_h |x_i - x_j|^2 / scale^2), where q and k are linear
    in [embedding_i, Fourier(position_i)]. The gates start at 0, so at initialisation the layer is exactly
    the plain model.

    Args:
        n_neurons, embedding_dim, feature_dim, positions_um: as in ``Interaction``.
        heads: attention heads H.
        head_dim: dims per head E of queries and keys; the distance bias uses 4 of them, the rest come from the
            learned projections. Keep it a multiple of 8: the CPU flash kernel is ~3x slower for odd sizes.
        fourier_features: random Fourier frequencies of position feeding queries and keys (0: none).
        fourier_scale_um: length scale of those frequencies, micrometres.
        locality: learn a per-head Gaussian distance bias (needs positions).
        locality_scale_um: distance unit of that bias, micrometres.
        window: None for global attention (every neuron attends to all N: O(N^2) time per trial, O(N) memory);
            an int L for windowed attention: neurons are ordered along a Hilbert curve of their positions and
            cut into blocks of L, and each block attends to itself and its two neighbouring blocks (3L keys),
            so time and memory are linear in N.
        values: what the attended values are read from: ``"drive"`` (each neuron's predicted drive: the layer
            is then a learned, signed lateral coupling of drives), ``"features"`` (its readout features) or
            ``"drive+features"``. Drive alone generalised best on the simulator (seed 0: held-out fraction of
            ceiling 0.876 against 0.869 without attention; with features in the values the layer lost to the
            plain model).
        detach_values: stop gradients from flowing through the values into other neurons' drives and features,
            so each neuron's core path and readout learn from its own error only, as in the plain model, and
            the layer learns the coupling on top.
        neuron_gate: one gate per neuron (default) instead of one for the layer. With one shared gate the
            layer opened for all neurons at once early in training and, for some initialisations, slowed
            the readouts' learning (seed 1 on the simulator: validation r 0.48 against 0.56 without
            attention after 4 epochs; per-neuron gates 0.57).

    Forward: drive (B, [T,] N), features (B, [T,] N, C), embedding (N, D) -> drive (B, [T,] N).
    """

    acts_on = "drive"

    def __init__(self, n_neurons: int, embedding_dim: int, feature_dim: int,
                 positions_um: torch.Tensor | None = None, heads: int = 4, head_dim: int = 16,
                 fourier_features: int = 16, fourier_scale_um: float = 200.0, locality: bool = True,
                 locality_scale_um: float = 100.0, window: int | None = None,
                 values: str = "drive", detach_values: bool = False, neuron_gate: bool = True) -> None:
        super().__init__(n_neurons, embedding_dim, feature_dim, positions_um)
        has_pos = positions_um is not None
        self.heads, self.head_dim, self.window = heads, head_dim, window
        self.locality = locality and has_pos
        # Extra dims: 3 for x_i.x_j and 1 whose key entry carries -alpha |x_j|^2.
        self.n_extra = 4 if self.locality else 0
        self.qk_dim = head_dim - self.n_extra
        if self.qk_dim < 1:
            raise ValueError(f"head_dim={head_dim} must exceed the {self.n_extra} bias dims")
        if values not in VALUE_SOURCES:
            raise ValueError(f"values must be one of {VALUE_SOURCES}, got {values!r}")
        if window is not None and window < 1:
            raise ValueError(f"window must be a positive block size, got {window}")
        use_fourier = has_pos and fourier_features > 0
        self.fourier = FourierPositions(fourier_features, fourier_scale_um) if use_fourier else None
        static_in = embedding_dim + (2 * fourier_features if self.fourier is not None else 0)
        self.use_features, self.use_drive = "features" in values, "drive" in values
        self.norm = nn.LayerNorm(feature_dim) if self.use_features else None
        self.qk = nn.Linear(static_in, 2 * heads * self.qk_dim)
        self.value = nn.Linear(feature_dim * self.use_features + self.use_drive, heads)
        self.gate = nn.Parameter(torch.zeros(n_neurons if neuron_gate else ()))
        self.detach_values = detach_values
        # alpha starts at 0.1 per (locality_scale_um)^2: a mild preference for near neighbours.
        init_logit = torch.full((heads,), math.log(math.expm1(0.1)))
        self.locality_logit = nn.Parameter(init_logit) if self.locality else None
        if has_pos:
            pos = self.positions_um
            self.register_buffer("scaled_positions", (pos - pos.mean(0)) / locality_scale_um)
            order = spatial_order(pos)
        else:
            self.register_buffer("scaled_positions", None)
            order = torch.arange(n_neurons)
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))
        if window is not None:
            # Window membership along the curve, -1 for padding: queries (nb, L) and keys (nb, 3L).
            nb = -(-n_neurons // window)
            tail = torch.full((nb * window - n_neurons + window,), -1)
            padded = torch.cat([torch.full((window,), -1), order, tail])
            self.register_buffer("window_queries", padded[window:-window].reshape(nb, window))
            self.register_buffer("window_keys", padded.unfold(0, 3 * window, window))

    def locality_alpha(self) -> torch.Tensor | None:
        """Per-head distance-bias strength alpha_h >= 0 (H,), per (locality_scale_um)^2; None if disabled."""
        return None if self.locality_logit is None else F.softplus(self.locality_logit)

    def _queries_keys(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """embedding (N, D) -> queries, keys (H, N, E), the 1 / sqrt(d) scale already applied."""
        n, h = self.n_neurons, self.heads
        static = embedding if self.fourier is None else torch.cat([embedding, self.fourier(self.positions_um)], -1)
        q, k = self.qk(static).unflatten(-1, (2, h, self.qk_dim)).unbind(1)  # (N, H, qk_dim) each
        q = q * self.qk_dim**-0.5
        alpha = self.locality_alpha()
        if alpha is not None:
            x = self.scaled_positions
            x1 = torch.cat([x, torch.ones(n, 1, device=x.device)], -1)
            q = torch.cat([q, x1[:, None, :].expand(n, h, 4)], -1)
            k = torch.cat([k, 2 * alpha[None, :, None] * x[:, None, :],
                           -(alpha[None, :] * x.pow(2).sum(-1, keepdim=True))[..., None]], -1)
        return q.transpose(0, 1), k.transpose(0, 1)

    def _window_weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Softmax weights of every query block over its 3L window keys: (H, nb, L, 3L), 0 on padding."""
        queries, keys = self.window_queries, self.window_keys
        qb = q[:, queries.clamp_min(0)]  # (H, nb, L, E)
        kw = k[:, keys.clamp_min(0)]  # (H, nb, 3L, E)
        logits = (qb @ kw.transpose(-1, -2)).masked_fill((keys < 0)[None, :, None, :], float("-inf"))
        return logits.softmax(-1)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Queries, keys (H, N, E) and trial values (B, N, H) -> attended values (B, N, H)."""
        b, n, h = v.shape
        if self.window is None:
            # Pack the trials into value vectors of the head dim the flash kernel needs: (G, H, N, E).
            e = q.shape[-1]
            g = -(-b // e)
            # contiguous(): when B is a multiple of E the pad is a no-op and the permuted view would reach the
            # kernel with a strided last dim, which sends SDPA to its quadratic math path.
            packed = F.pad(v.permute(2, 1, 0), (0, g * e - b)).unflatten(-1, (g, e))
            packed = packed.permute(2, 0, 1, 3).contiguous()
            o = F.scaled_dot_product_attention(q.expand(g, -1, -1, -1), k.expand(g, -1, -1, -1), packed, scale=1.0)
            return o.permute(1, 2, 0, 3).flatten(2)[..., :b].permute(2, 1, 0)
        weights = self._window_weights(q, k)  # (H, nb, L, 3L)
        keys = self.window_keys
        vw = v.permute(2, 1, 0)[:, keys.clamp_min(0)] * (keys >= 0)[None, :, :, None]  # (H, nb, 3L, B)
        o = (weights @ vw).flatten(1, 2)  # (H, nb * L, B) along the curve
        return o[:, self.inverse_order].permute(2, 1, 0)

    def value_inputs(self, drive: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """What the value projection reads: drive (B, N), features (B, N, C) -> (B, N, C') with C' = C + 1,
        C or 1 for ``values`` drive+features, features or drive."""
        parts = [self.norm(features)] if self.use_features else []
        if self.use_drive:
            parts.append(drive[..., None])
        return torch.cat(parts, -1)

    def forward(self, drive: torch.Tensor, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        x, _ = flatten_leading(drive, 1)
        f, _ = flatten_leading(features, 2)
        inputs = self.value_inputs(x, f)
        values = self.value(inputs.detach() if self.detach_values else inputs)  # (B', N, H)
        q, k = self._queries_keys(embedding)
        update = self._attend(q, k, values).sum(-1)
        return (x + self.gate * update).reshape(drive.shape)

    @torch.no_grad()
    def drive_coupling(self, embedding: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor | None:
        """The signed lateral coupling the layer applies to the drives, (N, N): C = gate * sum_h w_h A_h with
        w_h the value weight on the drive, so that new_drive = drive + C @ drive + (parts that do not depend on
        the drive: value biases and features). Comparable with a true signed coupling J (row i receives from
        column j). None when ``values`` does not read the drive. embedding (N, D); maps: the per-head
        ``attention_map(embedding)`` (H, N, N) when already computed."""
        if not self.use_drive:
            return None
        if maps is None:
            maps = self.attention_map(embedding)
        return self.gate.reshape(-1, 1) * torch.einsum("h,hij->ij", self.value.weight[:, -1], maps)

    def _map_blocks(self) -> Iterator[torch.Tensor]:
        """Query indices per block of a global ``attention_map``."""
        n = self.n_neurons
        rows = max(1, _MAP_BLOCK_ELEMENTS // (self.heads * n))
        queries = torch.arange(n, device=self.order.device)
        for start in range(0, n, rows):
            yield queries[start:start + rows]

    @torch.no_grad()
    def attention_map(self, embedding: torch.Tensor, heads: bool = True) -> torch.Tensor:
        """Attention weights (H, N, N) per head, or (N, N) averaged over heads, from the embedding (N, D). Row i
        holds how much neuron i attends to each neuron j (rows sum to 1; zero outside the window in windowed
        mode). Queries and keys come from the embedding and positions only, so the weights are the same for
        every trial. Computed in query blocks, for analysis; the map itself is N x N.
        """
        q, k = self._queries_keys(embedding)
        n = self.n_neurons
        out = q.new_zeros(self.heads, n, n)
        if self.window is None:
            for rows in self._map_blocks():
                out[:, rows] = (q[:, rows] @ k.transpose(-1, -2)).softmax(-1)
        else:
            weights = self._window_weights(q, k)
            rows, keys = self.window_queries[:, :, None], self.window_keys[:, None, :]
            valid = (rows >= 0) & (keys >= 0)
            rows, keys = rows.expand_as(valid)[valid], keys.expand_as(valid)[valid]
            out[:, rows, keys] = weights[:, valid]
        return out if heads else out.mean(0)
