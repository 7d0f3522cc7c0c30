"""Whole cross-mode correlation as low rank plus diagonal (a factor model of standardized residuals).

The standardized residuals ``z`` (n_subjects, n_modes) of the per-mode direct models are modelled
as ``z ~ N(0, R)`` with

    R = diag(u) + L L',   u_k = 1 - |L_k|^2   (unit diagonal),

``L`` of shape (n_modes, rank). The rank is chosen by held-out likelihood (factor models of
increasing rank fitted on half of the subjects, scored on the other half), then ``L`` is fitted at
that rank on all subjects by the maximum-likelihood factor-analysis fixed point (principal factors
iterated on the correlation matrix). Unlike a sparse set of modelled
pairs, every pair of modes gets its correlation, at a cost of ``n_modes x rank`` numbers.

A query ``q`` of a subject with mode sds ``s`` then has variance

    q' S R S q = sum_k s_k^2 q_k^2 u_k + |L' (s * q)|^2,

which :func:`factor_variance` computes for (subjects x queries) with matrix products of
(subjects x modes) by (modes x queries) per factor column, never a (subjects x modes x queries)
array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ..exceptions import bad_value
from .inference import ArrayRecord

__all__ = ["FactorParams", "fit_factor", "factor_variance", "heldout_loglik", "choose_rank", "MAX_AUTO_RANK"]

_U_FLOOR = 1e-3  # smallest unique variance (a mode's correlation with the factors stays below 1)
_CHUNK = 1 << 13  # floats per temporary (subjects x factors x queries) chunk in factor_variance


@dataclass
class FactorParams(ArrayRecord):
    """Low-rank-plus-diagonal correlation of the standardized mode residuals.

    Attributes
    ----------
    loadings : numpy.ndarray, shape (n_modes, rank)
        ``L``.
    uniqueness : numpy.ndarray, shape (n_modes,)
        ``u = 1 - |L_k|^2``, so that ``R = diag(u) + L L'`` has a unit diagonal.
    """

    loadings: np.ndarray
    uniqueness: np.ndarray

    @property
    def rank(self) -> int:
        """Number of factors."""
        return int(self.loadings.shape[1])

    def correlation(self) -> np.ndarray:
        """The (n_modes, n_modes) correlation matrix ``diag(u) + L L'``."""
        return np.diag(self.uniqueness) + self.loadings @ self.loadings.T


def _correlation(z: np.ndarray) -> np.ndarray:
    zc = z - z.mean(axis=0)
    zc /= np.maximum(np.sqrt(np.mean(zc**2, axis=0)), 1e-12)
    return zc.T @ zc / z.shape[0]


RANK_GRID = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
#: Largest rank ``"auto"`` tries by default: every factor costs one more (subjects x modes) by
#: (modes x queries) product per query block, so the default keeps a query's variance within
#: about 17 times the cost of its mean (pass ``covariance_rank=<int>`` for more).
MAX_AUTO_RANK = 16


