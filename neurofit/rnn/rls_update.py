"""The recursive least squares update shared by both RLS loops: P over the learned regressors and in-place
updates of P and the weights.

P covers only the learned regressor columns: the rates of plastic units (PINning, Rajan et al. 2016) and the
exogenous inputs, so a plastic fraction p cuts the P update p^2-fold and the J update p-fold. Updates are in
place with no host synchronisation (so the same code runs on a GPU). Masks and Dale's law are kept by
projecting J after every update.
"""

from __future__ import annotations

import torch

from neurofit.rnn.model import DataConstrainedRNN


class RLSState:
    """P over the learned regressor columns and the in-place update of P and ``model.weight``.

    Args:
        model: the RNN (its ``plastic`` units and exogenous columns are learned).
        p0: initial P = p0 * I.
        device, dtype: of P (those of the fit).
    """

    def __init__(self, model: DataConstrainedRNN, p0: float, device: torch.device, dtype: torch.dtype) -> None:
        self.model = model
        learned = torch.ones(model.weight_width, dtype=torch.bool)
        learned[: model.n_units] = model.plastic.cpu()
        #: learned columns of weight, or None when every column learns (no gather/scatter needed)
        self.cols = None if bool(learned.all()) else torch.nonzero(learned).flatten().to(device)
        n = int(learned.sum())
        self.P = p0 * torch.eye(n, device=device, dtype=dtype)
        self.eye = torch.eye(1, device=device, dtype=dtype)
        scale = model.lr_scale
        self.lr_scale = None if scale is None else (scale if self.cols is None else scale[:, self.cols])

    def update(self, x: torch.Tensor, err: torch.Tensor) -> None:
        """Update P and weight in place from regressors x (rows, weight_width) and their errors err (rows, N)
        computed with the current weights: rank 1 for one row (CURBD: k = P x, c = 1 / (1 + x^T k),
        P -= c k k^T, W -= c e k^T), Woodbury for several."""
        P = self.P
        if self.cols is not None:
            x = x.index_select(1, self.cols)
        px = x @ P  # P is symmetric, so the rows are (P x_k)^T
        if x.shape[0] == 1:
            gain = px / (1.0 + px @ x.T)
            P.addmm_(px.T, gain, alpha=-1.0)
        else:
            # Woodbury through the Cholesky factor of S = I + X P X^T: P -= V^T V with V = L^-1 X P stays
            # symmetric in float32, where the plain form drifts and P loses definiteness.
            if len(self.eye) != len(x):
                self.eye = torch.eye(len(x), device=x.device, dtype=x.dtype)
            chol = torch.linalg.cholesky_ex(torch.addmm(self.eye, px, x.T)).L
            v = torch.linalg.solve_triangular(chol, px, upper=False)
            gain = torch.linalg.solve_triangular(chol.T, v, upper=True)
            P.addmm_(v.T, v, alpha=-1.0)
        self._apply(err, gain)

    def _apply(self, err: torch.Tensor, gain: torch.Tensor) -> None:
        """W[:, learned] -= err^T gain (scaled per block), then the constraints."""
        W = self.model.weight.data
        if self.cols is None and self.lr_scale is None:
            W.addmm_(err.T, gain, alpha=-1.0)
        else:
            step = err.T @ gain
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
        n = len(self.P)
        self.gains = torch.zeros(depth, n, device=device, dtype=dtype)  # k_j
        self.scaled = torch.zeros(depth, n, device=device, dtype=dtype)  # c_j k_j
        self.errors = torch.zeros(depth, model.n_units, device=device, dtype=dtype)
        self.held = 0

    def _learned(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.cols is None else x.index_select(0, self.cols)

    def update(self, x: torch.Tensor, err: torch.Tensor) -> None:
        """Hold the rank-1 update of one row x (1, weight_width) with error err (1, N)."""
        m, xs = self.held, self._learned(x[0])
        k = torch.mv(self.P, xs)
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
            self.P.addmm_(self.scaled[:m].T, self.gains[:m], alpha=-1.0)
            self._apply(self.errors[:m], self.scaled[:m])
            self.held = 0
