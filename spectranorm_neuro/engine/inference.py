"""Batched MAP + Laplace inference with empirical-Bayes variance components.

Every model in the engine is a set of independent regressions sharing one design: one per
eigenmode (Gaussian mean and log-sd) or one per mode pair (correlation). They are fitted all at
once, with the target axis (modes or pairs) as a batch dimension of every array: no Python loop
runs over modes.

For each target ``m`` independently the solver maximizes

    log p(y_m | eta_1m, ..., eta_Km) - 1/2 theta_m' P_m theta_m,
    eta_km = offset_km + X_k @ theta_km,   theta_m = (theta_1m, ..., theta_Km),

by Newton's method on the joint coefficient vector with the observed Hessian, falling back per
target to Fisher scoring (expected information, always positive definite) where the observed
Hessian is not positive definite, with a step-halving line search per target. The Laplace
approximation of the posterior is ``N(theta_hat, H^-1)`` at the optimum.

Hierarchical blocks have prior ``N(0, tau^2 I)``; ``tau^2`` has an inverse-gamma(a, b) hyperprior
and is set to its Laplace-approximate marginal posterior mode by MacKay's fixed-point update
``tau^2 = (|theta_B|^2 + 2b) / (gamma_B + 2a + 2)``, ``gamma_B = K_B - tr(Sigma_B) / tau^2``
(the same fixed point as the EM update, reached in far fewer iterations). The update is
interleaved with the Newton iterations: once a target's Newton decrement is below
``_EB_START`` its variances are updated at every iteration, with the Laplace covariance of that
iteration's Hessian, and the target is done when the decrement is below ``tol`` and the
variances changed by less than ``eb_tol`` (relative): the fixed point of the former
fit-to-convergence-then-update rounds, in about half the iterations.

Each iteration works on the targets not yet done only (their data taken out of the batch, the
design's cached cross-products shared), so a few slow targets do not cost passes over all of
them, and each target's result does not depend on which others share its batch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..exceptions import ConvergenceWarning
from .effects import Design

__all__ = ["GaussianFamily", "CorrelationFamily", "LaplaceFit", "fit_laplace", "gram", "ArrayRecord", "take_targets"]

logger = logging.getLogger("spectranorm_neuro")

_LOG_2PI = float(np.log(2 * np.pi))
_ETA_CORR_MAX = 4.0  # |rho| <= tanh(4) = 0.9993
#: Newton decrement below which a target's hierarchical variances are updated along with its
#: coefficients (further from the mode the update would use a poor Laplace covariance)
_EB_START = 1e-2


def gram(X: np.ndarray, W: np.ndarray, Z: np.ndarray | None = None) -> np.ndarray:
    """Weighted cross-products ``X' diag(W[:, m]) Z`` for every target at once (one BLAS call).

    Parameters
    ----------
    X : numpy.ndarray, shape (n, p)
    W : numpy.ndarray, shape (n, M)
    Z : numpy.ndarray, shape (n, r), optional
        Defaults to ``X``.

    Returns
    -------
    numpy.ndarray, shape (M, p, r)
    """
    Z = X if Z is None else Z
    n, p = X.shape
    r = Z.shape[1]
    outer = (X[:, :, None] * Z[:, None, :]).reshape(n, p * r)
    return (outer.T @ W).T.reshape(W.shape[1], p, r)


def take_targets(data, targets: np.ndarray, n_targets: int):
    """Restrict target-indexed data to some targets.

    ``data`` is an array broadcastable to (n, n_targets) (kept whole when its last axis is not the
    target axis) or an object (a likelihood family) whose such arrays are restricted, attribute by
    attribute, in a shallow copy.
    """
    if isinstance(data, np.ndarray) or np.isscalar(data):
        arr = np.asarray(data)
        return arr[..., targets] if arr.ndim == 2 and arr.shape[1] == n_targets else data
    out = object.__new__(type(data))
    out.__dict__.update({k: take_targets(v, targets, n_targets) if isinstance(v, np.ndarray) else v
                         for k, v in data.__dict__.items()})
    return out


class ArrayRecord:
    """Mixin for dataclasses of arrays that share a leading target axis (modes or pairs)."""

    def subset(self, idx):
        """The record restricted to some targets (index array, mask or slice)."""
        return type(self)(**{k: np.asarray(v)[idx] for k, v in self.__dict__.items()})

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Flat dict of arrays (for npz storage), keys prefixed."""
        return {prefix + k: np.asarray(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, arrays, prefix: str = ""):
        """Inverse of :meth:`to_arrays` (fields with defaults may be missing: files of older releases)."""
        return cls(**{k: np.asarray(arrays[prefix + k]) for k in cls.__dataclass_fields__ if prefix + k in arrays})

    @classmethod
    def concatenate(cls, parts):
        """Join records of consecutive target blocks."""
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__})


