"""Divisive normalisation across neurons, as a recurrence on the (non-negative) output rates.

Static inputs solve the fixed point

    r_i = u_i^p / (sigma_i^p + sum_j w_ij r_j^p + b_i r_i^p)

(u: the encoder's rate before normalisation, b: self-normalisation/adaptation strength), and videos run the
same equation forward in time with the pool and self terms low-pass filtered over past frames:

    P_t = k_pool P_{t-1} + (1 - k_pool) sum_j w_ij r_{j,t-1}^p,   A_t = k_ad A_{t-1} + (1 - k_ad) r_{t-1}^p,
    r_t = u_t^p / (sigma^p + P_t + b A_t),

with k = exp(-1 / tau) and learned tau (frames); the first frame starts at its static fixed point, so a
constant video stays at the static solution. Pools are non-negative and low rank, never a dense N x N
parameter: w = g_e Phi_e Phi_e^T / c_e + g_x Phi_x Phi_x^T / c_x, where Phi_e = softplus(embedding @ A)
(neurons with similar embeddings normalise each other) and Phi_x are Gaussian bumps at anchors on a grid over
the cortical sheet (pools that fall off with distance); c scales each term to mean row sum 1, so a gain g
reads as "g times the pool's average activity".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from neurofit.models.interactions.base import Interaction, flatten_leading

#: Smallest rate fed to log(): zero drive gives r ~ 0 with finite gradients instead of log(0).
_MIN_RATE = 1.0e-6
#: Range of the learned exponent p. The usual start p = 1 sits a fifth of the way in, where the sigmoid still
#: passes gradient; at the edge of the range (the former lower bound 1) p could not move at all.
_EXPONENT_RANGE = (0.5, 3.0)


def _inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def anchor_grid(positions_um: torch.Tensor, spacing_um: float, max_anchors: int) -> tuple[torch.Tensor, float]:
    """Anchors on a square grid covering the (x, y) extent of the neurons plus one spacing on each side.

    The spacing grows when the sheet would need more than ``max_anchors``. positions_um: (N, 3) um ->
    anchors (M, 2) um and the spacing actually used (um).
    """
    xy = positions_um[:, :2]
    lo, hi = xy.min(0).values, xy.max(0).values
    extent = (hi - lo).clamp_min(1.0) + 2 * spacing_um
    spacing = max(spacing_um, math.sqrt(float(extent[0] * extent[1]) / max_anchors))
    axes = [torch.arange(float(lo[d]) - spacing, float(hi[d]) + 1.5 * spacing, spacing) for d in range(2)]
    gx, gy = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], -1), spacing


class DivisiveNormalization(Interaction):
    """Learned divisive normalisation recurrence on rates (``acts_on = "rate"``).

    Args:
        n_neurons, embedding_dim, feature_dim, positions_um: as in ``Interaction`` (features are not used).
        rank: R of the embedding-similarity pool (0: none).
        distance_pool: add the cortical-distance pool (needs positions).
        anchor_spacing_um: grid spacing of the distance-pool anchors; the pool's width is learned, at least
            about 1.4x this spacing.
        max_anchors: cap on anchors M (cost is O(N M) per iteration).
        exponent: initial p, kept in [0.5, 3] by a sigmoid; the default 1 with sigma = 1 and weak pools starts
            close to the plain model.
        pool_gain: initial gains g_e, g_x and self-normalisation b.
        tau_pool_frames, tau_adapt_frames: initial time constants of the population and self filters (frames;
            learned, at least 1 frame).
        iterations: fixed-point iterations for static inputs (damped in log space; converges geometrically at
            rate <= p / (2 + p) near the solution, see ``_solve``).
        grad_iterations: how many of the last iterations are differentiated (None: all). The earlier ones
            only bring the state near the fixed point, so running them without autograd changes the gradient
            by a factor of about (p / (2 + p))^grad_iterations and saves most of the backward pass.
        max_rate: rates are clipped to this value (normalised response units) so r^p never overflows.

    Forward: rate (B, [T,] N) >= 0, features (ignored), embedding (N, D) -> normalised rate, same shape.
    """

    acts_on = "rate"

    def __init__(self, n_neurons: int, embedding_dim: int, feature_dim: int,
                 positions_um: torch.Tensor | None = None, rank: int = 8, distance_pool: bool = True,
                 anchor_spacing_um: float = 50.0, max_anchors: int = 1024, exponent: float = 1.0,
                 pool_gain: float = 0.05, tau_pool_frames: float = 5.0, tau_adapt_frames: float = 20.0,
                 iterations: int = 30, grad_iterations: int | None = 8, max_rate: float = 1.0e3) -> None:
        super().__init__(n_neurons, embedding_dim, feature_dim, positions_um)
        lo, hi = _EXPONENT_RANGE
        if not lo <= exponent <= hi:
            raise ValueError(f"exponent must be in [{lo}, {hi}], got {exponent}")
        if rank == 0 and not (distance_pool and positions_um is not None):
            raise ValueError("normalisation needs a pool: rank > 0 or distance_pool with positions")
        frac = min(max((exponent - lo) / (hi - lo), 1e-3), 1 - 1e-3)
        self.exponent_logit = nn.Parameter(torch.tensor(math.log(frac / (1 - frac))))
        self.sigma_raw = nn.Parameter(torch.full((n_neurons,), _inverse_softplus(1.0 - 1e-2)))
        self.adapt_raw = nn.Parameter(torch.full((n_neurons,), _inverse_softplus(pool_gain)))
        self.tau_raw = nn.Parameter(torch.tensor([_inverse_softplus(tau_pool_frames - 1.0),
                                                  _inverse_softplus(tau_adapt_frames - 1.0)]))
        self.embedding_map = nn.Linear(embedding_dim, rank, bias=False) if rank else None
        self.embedding_gain_raw = nn.Parameter(torch.tensor(_inverse_softplus(pool_gain))) if rank else None
        if distance_pool and positions_um is not None:
            anchors, spacing = anchor_grid(self.positions_um, anchor_spacing_um, max_anchors)
            self.register_buffer("anchors", anchors)
            self.anchor_spacing_um = spacing
            self.width_raw = nn.Parameter(torch.tensor(0.0))
            self.distance_gain_raw = nn.Parameter(torch.tensor(_inverse_softplus(pool_gain)))
        else:
            self.register_buffer("anchors", None)
            self.width_raw = self.distance_gain_raw = None
        if grad_iterations is not None and grad_iterations < 1:
            raise ValueError(f"grad_iterations must be >= 1 or null, got {grad_iterations}")
        self.iterations, self.grad_iterations, self.max_rate = iterations, grad_iterations, max_rate

    def exponent(self) -> torch.Tensor:
        """p in [0.5, 3] (scalar)."""
        lo, hi = _EXPONENT_RANGE
        return lo + (hi - lo) * torch.sigmoid(self.exponent_logit)

    def sigma(self) -> torch.Tensor:
        """Semi-saturation constants sigma_i > 0 (N,), normalised response units."""
        return 1e-2 + F.softplus(self.sigma_raw)

    def taus(self) -> torch.Tensor:
        """Time constants (tau_pool, tau_adapt) >= 1 frame (2,)."""
        return 1.0 + F.softplus(self.tau_raw)

    def pool_width_um(self) -> torch.Tensor | None:
        """Length scale of each anchor bump (um); the pool between two neurons falls off as
        exp(-d^2 / (4 width^2)). None without a distance pool."""
        return None if self.width_raw is None else self.anchor_spacing_um * (1.0 + F.softplus(self.width_raw))

    def _factors(self, embedding: torch.Tensor) -> list[torch.Tensor]:
        """Non-negative pool factors, each (N, R_k) and scaled so that sum_k Phi_k Phi_k^T is the pool w."""
        factors = []
        if self.embedding_map is not None:
            phi = F.softplus(self.embedding_map(embedding))
            factors.append(phi * (F.softplus(self.embedding_gain_raw) / _mean_row_sum(phi)).sqrt())
        if self.anchors is not None:
            d2 = torch.cdist(self.positions_um[:, :2], self.anchors).pow(2)
            phi = torch.exp(-d2 / (2 * self.pool_width_um() ** 2))
            factors.append(phi * (F.softplus(self.distance_gain_raw) / _mean_row_sum(phi)).sqrt())
        return factors

    @torch.no_grad()
    def pool_matrix(self, embedding: torch.Tensor) -> torch.Tensor:
        """The effective static pool (N, N): w_ij plus the self term b_i on the diagonal, so that static
        outputs solve r = u^p / (sigma^p + pool_matrix @ r^p). Row i: how strongly neuron j normalises i."""
        w = sum(phi @ phi.T for phi in self._factors(embedding))
        return w + torch.diag(F.softplus(self.adapt_raw))

    def regularizer(self) -> torch.Tensor:
        """Total pool strength (scalar): pools only grow where they improve the fit."""
        gains = [F.softplus(self.adapt_raw).mean()]
        gains += [F.softplus(g) for g in (self.embedding_gain_raw, self.distance_gain_raw) if g is not None]
        return torch.stack(gains).sum()

    def _pool(self, s: torch.Tensor, factors: list[torch.Tensor]) -> torch.Tensor:
        """sum_j w_ij s_j for s (B, N) through the low-rank factors, O(N R) per row."""
        return sum((s @ phi) @ phi.T for phi in factors)

    def _solve(self, log_up: torch.Tensor, sp: torch.Tensor, p: torch.Tensor, adapt: torch.Tensor,
               factors: list[torch.Tensor]) -> torch.Tensor:
        """Static fixed point in y = log r, for log u^p (B, N): returns y (B, N).

        The map y -> G(y) = log u^p - log(sigma^p + w r^p + b r^p) has a Jacobian similar to a symmetric
        matrix with eigenvalues in (-p, 0] (w is a sum of PSD terms), so the damped step
        y <- (1 - lam) y + lam G(y) with lam = 2 / (2 + p) contracts with factor <= p / (2 + p) locally.
        """
        log_max = math.log(self.max_rate)
        lam = 2.0 / (2.0 + p.detach())
        y = (log_up - sp.log()).clamp(max=log_max)

        def step(y: torch.Tensor) -> torch.Tensor:
            s = torch.exp(p * y)
            target = (log_up - torch.log(sp + self._pool(s, factors) + adapt * s)).clamp(max=log_max)
            return (1 - lam) * y + lam * target

        differentiated = self.iterations if self.grad_iterations is None else min(self.grad_iterations,
                                                                                  self.iterations)
        if differentiated < self.iterations:
            with torch.no_grad():
                for _ in range(self.iterations - differentiated):
                    y = step(y)
        for _ in range(differentiated):
            y = step(y)
        return y

    def forward(self, rate: torch.Tensor, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        p = self.exponent()
        sp = self.sigma().pow(p)
        adapt = F.softplus(self.adapt_raw)
        factors = self._factors(embedding)
        log_up = p * rate.clamp(_MIN_RATE, self.max_rate).log()
        if rate.dim() == 2:
            return self._solve(log_up, sp, p, adapt, factors).exp()
        u, lead = flatten_leading(log_up, 2)  # (B', T, N)
        return self._run_in_time(u, sp, p, adapt, factors).reshape(*lead, *u.shape[1:])

    def _run_in_time(self, log_up: torch.Tensor, sp: torch.Tensor, p: torch.Tensor, adapt: torch.Tensor,
                     factors: list[torch.Tensor]) -> torch.Tensor:
        """log u^p (B, T, N) -> rates (B, T, N), frame 0 at its fixed point, later frames by the filters."""
        k_pool, k_adapt = torch.exp(-1.0 / self.taus()).unbind()
        log_max = math.log(self.max_rate)
        # unbind: indexing log_up[:, t] in the loop has a backward quadratic in the frames
        first, *later = log_up.unbind(1)
        y = self._solve(first, sp, p, adapt, factors)
        s = torch.exp(p * y)
        pool, own = self._pool(s, factors), s
        rates = [y.exp()]
        for frame in later:
            pool = k_pool * pool + (1 - k_pool) * self._pool(s, factors)
            own = k_adapt * own + (1 - k_adapt) * s
            y = (frame - torch.log(sp + pool + adapt * own)).clamp(max=log_max)
            s = torch.exp(p * y)
            rates.append(y.exp())
        return torch.stack(rates, 1)


def _mean_row_sum(phi: torch.Tensor) -> torch.Tensor:
    """Mean over i of sum_j (Phi Phi^T)_ij, without forming the N x N matrix (scalar > 0)."""
    return (phi @ phi.sum(0)).mean().clamp_min(1e-12)