def choose_rank(z: np.ndarray, max_rank: int | None = None) -> tuple[int, np.ndarray, np.ndarray]:
    """Rank of the factor model by held-out likelihood.

    Factor models of increasing rank (:data:`RANK_GRID`) are fitted on the even-numbered subjects
    and scored on the odd-numbered ones; the search stops once two larger ranks in a row score
    worse than the best.

    Parameters
    ----------
    z : numpy.ndarray, shape (n_subjects, n_modes)
        Standardized residuals.
    max_rank : int, optional
        Largest rank tried (default ``min(MAX_AUTO_RANK, n_modes - 1, n_subjects // 8)``).

    Returns
    -------
    rank : int
    ranks : numpy.ndarray of int
        Ranks tried.
    scores : numpy.ndarray
        Held-out log-likelihood per subject of each rank.
    """
    n, K = z.shape
    cap = max(0, min(K - 1, n // 8))
    max_rank = min(cap, MAX_AUTO_RANK) if max_rank is None else max(0, min(int(max_rank), cap))
    S_train = _correlation(z[0::2])
    z_test = z[1::2]
    ranks, scores = [], []
    for r in RANK_GRID:
        if r > max_rank:
            break
        ranks.append(r)
        scores.append(heldout_loglik(_fit_fa(S_train, r, n_iter=10), z_test))
        best = int(np.argmax(scores))
        if len(scores) - 1 - best >= 2:
            break
    return int(ranks[int(np.argmax(scores))]), np.asarray(ranks), np.asarray(scores)


def _fit_fa(S: np.ndarray, rank: int, n_iter: int = 50, tol: float = 1e-6) -> FactorParams:
    """Maximum-likelihood factor analysis of a correlation matrix by the principal-factor fixed point."""
    K = S.shape[0]
    if rank == 0:
        return FactorParams(np.zeros((K, 0)), np.ones(K))
    w, V = linalg.eigh(S, subset_by_index=[K - rank, K - 1])
    L = V * np.sqrt(np.maximum(w - 1.0 + 1e-12, 0.0) + 1e-12)
    u = np.clip(1.0 - np.sum(L**2, axis=1), _U_FLOOR, 1.0)
    for _ in range(n_iter):
        sq = np.sqrt(u)
        A = S / sq[:, None] / sq[None, :]
        w, V = linalg.eigh(A, subset_by_index=[K - rank, K - 1])
        L = sq[:, None] * V * np.sqrt(np.maximum(w - 1.0, 0.0))
        new = np.clip(1.0 - np.sum(L**2, axis=1), _U_FLOOR, 1.0)
        done = np.max(np.abs(new - u)) < tol
        u = new
        if done:
            break
    # unit diagonal: rescale rows whose loadings exceed what the floor leaves
    norm2 = np.sum(L**2, axis=1)
    scale = np.where(norm2 > 1.0 - _U_FLOOR, np.sqrt((1.0 - _U_FLOOR) / np.maximum(norm2, 1e-300)), 1.0)
    L = L * scale[:, None]
    return FactorParams(L, 1.0 - np.sum(L**2, axis=1))


def fit_factor(z: np.ndarray, rank: int | str = "auto", max_rank: int | None = None) -> FactorParams:
    """Fit the low-rank-plus-diagonal correlation of standardized residuals.

    Parameters
    ----------
    z : numpy.ndarray, shape (n_subjects, n_modes)
        Training z-scores of the direct models.
    rank : int or "auto", optional
        Number of factors; ``"auto"`` chooses it by held-out likelihood (:func:`choose_rank`).
    max_rank : int, optional
        Largest rank ``"auto"`` tries.

    Returns
    -------
    FactorParams
    """
    K = z.shape[1]
    if isinstance(rank, str):
        if rank != "auto":
            raise bad_value("covariance_rank", rank, "is not 'auto' or a number of factors",
                            "pass 'auto' (held-out likelihood) or an int such as 20")
        rank = choose_rank(z, max_rank)[0]
    elif isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < K:
        raise bad_value("covariance_rank", rank, f"is not an integer in 0..{K - 1}",
                        "pass 'auto' or a number of factors below the number of modes")
    return _fit_fa(_correlation(z), int(rank))


def heldout_loglik(params: FactorParams, z: np.ndarray) -> float:
    """Mean Gaussian log-likelihood per subject of ``z`` (n, n_modes) under ``R = diag(u) + L L'``."""
    L, u = params.loadings, params.uniqueness
    K = u.size
    Lu = L / u[:, None]
    core = np.eye(L.shape[1]) + L.T @ Lu
    cf = linalg.cho_factor(core)
    logdet = np.sum(np.log(u)) + 2.0 * np.sum(np.log(np.diag(cf[0])))
    a = z @ Lu
    quad = np.sum(z**2 / u, axis=1) - np.sum(a * linalg.cho_solve(cf, a.T).T, axis=1)
    return float(np.mean(-0.5 * (logdet + quad + K * np.log(2 * np.pi))))


def factor_variance(sd: np.ndarray, Q: np.ndarray, params: FactorParams, Q2: np.ndarray | None = None) -> np.ndarray:
    """Variance of queries under ``S (diag(u) + L L') S``: (subjects x queries).

    Parameters
    ----------
    sd : numpy.ndarray, shape (n_subjects, n_modes)
        Mode sds ``s`` of each subject.
    Q : numpy.ndarray, shape (n_modes, n_queries)
        Encoded queries.
    params : FactorParams
    Q2 : numpy.ndarray, shape (n_modes, n_queries), optional
        ``Q**2`` if already computed.

    Returns
    -------
    numpy.ndarray, shape (n_subjects, n_queries)
        ``sum_k s_k^2 q_k^2 u_k + |L' (s * q)|^2``: one (subjects x modes) by (modes x queries)
        product for the diagonal and one per factor column (in chunks of columns).
    """
    L, u = params.loadings, params.uniqueness
    Q2 = Q**2 if Q2 is None else Q2
    var = (sd**2) @ (Q2 * u[:, None])
    n, nq = sd.shape[0], Q.shape[1]
    r = L.shape[1]
    step = max(1, _CHUNK // max(n * nq, 1))
    for a in range(0, r, step):
        cols = L[:, a:a + step]
        B = (cols.T[:, :, None] * Q[None]).transpose(1, 0, 2).reshape(Q.shape[0], -1)  # (K, c * nq)
        P = (sd @ B).reshape(n, cols.shape[1], nq)
        var += np.einsum("ncq,ncq->nq", P, P)
    return var