class GaussianFamily:
    """``y ~ N(eta_mean, exp(eta_logsd)^2)``; data ``Y`` of shape (n, M).

    ``evaluate`` returns the log-likelihood (M,), the score of each predictor (n, M), and the
    per-observation weights of the expected and observed negative Hessians.

    Parameters
    ----------
    Y : numpy.ndarray, shape (n, M)
    dof : numpy.ndarray, broadcastable to (n, M), optional
        Weights ``c_i`` of the ``log sd`` term (``-c_i log sd``): ``1 - h_i``, with ``h_i`` the leverage
        of the mean's free coefficients, makes the log-sd estimate restricted (REML-like: the
        small-sample correction for the degrees of freedom the mean uses). Default 1.
    """

    n_predictors = 2

    def __init__(self, Y: np.ndarray, dof: np.ndarray | None = None):
        self.Y = Y
        self.dof = 1.0 if dof is None else dof

    def evaluate(self, etas: Sequence[np.ndarray], hessian: bool = True):
        """Log-likelihood, scores and (optionally) Hessian weights (a weight may be a (factor, array) pair)."""
        mu, logsd = etas
        r = self.Y - mu
        w = np.multiply(logsd, -2.0)
        np.exp(w, out=w)
        rw = r * w
        r2w = np.multiply(r, rw, out=r)
        c = self.dof
        ll = -(c * logsd.sum(axis=0) if np.isscalar(c) else (c * logsd).sum(axis=0)) - 0.5 * r2w.sum(axis=0) \
            - 0.5 * _LOG_2PI * r.shape[0]
        if not hessian:
            return ll, None, None, None
        fisher = {(0, 0): w, (1, 1): np.broadcast_to(2.0 * c, w.shape)}
        observed = {(0, 0): w, (1, 1): (2.0, r2w), (0, 1): (2.0, rw)}
        return ll, [rw, r2w - c], fisher, observed


class CorrelationFamily:
    """Standardized pairs ``(z1, z2) ~ N(0, [[1, rho], [rho, 1]])``, ``rho = tanh(eta)``.

    Data ``Z1``, ``Z2`` of shape (n, P). The Fisher information of ``eta`` is ``1 + rho^2``.
    """

    n_predictors = 1

    def __init__(self, Z1: np.ndarray, Z2: np.ndarray):
        self.a = Z1**2 + Z2**2
        self.b = Z1 * Z2

    def evaluate(self, etas: Sequence[np.ndarray], hessian: bool = True):
        """Log-likelihood, score and (optionally) Hessian weights."""
        eta = np.clip(etas[0], -_ETA_CORR_MAX, _ETA_CORR_MAX)
        rho = np.tanh(eta)
        s = 1.0 - rho**2
        q = (self.a - 2.0 * rho * self.b) / s
        ll = -(0.5 * np.log(s) + 0.5 * q).sum(axis=0) - _LOG_2PI * eta.shape[0]
        if not hessian:
            return ll, None, None, None
        score = rho + self.b - rho * q
        fisher = 1.0 + rho**2
        observed = q * fisher - s - 2.0 * rho * self.b
        return ll, [score], {(0, 0): fisher}, {(0, 0): observed}


