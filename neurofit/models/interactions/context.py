"""Attention that conditions on recorded activity: who predicts whom beyond the stimulus.

A stimulus-only model cannot tell a neuron's receptive field from what coupled neighbours add when the
coupling acts on stimulus-driven activity; what coupling leaves behind is shared trial-to-trial variability
(Pillow et al. 2008, coupled GLMs). This layer reads it: its values are the other neurons' recorded
responses on the same trial (movies: the previous frame) minus the model's own stimulus-only prediction of
them, and the target neuron itself is masked out (leave-one-out), so a neuron's prediction uses only the
others' recorded activity. With it the encoder has two modes (``Encoder.forward(..., responses=...)``):
stimulus-only prediction (no responses: the layer is skipped, exactly the plain model) and prediction with
population context.

    new_drive_i = drive_i + gate_i sum_h w_h sum_{j != i} a^h_ij e_j + beta_i mean_{j != i} e_j,
    e_j = recorded_j / std_j - rate_j (stimulus-only, detached; non-finite recorded entries give e_j = 0),

with stimulus-independent softmax weights a^h_ij over j != i from queries and keys that are linear in
[embedding_i (detached, so this layer cannot reshape the stimulus path), Fourier(position_i)] plus free
per-neuron vectors, and an optional learned distance bias. The population term beta (the mean residual of
all others) absorbs fluctuations every neuron shares (a gain), so the attention weights are left to
pairwise structure. Gates and beta start at 0: at initialisation the layer predicts what the plain model does.
The map is held explicitly, (H, N, N): time and memory O(N^2) per trial batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from neurofit.models.interactions.attention import FourierPositions
from neurofit.models.interactions.base import Interaction, flatten_leading


class ContextAttention(Interaction):
    """Leave-one-out attention over the other neurons' recorded residuals (``acts_on = "context"``).

    Args:
        n_neurons, embedding_dim, feature_dim, positions_um: as in ``Interaction`` (features are not used).
        heads: attention heads H.
        head_dim: dims per head E of queries and keys.
        neuron_dim: dims of the free per-neuron query/key vectors (0: none; queries and keys then come from
            the readout embedding and position only).
        fourier_features: random Fourier frequencies of position feeding queries and keys (0: none).
        fourier_scale_um: length scale of those frequencies, micrometres.
        locality: learn a per-head Gaussian distance bias -alpha_h |x_i - x_j|^2 / scale^2 (needs positions).
        locality_scale_um: distance unit of that bias, micrometres.
        locality_init: initial alpha_h.
        population_term: add the per-neuron weight beta on the mean residual of all other neurons.

    Forward: residual e (B, [T,] N) in normalised response units (``residuals``), embedding (N, D) ->
    drive correction (B, [T,] N). Movies are read one frame late: frame t is corrected by frame t - 1.
    """

    acts_on = "context"

    def __init__(self, n_neurons: int, embedding_dim: int, feature_dim: int,
                 positions_um: torch.Tensor | None = None, heads: int = 4, head_dim: int = 16,
                 neuron_dim: int = 16, fourier_features: int = 16, fourier_scale_um: float = 200.0,
                 locality: bool = False, locality_scale_um: float = 100.0, locality_init: float = 0.05,
                 population_term: bool = True) -> None:
        super().__init__(n_neurons, embedding_dim, feature_dim, positions_um)
        if n_neurons < 2:
            raise ValueError("context attention needs at least 2 neurons (each one reads the others)")
        if heads < 1 or head_dim < 1:
            raise ValueError(f"heads={heads} and head_dim={head_dim} must be positive")
        if locality_init <= 0:
            raise ValueError(f"locality_init must be > 0, got {locality_init}")
        has_pos = positions_um is not None
        self.heads, self.head_dim = heads, head_dim
        use_fourier = has_pos and fourier_features > 0
        self.fourier = FourierPositions(fourier_features, fourier_scale_um) if use_fourier else None
        static_in = embedding_dim + (2 * fourier_features if self.fourier is not None else 0)
        self.qk = nn.Linear(static_in, 2 * heads * head_dim)
        gen = torch.Generator().manual_seed(0)
        # Small random start: a zero start would give every neuron the same keys, and no gradient to split them.
        self.neuron_qk = (nn.Parameter(0.1 * torch.randn(n_neurons, neuron_dim, generator=gen))
                          if neuron_dim else None)
        self.neuron_proj = nn.Linear(neuron_dim, 2 * heads * head_dim, bias=False) if neuron_dim else None
        self.value_weight = nn.Parameter(torch.ones(heads) / heads)
        self.gate = nn.Parameter(torch.zeros(n_neurons))
        self.population = nn.Parameter(torch.zeros(n_neurons)) if population_term else None
        self.locality_logit = (nn.Parameter(torch.full((heads,), math.log(math.expm1(locality_init))))
                               if locality and has_pos else None)
        if self.locality_logit is not None:
            pos = self.positions_um
            self.register_buffer("scaled_positions", (pos - pos.mean(0)) / locality_scale_um)
        else:
            self.register_buffer("scaled_positions", None)

    def locality_alpha(self) -> torch.Tensor | None:
        """Per-head distance-bias strength alpha_h >= 0 (H,), per (locality_scale_um)^2; None if disabled."""
        return None if self.locality_logit is None else F.softplus(self.locality_logit)

    def weights(self, embedding: torch.Tensor) -> torch.Tensor:
        """Leave-one-out attention weights (H, N, N): row i over the other neurons j (sums to 1, a_ii = 0).
        embedding (N, D), the readout embedding (detached here)."""
        static = embedding.detach()
        if self.fourier is not None:
            static = torch.cat([static, self.fourier(self.positions_um)], -1)
        qk = self.qk(static)
        if self.neuron_qk is not None:
            qk = qk + self.neuron_proj(self.neuron_qk)
        q, k = qk.unflatten(-1, (2, self.heads, self.head_dim)).unbind(1)  # (N, H, E) each
        logits = torch.einsum("ihe,jhe->hij", q, k) * self.head_dim**-0.5
        alpha = self.locality_alpha()
        if alpha is not None:
            d2 = torch.cdist(self.scaled_positions, self.scaled_positions).pow(2)
            logits = logits - alpha[:, None, None] * d2
        eye = torch.eye(self.n_neurons, dtype=torch.bool, device=logits.device)
        return logits.masked_fill(eye, float("-inf")).softmax(-1)

    def forward(self, residual: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        if residual.dim() == 3:  # movies: the previous frame's residual drives this frame
            residual = F.pad(residual[:, :-1], (0, 0, 1, 0))
        e, _ = flatten_leading(residual, 1)  # (B', N)
        attended = torch.einsum("hij,bj->bi", self.weights(embedding) * self.value_weight[:, None, None], e)
        correction = self.gate * attended
        if self.population is not None:
            others = (e.sum(-1, keepdim=True) - e) / (self.n_neurons - 1)
            correction = correction + self.population * others
        return correction.reshape(residual.shape)

    @torch.no_grad()
    def attention_map(self, embedding: torch.Tensor, heads: bool = True) -> torch.Tensor:
        """Attention weights (H, N, N), or (N, N) averaged over heads; row i: how much neuron i listens to
        neuron j's recorded residual (the same on every trial)."""
        maps = self.weights(embedding)
        return maps if heads else maps.mean(0)

    @torch.no_grad()
    def coupling(self, embedding: torch.Tensor) -> torch.Tensor:
        """The signed coupling from recorded residuals to drives, (N, N): W = gate * sum_h w_h A_h, so that
        the pairwise part of the correction is W @ e (the population term, the same for every pair of a
        row, is left out). Comparable with a true signed coupling J (row i receives from column j)."""
        return self.gate.reshape(-1, 1) * torch.einsum("h,hij->ij", self.value_weight, self.weights(embedding))


def residuals(responses: torch.Tensor, rate: torch.Tensor, response_std: torch.Tensor) -> torch.Tensor:
    """What the context layer reads: recorded responses (recording units, (B, [T,] N)) over the training std,
    minus the stimulus-only rate (normalised units, detached); non-finite recorded entries give 0."""
    e = responses / response_std - rate.detach()
    return torch.where(torch.isfinite(e), e, torch.zeros((), dtype=e.dtype, device=e.device))
