"""The recursive least squares update shared by both RLS loops: P over the learned regressors and in-place
updates of P and the weights.

P covers only the learned regressor columns: the rates of plastic units (PINning, Rajan et al. 2016) and the
exogenous inputs, so a plastic fraction p cuts the P update p^2-fold and the J update p-fold. Updates are in
place with no host synchronisation (so the same code runs on a GPU). Masks and Dale's law are kept by
projecting J after every update.

Recursive least squares from P = P0 is the online form of ridge regression: after the data it has seen, each
row of the weights minimises the squared error plus (w - w_start)^T P0^-1 (w - w_start), so P0 is the prior
variance of the weights around their start. With ``p0_inter`` the weights a unit receives from other regions
get their own prior variance; the penalty then differs between target regions, so P is kept per target
region, (regions, n, n), and every update is made for each of them (the cost times the number of regions).
"""

from __future__ import annotations

import torch

from neurofit.rnn.model import DataConstrainedRNN


class RLSState:
    """P over the learned regressor columns and the in-place update of P and ``model.weight``.

    Args:
        model: the RNN (its ``plastic`` units and exogenous columns are learned).
        p0: initial P = p0 * I (the prior variance of every learned weight).
        device, dtype: of P (those of the fit).
        p0_inter: prior variance of the weights from units of other regions (``rls.P0_inter``); None: p0.
    """

    def __init__(self, model: DataConstrainedRNN, p0: float, device: torch.device, dtype: torch.dtype,
                 p0_inter: float | None = None) -> None:
        self.model = model
        learned = torch.ones(model.weight_width, dtype=torch.bool)
        learned[: model.n_units] = model.plastic.cpu()
        #: learned columns of weight, or None when every column learns (no gather/scatter needed)
        self.cols = None if bool(learned.all()) else torch.nonzero(learned).flatten().to(device)
        n = int(learned.sum())
        #: (groups, n, n): one P for every unit, or one per target region with a separate inter-region prior
        self.P, self.rows = self._initial_p(p0, p0_inter, learned, n, device, dtype)
        self.eye = torch.eye(1, device=device, dtype=dtype)
        scale = model.lr_scale
        self.lr_scale = None if scale is None else (scale if self.cols is None else scale[:, self.cols])

    def _initial_p(self, p0: float, p0_inter: float | None, learned: torch.Tensor, n: int, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """P0 (groups, n, n) and the rows of weight each group's P serves (None: one P for all rows)."""
        if p0_inter is None or p0_inter == p0:
            return p0 * torch.eye(n, device=device, dtype=dtype)[None], None
        region = self.model.region_index.cpu()
        # region of each learned column; exogenous inputs (-1) keep p0: they are not inter-region weights
        source = torch.cat([region, torch.full((self.model.weight_width - len(region),), -1)])[learned]
        targets = range(len(self.model.spec["region_names"]))
        diag = torch.stack([torch.where((source == k) | (source < 0), p0, p0_inter) for k in targets])
        rows = [torch.nonzero(region == k).flatten().to(device) for k in targets]
        return torch.diag_embed(diag).to(device=device, dtype=dtype), rows

    def update(self, x: torch.Tensor, err: torch.Tensor) -> None:
        """Update P and weight in place from regressors x (rows, weight_width) and their errors err (rows, N)
        computed with the current weights: rank 1 for one row (CURBD: k = P x, c = 1 / (1 + x^T k),
        P -= c k k^T, W -= c e k^T), Woodbury for several; for every P of ``self.P`` at once."""
        P = self.P
        if self.cols is not None:
            x = x.index_select(1, self.cols)
        px = x @ P  # (groups, rows, n); P is symmetric, so the rows are (P x_k)^T
        if x.shape[0] == 1:
            gain = px / (1.0 + px @ x.T)
            P.baddbmm_(px.mT, gain, alpha=-1.0)
        else:
            # Woodbury through the Cholesky factor of S = I + X P X^T: P -= V^T V with V = L^-1 X P stays
            # symmetric in float32, where the plain form drifts and P loses definiteness.
            if len(self.eye) != len(x):
                self.eye = torch.eye(len(x), device=x.device, dtype=x.dtype)
            chol = torch.linalg.cholesky_ex(torch.baddbmm(self.eye, px, x.T.expand(len(P), -1, -1))).L
            v = torch.linalg.solve_triangular(chol, px, upper=False)
            gain = torch.linalg.solve_triangular(chol.mT, v, upper=True)
            P.baddbmm_(v.mT, v, alpha=-1.0)
        self._apply(err, gain)

    def _apply(self, err: torch.Tensor, gain: torch.Tensor) -> None:
        """W[:, learned] -= err^T gain (per target region's P; scaled per block), then the constraints.

        Args:
            err: (rows, N) errors; gain: (groups, rows, n) gains of ``self.P``.
        """
        W = self.model.weight.data
        if self.rows is None and self.cols is None and self.lr_scale is None:
            W.addmm_(err.T, gain[0], alpha=-1.0)
        else:
            if self.rows is None:
                step = err.T @ gain[0]
            else:
                step = err.new_empty(err.shape[1], gain.shape[-1])
                for rows, g in zip(self.rows, gain):
                    step[rows] = err[:, rows].T @ g
            if self.lr_scale is not None:
                step = step * self.lr_scale
            if self.cols is None:
                W.sub_(step)
            else:
                W.index_add_(1, self.cols, step, alpha=-1.0)
        if self.model.constrained:
            self.model.project_()

    def correction(self, x: torch.Tensor) -> torch.Tensor | None:
        """What updates not yet applied add to the drive W x for regressors x (weight_width,): none here."""
        return None

    def flush(self) -> None:
        """Apply updates not yet applied: none here."""


class DeferredRLS(RLSState):
    """Rank-1 updates held back as a low-rank correction and applied ``depth`` at a time.

    After m held updates (gains k_j, c_j and errors e_j) the effective matrices are P - sum c_j k_j k_j^T and
    W - sum e_j (c_j k_j)^T: the next gain is computed against the effective P, and ``correction`` gives what
    the held updates add to a drive, so every step sees every earlier update, as with immediate updates. The
    held updates are applied as one matrix product each for P and W (compute-bound), where immediate ones
    read and write both matrices at every sample (memory-bound): the same algorithm up to rounding, faster
    for large N. Needs weights without masks, Dale's law or per-block learning rates (they would have to be
    applied at every update).

    Args:
        model, p0, device, dtype: as ``RLSState``.
        depth: updates held at most.
    """

    def __init__(self, model: DataConstrainedRNN, p0: float, device: torch.device, dtype: torch.dtype,
                 depth: int) -> None:
        super().__init__(model, p0, device, dtype)
        self.flat = self.P[0]  # one P: held updates need the same prior for every row
        n = len(self.flat)
        self.gains = torch.zeros(depth, n, device=device, dtype=dtype)  # k_j
        self.scaled = torch.zeros(depth, n, device=device, dtype=dtype)  # c_j k_j
        self.errors = torch.zeros(depth, model.n_units, device=device, dtype=dtype)
        self.held = 0

    def _learned(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.cols is None else x.index_select(0, self.cols)

    def update(self, x: torch.Tensor, err: torch.Tensor) -> None:
        """Hold the rank-1 update of one row x (1, weight_width) with error err (1, N)."""
        m, xs = self.held, self._learned(x[0])
        k = torch.mv(self.flat, xs)
        if m:
            k = torch.addmv(k, self.scaled[:m].T, torch.mv(self.gains[:m], xs), alpha=-1.0)
        self.gains[m] = k
        torch.mul(k, 1.0 / (1.0 + torch.dot(xs, k)), out=self.scaled[m])
        self.errors[m] = err[0]
        self.held = m + 1
        if self.held == len(self.gains):
            self.flush()

    def correction(self, x: torch.Tensor) -> torch.Tensor | None:
        """-sum_j e_j (c_j k_j)^T x over the held updates, for regressors x (weight_width,)."""
        m = self.held
        if not m:
            return None
        return torch.mv(self.errors[:m].T, torch.mv(self.scaled[:m], self._learned(x))).neg_()

    def flush(self) -> None:
        """Apply the held updates to P and W."""
        m = self.held
        if m:
            self.flat.addmm_(self.scaled[:m].T, self.gains[:m], alpha=-1.0)
            self._apply(self.errors[:m], self.scaled[None, :m])
            self.held = 0