@dataclass
class LaplaceFit:
    """Result of :func:`fit_laplace`; arrays carry the target axis first.

    Attributes
    ----------
    theta : list of numpy.ndarray, each (M, p_k)
        MAP coefficients of each linear predictor.
    cov : list of numpy.ndarray, each (M, p_k, p_k)
        Laplace posterior covariance blocks of each predictor.
    tau2 : list of numpy.ndarray, each (M, h_k)
        Hierarchical variances, one column per hierarchical block.
    converged : numpy.ndarray of bool, shape (M,)
    n_iter : int
        Total Newton iterations.
    loglik : numpy.ndarray, shape (M,), optional
        The family's log-likelihood at the returned coefficients.
    """

    theta: list[np.ndarray]
    cov: list[np.ndarray]
    tau2: list[np.ndarray]
    converged: np.ndarray
    n_iter: int
    loglik: np.ndarray | None = None


class _Problem:
    """Joint-coefficient bookkeeping for :func:`fit_laplace`."""

    def __init__(self, family, Xs, offsets, free, n_targets):
        self.family = family
        self.Xs = list(Xs)
        self.offsets = list(offsets)
        self.n_targets = n_targets
        self.sizes = [X.shape[1] for X in self.Xs]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])
        self.free = np.concatenate(free)
        self.idx = np.flatnonzero(self.free)
        self._outer: dict = {}

    def take(self, targets: np.ndarray) -> _Problem:
        """The same problem for some targets only (data and offsets subset; designs and caches shared)."""
        if targets.size == self.n_targets:
            return self
        out = object.__new__(_Problem)
        out.__dict__.update(self.__dict__)
        out.family = take_targets(self.family, targets, self.n_targets)
        out.offsets = [take_targets(off, targets, self.n_targets) for off in self.offsets]
        out.n_targets = targets.size
        return out

    def _block(self, k: int, l: int, w: np.ndarray) -> np.ndarray:
        """``X_k' diag(w[:, m]) X_l`` for every target, (M, p_k, p_l); the row outer products are cached."""
        if (k, l) not in self._outer:
            X, Z = self.Xs[k], self.Xs[l]
            n, p, r = X.shape[0], X.shape[1], Z.shape[1]
            if k == l:  # symmetric: the upper triangle only
                iu = np.triu_indices(p)
                self._outer[(k, l)] = (np.ascontiguousarray(X[:, iu[0]] * X[:, iu[1]]).T, iu)
            else:
                self._outer[(k, l)] = (np.ascontiguousarray((X[:, :, None] * Z[:, None, :]).reshape(n, p * r)).T,
                                       None)
        outer, iu = self._outer[(k, l)]
        prod = outer @ w  # (cols, M)
        p, r = self.Xs[k].shape[1], self.Xs[l].shape[1]
        if iu is None:
            return prod.T.reshape(w.shape[1], p, r)
        out = np.empty((w.shape[1], p, p))
        out[:, iu[0], iu[1]] = prod.T
        out[:, iu[1], iu[0]] = prod.T
        return out

    def split(self, theta):
        return [theta[:, a:b] for a, b in zip(self.starts[:-1], self.starts[1:])]

    def etas(self, theta):
        return [X @ th.T if np.isscalar(off) and off == 0 else off + X @ th.T
                for X, off, th in zip(self.Xs, self.offsets, self.split(theta))]

    def evaluate(self, theta, hessian=True):
        """The family's log-likelihood (M,), scores and Hessian weights at ``theta``."""
        return self.family.evaluate(self.etas(theta), hessian)

    @staticmethod
    def penalized(ll, theta, prec):
        """Log-likelihood minus the prior's quadratic penalty, (M,)."""
        return ll - 0.5 * np.einsum("mp,mp,mp->m", theta, prec, theta)

    def gradient(self, theta, prec, scores):
        g = np.concatenate([s.T @ X for s, X in zip(scores, self.Xs)], axis=1) - prec * theta
        return g[:, self.idx]

    def hessian(self, weights, prec):
        M = prec.shape[0]
        P = self.starts[-1]
        H = np.zeros((M, P, P))
        for (k, l), w in weights.items():
            factor, w = w if isinstance(w, tuple) else (1.0, w)
            blk = self._block(k, l, np.broadcast_to(w, (self.Xs[k].shape[0], M)))
            if factor != 1.0:
                blk *= factor
            H[:, self.starts[k]:self.starts[k + 1], self.starts[l]:self.starts[l + 1]] = blk
            if k != l:
                H[:, self.starts[l]:self.starts[l + 1], self.starts[k]:self.starts[k + 1]] = blk.transpose(0, 2, 1)
        H[:, np.arange(P), np.arange(P)] += prec
        return H[:, self.idx[:, None], self.idx[None, :]]


