"""NOTEARS (linear), reimplemented for side-by-side benchmarks.

Source
------
Zheng, X., Aragam, B., Ravikumar, P. and Xing, E. P. (2018).
"DAGs with NO TEARS: Continuous Optimization for Structure Learning", NeurIPS 2018,
arXiv:1803.01422. Reference code: https://github.com/xunzheng/notears,
file ``notears/linear.py``, function
``notears_linear(X, lambda1, loss_type, max_iter=100, h_tol=1e-8, rho_max=1e+16,
w_threshold=0.3)``. The original ``__main__`` demo calls it with ``lambda1=0.1,
loss_type='l2'``; the benchmarks here use the same values.

What it solves
--------------
    min_W  L(W; X) + lambda1 * ||W||_1   subject to   h(W) = tr(exp(W o W)) - d = 0

with the least-squares loss L = 0.5/n ||X - X W||_F^2 on column-centred X
(logistic and poisson losses are kept as in the original, uncentred), by the
augmented Lagrangian

    L(W) + rho/2 h(W)^2 + alpha h(W) + lambda1 * sum(w+ + w-),

each subproblem solved by scipy's L-BFGS-B on the doubled variable
w = (w+, w-) >= 0, W = w+ - w-, with bounds (0, 0) on the diagonal entries.
rho is multiplied by 10 until h falls below 0.25 times its previous value; then
alpha += rho * h. Stops when h <= h_tol or rho >= rho_max (or after max_iter
dual steps). Finally |W| < w_threshold is set to 0. h uses scipy.linalg.expm;
its gradient is exp(W o W)^T o 2W.

Deviations from the original
----------------------------
None in the mathematics, the optimiser, its settings or the stopping rules.
Only packaging differs: this module is self-contained (no ``notears.utils``),
converts X to a float64 array first (the original assumes float64 input), and
returns the thresholded matrix exactly as the original does (row = cause,
column = effect). ``return_info=True`` additionally returns a small dict of
diagnostics (final h, rho, alpha, number of dual steps, L-BFGS-B calls); it
does not change the computation.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as slin
import scipy.optimize as sopt
from scipy.special import expit as sigmoid

__all__ = ["notears_linear"]


def notears_linear(
    X,
    lambda1,
    loss_type="l2",
    max_iter=100,
    h_tol=1e-8,
    rho_max=1e16,
    w_threshold=0.3,
    return_info=False,
):
    """Solve min_W L(W; X) + lambda1 ||W||_1 s.t. h(W) = 0 by augmented Lagrangian.

    Parameters
    ----------
    X : array (n, d)
        Samples. Converted to float64; centred for ``loss_type='l2'``.
    lambda1 : float
        L1 penalty.
    loss_type : {"l2", "logistic", "poisson"}
    max_iter : int
        Maximum number of dual ascent steps.
    h_tol : float
        Exit when h(W) <= h_tol.
    rho_max : float
        Exit when rho >= rho_max.
    w_threshold : float
        Entries with |weight| < w_threshold are set to zero.
    return_info : bool
        Also return a dict of diagnostics.

    Returns
    -------
    W_est : ndarray (d, d), row = cause, column = effect
    info : dict (only if ``return_info``)
    """
    X = np.array(X, dtype=np.float64)  # copy: the caller's array is never modified
    n, d = X.shape

    def _loss(W):
        """Value and gradient of the loss."""
        M = X @ W
        if loss_type == "l2":
            R = X - M
            loss = 0.5 / X.shape[0] * (R**2).sum()
            G_loss = -1.0 / X.shape[0] * X.T @ R
        elif loss_type == "logistic":
            loss = 1.0 / X.shape[0] * (np.logaddexp(0, M) - X * M).sum()
            G_loss = 1.0 / X.shape[0] * X.T @ (sigmoid(M) - X)
        elif loss_type == "poisson":
            S = np.exp(M)
            loss = 1.0 / X.shape[0] * (S - X * M).sum()
            G_loss = 1.0 / X.shape[0] * X.T @ (S - X)
        else:
            raise ValueError(f"unknown loss type {loss_type!r}")
        return loss, G_loss

    def _h(W):
        """Value and gradient of the acyclicity constraint h(W) = tr(e^{W o W}) - d."""
        E = slin.expm(W * W)
        h = np.trace(E) - d
        G_h = E.T * W * 2
        return h, G_h

    def _adj(w):
        """Doubled variables ([2 d^2]) -> W ([d, d])."""
        return (w[: d * d] - w[d * d :]).reshape([d, d])

    def _func(w):
        """Value and gradient of the augmented Lagrangian in the doubled variables."""
        W = _adj(w)
        loss, G_loss = _loss(W)
        h, G_h = _h(W)
        obj = loss + 0.5 * rho * h * h + alpha * h + lambda1 * w.sum()
        G_smooth = G_loss + (rho * h + alpha) * G_h
        g_obj = np.concatenate((G_smooth + lambda1, -G_smooth + lambda1), axis=None)
        return obj, g_obj

    w_est, rho, alpha, h = np.zeros(2 * d * d), 1.0, 0.0, np.inf
    bnds = [(0, 0) if i == j else (0, None) for _ in range(2) for i in range(d) for j in range(d)]
    if loss_type == "l2":
        X = X - np.mean(X, axis=0, keepdims=True)
    n_dual, n_lbfgs = 0, 0
    for _ in range(max_iter):
        w_new, h_new = None, None
        while rho < rho_max:
            sol = sopt.minimize(_func, w_est, method="L-BFGS-B", jac=True, bounds=bnds)
            n_lbfgs += 1
            w_new = sol.x
            h_new, _ = _h(_adj(w_new))
            if h_new > 0.25 * h:
                rho *= 10
            else:
                break
        w_est, h = w_new, h_new
        alpha += rho * h
        n_dual += 1
        if h <= h_tol or rho >= rho_max:
            break
    W_est = _adj(w_est)
    W_est[np.abs(W_est) < w_threshold] = 0
    if return_info:
        info = {
            "h": float(h),
            "rho": float(rho),
            "alpha": float(alpha),
            "dual_steps": n_dual,
            "lbfgs_calls": n_lbfgs,
        }
        return W_est, info
    return W_est


if __name__ == "__main__":  # tiny self-check, independent of gene_dag
    rng = np.random.default_rng(1)
    d, n = 5, 500
    W_true = np.zeros((d, d))
    for i, j in [(0, 1), (1, 2), (0, 3), (3, 4)]:
        W_true[i, j] = rng.choice([-1, 1]) * rng.uniform(0.5, 2.0)
    Z = rng.normal(size=(n, d))
    X = Z @ np.linalg.inv(np.eye(d) - W_true)
    W_est, info = notears_linear(X, lambda1=0.1, loss_type="l2", return_info=True)
    print(info)
    print("true edges:", sorted((int(i), int(j)) for i, j in zip(*np.nonzero(W_true), strict=True)))
    print("est. edges:", sorted((int(i), int(j)) for i, j in zip(*np.nonzero(W_est), strict=True)))
