"""Neuron self-attention after the readout: each neuron's drive is corrected by a gated, attention-weighted
mix of the other neurons' features and drives.

Queries and keys come from the neuron's learned embedding, a Fourier encoding of its cortical position and
the core features sampled for the current trial (so the maps depend on the stimulus). All attention runs
through ``torch.nn.functional.scaled_dot_product_attention``; on CPU that dispatches to the flash kernel
(online softmax over key blocks, memory linear in N) only when queries, keys and values share one head dim
and no float mask is given, so a learned distance bias is folded into extra query/key dims instead of being
passed as an (N, N) mask:

    -alpha_h |x_i - x_j|^2 = 2 alpha_h x_i.x_j - alpha_h |x_j|^2 - alpha_h |x_i|^2,

and the last term is constant along each query's row, which softmax ignores.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from neurofit.models.interactions.base import Interaction, flatten_leading

#: Logit given to padding keys in windowed attention: exp(-PAD) is exactly 0 in float32.
_PAD_LOGIT = 1.0e4
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

    new_drive_i = drive_i + gate * w_out . concat_h sum_j a^h_ij v^h_j, with
    a^h_ij = softmax_j(q^h_i . k^h_j / sqrt(d) - alpha_h |x_i - x_j|^2 / scale^2). ``gate`` starts at 0, so at
    initialisation the layer is exactly the plain model.

    Args:
        n_neurons, embedding_dim, feature_dim, positions_um: as in ``Interaction``.
        heads: attention heads H.
        head_dim: dims per head E of queries, keys and values; the distance bias and window padding use up to
            4 of them, the rest come from the learned projections. Keep it a multiple of 8: the CPU flash
            kernel is ~3x slower for odd sizes.
        fourier_features: random Fourier frequencies of position feeding queries and keys (0: none).
        fourier_scale_um: length scale of those frequencies, micrometres.
        locality: learn a per-head Gaussian distance bias (needs positions).
        locality_scale_um: distance unit of that bias, micrometres.
        window: None for global attention (every neuron attends to all N); an int L for windowed attention:
            neurons are ordered along a Hilbert curve of their positions and cut into blocks of L, and each
            block attends to itself and its two neighbouring blocks (3L keys), so cost is linear in N.

    Forward: drive (B, [T,] N), features (B, [T,] N, C), embedding (N, D) -> drive (B, [T,] N).
    """

    acts_on = "drive"

    def __init__(self, n_neurons: int, embedding_dim: int, feature_dim: int,
                 positions_um: torch.Tensor | None = None, heads: int = 4, head_dim: int = 16,
                 fourier_features: int = 16, fourier_scale_um: float = 200.0, locality: bool = True,
                 locality_scale_um: float = 100.0, window: int | None = None) -> None:
        super().__init__(n_neurons, embedding_dim, feature_dim, positions_um)
        has_pos = positions_um is not None
        self.heads, self.head_dim, self.window = heads, head_dim, window
        self.locality = locality and has_pos
        # Extra dims: 3 for x_i.x_j and 1 whose key entry carries -alpha |x_j|^2 or the padding logit.
        self.n_extra = 4 if self.locality else (1 if window else 0)
        self.qk_dim = head_dim - self.n_extra
        if self.qk_dim < 1:
            raise ValueError(f"head_dim={head_dim} must exceed the {self.n_extra} bias dims")
        if window is not None and window < 1:
            raise ValueError(f"window must be a positive block size, got {window}")
        use_fourier = has_pos and fourier_features > 0
        self.fourier = FourierPositions(fourier_features, fourier_scale_um) if use_fourier else None
        static_in = embedding_dim + (2 * fourier_features if self.fourier is not None else 0)
        self.norm = nn.LayerNorm(feature_dim)
        self.qk_features = nn.Linear(feature_dim, 2 * heads * self.qk_dim, bias=False)
        self.qk_static = nn.Linear(static_in, 2 * heads * self.qk_dim)
        self.value = nn.Linear(feature_dim + 1, heads * head_dim)
        self.out = nn.Linear(heads * head_dim, 1)
        self.gate = nn.Parameter(torch.zeros(()))
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

    def locality_alpha(self) -> torch.Tensor | None:
        """Per-head distance-bias strength alpha_h >= 0 (H,), per (locality_scale_um)^2; None if disabled."""
        return None if self.locality_logit is None else F.softplus(self.locality_logit)

    def _bias_dims(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Query and key extra dims (N, H, n_extra) whose dot product is the distance bias (up to a
        per-query constant); None when there are none."""
        n, h = self.n_neurons, self.heads
        alpha = self.locality_alpha()
        if alpha is not None:
            x = self.scaled_positions
            q = torch.cat([x, torch.ones(n, 1, device=x.device)], -1)[:, None, :].expand(n, h, 4)
            k = torch.cat([2 * alpha[None, :, None] * x[:, None, :],
                           -(alpha[None, :] * x.pow(2).sum(-1, keepdim=True))[..., None]], -1)
            return q, k
        if self.n_extra:
            return self.gate.new_ones(n, h, 1), self.gate.new_zeros(n, h, 1)
        return None

    def _queries_keys(self, features: torch.Tensor, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, N, C), embedding (N, D) -> queries, keys (B, H, N, E), scale already applied."""
        b, n, _ = features.shape
        static = embedding if self.fourier is None else torch.cat([embedding, self.fourier(self.positions_um)], -1)
        qk = self.qk_features(self.norm(features)) + self.qk_static(static)
        q, k = qk.unflatten(-1, (2, self.heads, self.qk_dim)).unbind(2)  # (B, N, H, qk_dim) each
        q = q * self.qk_dim**-0.5
        extra = self._bias_dims()
        if extra is not None:
            q = torch.cat([q, extra[0].expand(b, -1, -1, -1)], -1)
            k = torch.cat([k, extra[1].expand(b, -1, -1, -1)], -1)
        return q.transpose(1, 2), k.transpose(1, 2)

    def _values(self, drive: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """drive (B, N), features (B, N, C) -> values (B, H, N, E)."""
        v = self.value(torch.cat([self.norm(features), drive[..., None]], -1))
        return v.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, H, N, E) each -> attention output (B, H, N, E), global or windowed."""
        if self.window is None:
            return F.scaled_dot_product_attention(q, k, v, scale=1.0)
        b, h, n, e = q.shape
        L = self.window
        nb = -(-n // L)
        pad = nb * L - n
        q, k, v = (t.index_select(2, self.order) for t in (q, k, v))
        qb = F.pad(q, (0, 0, 0, pad)).reshape(b, h * nb, L, e)
        pad_key = q.new_zeros(e)
        pad_key[-1] = -_PAD_LOGIT
        k = torch.cat([pad_key.expand(b, h, L, e), k, pad_key.expand(b, h, pad + L, e)], 2)
        v = F.pad(v, (0, 0, L, pad + L))
        # unfold gives (B, H, nb, E, 3L): the block itself and one block either side along the curve.
        kw = k.unfold(2, 3 * L, L).transpose(-1, -2).reshape(b, h * nb, 3 * L, e)
        vw = v.unfold(2, 3 * L, L).transpose(-1, -2).reshape(b, h * nb, 3 * L, e)
        o = F.scaled_dot_product_attention(qb, kw, vw, scale=1.0).reshape(b, h, nb * L, e)[:, :, :n]
        return o.index_select(2, self.inverse_order)

    def forward(self, drive: torch.Tensor, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_leading(drive, 1)
        f, _ = flatten_leading(features, 2)
        q, k = self._queries_keys(f, embedding)
        o = self._attend(q, k, self._values(x, f))  # (B, H, N, E)
        update = self.out(o.transpose(1, 2).flatten(2)).squeeze(-1)
        return (x + self.gate * update).reshape(drive.shape)

    def _map_blocks(self, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(query indices, key indices) per block of ``attention_map``, in original neuron order."""
        n = self.n_neurons
        if self.window is None:
            keys = torch.arange(n, device=self.order.device)
            rows = max(1, _MAP_BLOCK_ELEMENTS // (batch * self.heads * n))
            for start in range(0, n, rows):
                yield keys[start:start + rows], keys
            return
        L = self.window
        for start in range(0, n, L):
            yield self.order[start:start + L], self.order[max(0, start - L):start + 2 * L]

    @torch.no_grad()
    def attention_map(self, drive: torch.Tensor, features: torch.Tensor, embedding: torch.Tensor,
                      heads: bool = True) -> torch.Tensor:
        """Attention weights averaged over the batch (and time): (H, N, N) per head, or (N, N) averaged
        over heads. Row i holds how much neuron i attends to each neuron j (rows sum to 1; zero outside
        the window in windowed mode). Computed in query blocks, for analysis; the map itself is N x N.

        drive (B, [T,] N) is unused by the weights but accepted so callers pass the same triple as forward.
        """
        f, _ = flatten_leading(features, 2)
        q, k = self._queries_keys(f, embedding)
        n = self.n_neurons
        out = q.new_zeros(self.heads, n, n)
        for rows, keys in self._map_blocks(f.shape[0]):
            logits = torch.einsum("bhqe,bhke->bhqk", q[:, :, rows], k[:, :, keys])
            out[:, rows[:, None], keys[None, :]] = logits.softmax(-1).mean(0)
        return out if heads else out.mean(0)