def _pd(H: np.ndarray) -> np.ndarray:
    """Which matrices of a (M, p, p) stack are positive definite (well conditioned).

    A Cholesky factorization of the whole stack settles the common case (all positive definite,
    pivots within 1e5 of each other); the eigenvalues decide the others.
    """
    ok = np.zeros(H.shape[0], dtype=bool)
    try:
        d = np.diagonal(np.linalg.cholesky(H), axis1=1, axis2=2) ** 2
        ok = d.min(axis=1) > 1e-10 * d.max(axis=1)
    except np.linalg.LinAlgError:
        pass
    if not ok.all():
        w = np.linalg.eigvalsh(H[~ok])
        ok[~ok] = w[:, 0] > 1e-10 * np.maximum(w[:, -1], 1e-300)
    return ok


def _newton_hessian(prob: _Problem, prec, fisher, observed) -> np.ndarray:
    """Observed negative Hessian where positive definite, else the expected one (per target)."""
    Ho = prob.hessian(observed, prec)
    use_obs = _pd(Ho)
    if use_obs.all():  # the common case: no need for the expected information
        return Ho
    Hf = prob.hessian(fisher, prec)
    return np.where(use_obs[:, None, None], Ho, Hf)


def _line_search(prob: _Problem, theta: np.ndarray, prec: np.ndarray, step: np.ndarray, obj: np.ndarray,
                 max_halvings: int = 40) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Step halving per target until the penalized log-likelihood does not decrease.

    The full step is evaluated with the scores and Hessian weights; the halvings re-evaluate the
    pending targets only, and the targets that did not take the full step are evaluated again at
    their new coefficients (spliced into the full step's evaluation).

    Returns
    -------
    theta : numpy.ndarray, shape (m, P)
        New coefficients (unchanged for targets that found no ascent in ``max_halvings`` tries).
    stuck : numpy.ndarray of bool, shape (m,)
    evaluation : tuple
        The family's evaluation (log-likelihood, scores, Hessian weights) at the new coefficients.
    """
    idx = prob.idx
    cand = theta.copy()
    cand[:, idx] += step
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        first = prob.evaluate(cand)
    pending = np.flatnonzero(~(prob.penalized(first[0], cand, prec) >= obj))
    stuck = np.zeros(theta.shape[0], dtype=bool)
    if not pending.size:
        return cand, stuck, first
    halved = pending
    alpha = np.ones(theta.shape[0])
    for _half in range(1, max_halvings):
        alpha[pending] *= 0.5
        cand[pending] = theta[pending]
        cand[np.ix_(pending, idx)] += alpha[pending, None] * step[pending]
        sub = prob.take(pending)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ll = sub.evaluate(cand[pending], hessian=False)[0]
        pending = pending[~(sub.penalized(ll, cand[pending], prec[pending]) >= obj[pending])]
        if not pending.size:
            break
    stuck[pending] = True
    cand[pending] = theta[pending]
    return cand, stuck, _splice(first, prob.take(halved).evaluate(cand[halved]), halved)


def _splice(ev: tuple, part: tuple, rows: np.ndarray) -> tuple:
    """An evaluation of all targets with the targets ``rows`` replaced by those of ``part``."""

    def put(full, new):
        if isinstance(full, tuple):  # (factor, weights)
            return full[0], put(full[1], new[1])
        full = full if full.flags.writeable else np.array(full)
        full[:, rows] = new
        return full

    ll = ev[0].copy()
    ll[rows] = part[0]
    weights = ({key: put(value, new[key]) for key, value in full.items()} for full, new in zip(ev[2:], part[2:]))
    return (ll, [put(a, b) for a, b in zip(ev[1], part[1])], *weights)


def _columns(ev: tuple, keep: np.ndarray) -> tuple:
    """An evaluation restricted to some targets."""

    def cut(value):
        return (value[0], cut(value[1])) if isinstance(value, tuple) else value[:, keep]

    return (ev[0][keep], [cut(a) for a in ev[1]], *({key: cut(v) for key, v in d.items()} for d in ev[2:]))


def _full_cov(cov_free: np.ndarray, idx: np.ndarray, P: int) -> np.ndarray:
    """Covariances (m, P, P) with zeros for the coefficients held fixed."""
    if idx.size == P:
        return cov_free
    full = np.zeros((cov_free.shape[0], P, P))
    full[:, idx[:, None], idx[None, :]] = cov_free
    return full


def _quadratic_eb(prob: _Problem, designs, hyper, theta: np.ndarray, H: np.ndarray, g: np.ndarray, prec: np.ndarray,
                  tau2: list, eb_tol: float, max_rounds: int = 50) -> tuple[list, np.ndarray]:
    """Variances at MacKay's fixed point for the quadratic model of the log-likelihood at ``theta``.

    The log-likelihood's gradient and curvature at ``theta`` (``g`` and ``H`` without the prior
    ``prec``) give the MAP and Laplace covariance for any variances without a pass over the data:
    the variance updates are iterated on that model (from ``tau2``) until they change by less than
    ``eb_tol``. Returns the variances and the Newton step (m, n_free) for them.
    """
    idx = prob.idx
    m = theta.shape[0]
    diag = np.arange(idx.size)
    H_lik = H.copy()
    H_lik[:, diag, diag] -= prec[:, idx]
    g_lik = g + prec[:, idx] * theta[:, idx]
    for _round in range(max_rounds):
        pr = np.concatenate([d.prior_precision(t, m) for d, t in zip(designs, tau2)], axis=1)[:, idx]
        Hq = H_lik.copy()
        Hq[:, diag, diag] += pr
        step = np.linalg.solve(Hq, (g_lik - pr * theta[:, idx])[..., None])[..., 0]
        moved = theta.copy()
        moved[:, idx] += step
        tau2, change = _mackay(prob, designs, hyper, moved, _full_cov(np.linalg.inv(Hq), idx, theta.shape[1]), tau2)
        if change.max() < eb_tol:
            break
    pr = np.concatenate([d.prior_precision(t, m) for d, t in zip(designs, tau2)], axis=1)[:, idx]
    Hq = H_lik
    Hq[:, diag, diag] += pr
    return tau2, np.linalg.solve(Hq, (g_lik - pr * theta[:, idx])[..., None])[..., 0]


def _mackay(prob: _Problem, designs, hyper, theta: np.ndarray, cov: np.ndarray, tau2: list) -> tuple[list, np.ndarray]:
    """MacKay's update of the hierarchical variances of some targets, and its largest relative change (m,)."""
    change = np.zeros(theta.shape[0])
    new_tau2 = []
    for k, d in enumerate(designs):
        off = prob.starts[k]
        new_k = tau2[k].copy()
        for j, blk in enumerate(d.hierarchical_blocks):
            a, b = hyper[k][j]
            sl = slice(off + blk.start, off + blk.stop)
            ss = (theta[:, sl] ** 2).sum(axis=1)
            tr = np.trace(cov[:, sl, sl], axis1=1, axis2=2)
            old = tau2[k][:, j]
            gamma = np.clip((blk.stop - blk.start) - tr / old, 1e-8, None)
            new = (ss + 2.0 * b) / (gamma + 2.0 * a + 2.0)
            em = (ss + tr + 2.0 * b) / ((blk.stop - blk.start) + 2.0 * a + 2.0)
            new = np.where(np.isfinite(new) & (new > 0), new, em)
            change = np.maximum(change, np.abs(new - old) / np.maximum(old, 1e-12))
            new_k[:, j] = new
        new_tau2.append(new_k)
    return new_tau2, change


def fit_laplace(
    family,
    designs: Sequence[Design],
    Xs: Sequence[np.ndarray],
    init: Sequence[np.ndarray],
    offsets: Sequence[np.ndarray | float] | None = None,
    tau2_init: Sequence[np.ndarray] | None = None,
    learn_tau: bool = True,
    free: Sequence[np.ndarray] | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
    eb_max_iter: int = 200,
    eb_tol: float = 1e-6,
) -> LaplaceFit:
    """Fit independent regressions for all targets at once (MAP, Laplace, empirical Bayes).

    Parameters
    ----------
    family : GaussianFamily or CorrelationFamily
        Likelihood with data for ``M`` targets.
    designs : sequence of Design
        One per linear predictor (gives blocks and priors).
    Xs : sequence of numpy.ndarray, each (n, p_k)
        Design matrices.
    init : sequence of numpy.ndarray, each (M, p_k)
        Starting coefficients.
    offsets : sequence of array_like, each broadcastable to (n, M), optional
        Fixed parts of the linear predictors.
    tau2_init : sequence of numpy.ndarray, each (M, h_k), optional
        Starting (or, with ``learn_tau=False``, fixed) hierarchical variances.
    learn_tau : bool, optional
        Update hierarchical variances by empirical Bayes.
    free : sequence of numpy.ndarray of bool, each (p_k,), optional
        Coefficients to fit; the others stay at ``init`` (used to adapt to new sites).
    max_iter : int, optional
        Newton iterations without hierarchical variances to learn; with them ``max_iter +
        eb_max_iter`` in all.
    tol : float, optional
        Convergence threshold on the Newton decrement ``g' H^-1 g / 2`` (log-posterior units).
    eb_max_iter, eb_tol : int, float
        Extra iterations for the variance updates and their threshold (max relative change of tau^2).

    Returns
    -------
    LaplaceFit
    """
    K = len(designs)
    M = init[0].shape[0]
    offsets = list(offsets) if offsets is not None else [0.0] * K
    free = [np.ones(X.shape[1], bool) if f is None else np.asarray(f, bool)
            for X, f in zip(Xs, free if free is not None else [None] * K)]
    prob = _Problem(family, Xs, offsets, free, M)
    theta = np.concatenate([np.array(t, dtype=float) for t in init], axis=1)
    tau2 = []
    for k, d in enumerate(designs):
        h = len(d.hierarchical_blocks)
        start = None if tau2_init is None else tau2_init[k]
        tau2.append(np.full((M, h), 0.1) if start is None else np.array(start, dtype=float))
    hyper = [[d.hyperprior(blk) for blk in d.hierarchical_blocks] for d in designs]
    has_hier = learn_tau and any(t.shape[1] for t in tau2)
    P, idx = theta.shape[1], prob.idx
    cov = np.zeros((M, P, P))
    converged = np.zeros(M, dtype=bool)  # Newton converged (at the final variances)
    eb_done = np.zeros(M, dtype=bool) if has_hier else np.ones(M, dtype=bool)
    change = np.full(M, np.inf) if has_hier else np.zeros(M)
    work, sub = np.arange(M), prob
    pinned = np.zeros(M, dtype=bool)  # no ascent left at the current variances (wait for their update)
    loglik = np.full(M, np.nan)
    ev = prob.evaluate(theta)
    total_iter = 0
    for _it in range(max_iter + (eb_max_iter if has_hier else 0)):
        total_iter += 1
        th = theta[work]
        pr = np.concatenate([d.prior_precision(t[work], work.size) for d, t in zip(designs, tau2)], axis=1)
        g = sub.gradient(th, pr, ev[1])
        H = _newton_hessian(sub, pr, ev[2], ev[3])
        step = np.linalg.solve(H, g[..., None])[..., 0]
        decrement = 0.5 * np.einsum("mp,mp->m", g, step)
        newton_ok = (decrement < tol) | pinned[work]
        step[newton_ok] = 0.0  # at the mode for the current variances
        if has_hier:  # variances updated once the coefficients are close to the mode for the current ones
            near = np.flatnonzero((decrement < _EB_START) | pinned[work])
            if near.size:
                rows = work[near]
                new_tau2, ch = _mackay(prob, designs, hyper, th[near], _full_cov(np.linalg.inv(H[near]), idx, P),
                                       [t[rows] for t in tau2])
                change[rows] = ch
                eb_done[rows] = ch < eb_tol
                more = np.flatnonzero(~eb_done[rows] & ~pinned[rows])
                if more.size:  # follow the variances to their fixed point on this iteration's quadratic model
                    moved, step[near[more]] = _quadratic_eb(prob, designs, hyper, th[near[more]], H[near[more]],
                                                            g[near[more]], pr[near[more]],
                                                            [t[more] for t in new_tau2], eb_tol)
                    for t, m in zip(new_tau2, moved):
                        t[more] = m
                pinned[rows[~eb_done[rows]]] = False  # new variances: try again
                for t, nt in zip(tau2, new_tau2):
                    t[rows] = nt
                pr = np.concatenate([d.prior_precision(t[work], work.size) for d, t in zip(designs, tau2)], axis=1)
        finish = newton_ok & eb_done[work]
        if finish.any():
            f = np.flatnonzero(finish)
            cov[work[f][:, None, None], idx[None, :, None], idx[None, None, :]] = np.linalg.inv(H[f])
            converged[work[f]] = True
            loglik[work[f]] = ev[0][f]
        keep = ~finish
        if not keep.any():
            break
        ll = ev[0]
        if finish.any():
            work, th, pr, step, H, ll = work[keep], th[keep], pr[keep], step[keep], H[keep], ll[keep]
            sub = prob.take(work)
        th, stuck, ev = _line_search(sub, th, pr, step, sub.penalized(ll, th, pr))
        theta[work] = th
        if stuck.any():  # no ascent direction left at machine precision
            rows = work[stuck]
            converged[rows] = True
            if has_hier:  # kept, pinned until the variances change
                pinned[rows] = True
            else:  # done, with the covariance here
                cov[rows[:, None, None], idx[None, :, None], idx[None, None, :]] = np.linalg.inv(H[stuck])
                loglik[rows] = ev[0][stuck]
                work, ev = work[~stuck], _columns(ev, ~stuck)
                if not work.size:
                    break
                sub = prob.take(work)
    else:
        rest = work
        full_ev = prob.take(rest).evaluate(theta[rest])
        pr = np.concatenate([d.prior_precision(t[rest], rest.size) for d, t in zip(designs, tau2)], axis=1)
        cov[np.ix_(rest, idx, idx)] = np.linalg.inv(_newton_hessian(prob.take(rest), pr, full_ev[2], full_ev[3]))
        loglik[rest] = full_ev[0]
    if has_hier and not eb_done.all():
        warnings.warn(f"empirical Bayes did not converge in {eb_max_iter} rounds for {int((~eb_done).sum())} "
                      f"of {M} targets (largest relative change {change[~eb_done].max():.2g})", ConvergenceWarning,
                      stacklevel=2)
    if not converged.all():
        warnings.warn(f"{int((~converged).sum())} of {M} regressions did not converge in {max_iter} "
                      "iterations", ConvergenceWarning, stacklevel=2)
    logger.debug("fit_laplace: %d targets, %d Newton iterations", M, total_iter)
    thetas = prob.split(theta)
    covs = [cov[:, a:b, a:b] for a, b in zip(prob.starts[:-1], prob.starts[1:])]
    return LaplaceFit(thetas, covs, tau2, converged.copy(), total_iter, loglik)
