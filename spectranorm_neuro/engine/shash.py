"""The sinh-arcsinh (SHASH) likelihood of Jones & Pewsey (2009), mean/sd parametrization ("SHASHb").

If ``Z ~ N(0, 1)``, ``X = sinh((asinh(Z) + epsilon) / delta)`` has a SHASH(epsilon, delta)
distribution: ``epsilon`` sets the skew (positive: right-skewed) and ``delta`` the tails
(``delta < 1``: heavier than normal, ``delta > 1``: lighter); ``epsilon = 0, delta = 1`` is the
standard normal. Its mean and variance are closed forms (Jones & Pewsey 2009, section 3)::

    m(eps, delta) = sinh(eps / delta) P(1 / delta)
    v(eps, delta)^2 = (cosh(2 eps / delta) P(2 / delta) - 1) / 2 - m^2
    P(q) = exp(1/4) / sqrt(8 pi) (K_{(q+1)/2}(1/4) + K_{(q-1)/2}(1/4))

(``K`` the modified Bessel function of the second kind). As the "SHASHb" likelihood of the
normative-modelling literature (PCNtoolkit), a response is ``y = mu + sigma (X - m) / v``: ``mu``
and ``sigma`` are the response's **mean and sd** whatever the shape, so the mean and log-sd
effects keep their Gaussian meaning, and the shape adds skew and tails on top. Then

    F(y) = Phi(S),  S = sinh(delta asinh(m + v r) - epsilon),  r = (y - mu) / sigma,

so the deviation score ``z = Phi^-1(F(y)) = S`` is exact and closed-form, centiles are ``Phi(S)``,
and the log density is ``log(delta cosh(A) / sqrt(2 pi (1 + X^2))) - S^2/2 + log(v / sigma)``.

The shape parameters are bounded smooth functions of their linear predictors (no NaN whatever
the data): ``epsilon = EPS_MAX tanh(eta_skew / EPS_MAX)`` and ``log delta = LOG_DELTA_MAX
tanh(eta_tail / LOG_DELTA_MAX)``, so ``eta = 0`` is the normal and small ``eta`` is the identity.
``P`` is tabulated once (a cubic spline of ``log P`` in ``log delta``, relative error < 1e-9).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special
from scipy.interpolate import CubicSpline

__all__ = ["EPS_MAX", "LOG_DELTA_MAX", "log_p_tables", "shape_parameters", "shash_moments", "shash_z",
           "shash_log_density", "shash_quantile", "ShashFamily", "quantiles", "harmonize_values"]

EPS_MAX = 2.0
LOG_DELTA_MAX = float(np.log(3.0))  # delta in [1/3, 3]
_LOG_2PI = float(np.log(2 * np.pi))
_FD_STEP = 1e-6


def _build_tables() -> tuple[CubicSpline, CubicSpline]:
    u = np.linspace(-LOG_DELTA_MAX - 0.05, LOG_DELTA_MAX + 0.05, 1201)

    def log_p(q):
        return 0.25 - 0.5 * np.log(8 * np.pi) + np.log(special.kv((q + 1) / 2, 0.25) + special.kv((q - 1) / 2, 0.25))

    return CubicSpline(u, log_p(np.exp(-u))), CubicSpline(u, log_p(2.0 * np.exp(-u)))


_LP1, _LP2 = _build_tables()


def log_p_tables() -> tuple[CubicSpline, CubicSpline]:
    """The tables of ``log P(1/delta)`` and ``log P(2/delta)`` as cubic splines in ``log delta``."""
    return _LP1, _LP2


def shape_parameters(eta_skew, eta_tail) -> tuple[np.ndarray, np.ndarray]:
    """Bounded ``epsilon`` and ``delta`` from their linear predictors (arrays of any shape)."""
    eps = EPS_MAX * np.tanh(np.asarray(eta_skew, dtype=float) / EPS_MAX)
    delta = np.exp(LOG_DELTA_MAX * np.tanh(np.asarray(eta_tail, dtype=float) / LOG_DELTA_MAX))
    return eps, delta


def shash_moments(eps, delta, derivatives: bool = False):
    """Mean ``m`` and sd ``v`` of SHASH(eps, delta) (and their derivatives in eps and delta).

    Parameters
    ----------
    eps, delta : numpy.ndarray, same shape
        Shape parameters (``delta`` within the bounds ``exp(+-LOG_DELTA_MAX)``).
    derivatives : bool, optional
        Also return ``dm/deps, dm/ddelta, dv/deps, dv/ddelta``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(m, v)`` or ``(m, v, m_e, m_d, v_e, v_d)``, each of the input shape.
    """
    u = np.log(delta)
    p1, p2 = np.exp(_LP1(u)), np.exp(_LP2(u))
    a = eps / delta
    sh, ch = np.sinh(a), np.cosh(a)
    sh2, ch2 = np.sinh(2 * a), np.cosh(2 * a)
    m = sh * p1
    e2 = 0.5 * (ch2 * p2 - 1.0)
    v = np.sqrt(np.maximum(e2 - m * m, 1e-12))
    if not derivatives:
        return m, v
    dp1 = p1 * _LP1(u, 1) / delta
    dp2 = p2 * _LP2(u, 1) / delta
    m_e = ch * p1 / delta
    m_d = -a / delta * ch * p1 + sh * dp1
    e2_e = sh2 * p2 / delta
    e2_d = 0.5 * (-2 * a / delta * sh2 * p2 + ch2 * dp2)
    v_e = (e2_e - 2 * m * m_e) / (2 * v)
    v_d = (e2_d - 2 * m * m_d) / (2 * v)
    return m, v, m_e, m_d, v_e, v_d


def shash_z(y, mu, sd, eps, delta) -> np.ndarray:
    """Exact deviation scores ``Phi^-1(F(y))`` of SHASHb(mu, sd, eps, delta); arrays broadcast."""
    m, v = shash_moments(eps, delta)
    x = m + v * (np.asarray(y, dtype=float) - mu) / sd
    with np.errstate(over="ignore"):
        return np.sinh(delta * np.arcsinh(x) - eps)


def _log_cosh(a):
    a = np.abs(a)
    return a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0)


def shash_log_density(y, mu, sd, eps, delta) -> np.ndarray:
    """Exact log density of SHASHb(mu, sd, eps, delta) at ``y``; arrays broadcast."""
    m, v = shash_moments(eps, delta)
    x = m + v * (np.asarray(y, dtype=float) - mu) / sd
    a = delta * np.arcsinh(x) - eps
    with np.errstate(over="ignore"):
        s2 = np.sinh(a) ** 2
    return (np.log(delta) + _log_cosh(a) - 0.5 * np.log1p(x * x) - 0.5 * _LOG_2PI - 0.5 * s2
            + np.log(v) - np.log(sd))


def shash_quantile(p, mu, sd, eps, delta) -> np.ndarray:
    """Quantile of SHASHb at probability ``p`` (0-1): the centile curves; arrays broadcast."""
    m, v = shash_moments(eps, delta)
    x = np.sinh((np.arcsinh(special.ndtri(np.asarray(p, dtype=float))) + eps) / delta)
    return mu + sd * (x - m) / v


class ShashFamily:
    """``y ~ SHASHb(eta_mean, exp(eta_logsd), eps(eta_skew), delta(eta_tail))``; data ``Y`` (n, M).

    Same interface as :class:`~spectranorm_neuro.engine.inference.GaussianFamily` with four
    linear predictors. Scores are analytic; the observed negative Hessian is analytic in the
    location and log-scale, and the forward difference of the scores in the skew and tail
    directions (symmetrized among them); the positive-definite fallback is the outer product of
    the scores (BHHH). When the shape does not vary over subjects (no covariate acts on it, the
    default) its moments are computed once per response.

    Parameters
    ----------
    Y : numpy.ndarray, shape (n, M)
    dof : numpy.ndarray, broadcastable to (n, M), optional
        Weights ``c_i`` of the ``log sd`` term, the small-sample (REML-like) correction of
        :class:`~spectranorm_neuro.engine.inference.GaussianFamily`. Default 1.
    """

    n_predictors = 4

    def __init__(self, Y: np.ndarray, dof: np.ndarray | None = None):
        self.Y = Y
        self.dof = 1.0 if dof is None else dof

    def _scores(self, etas: Sequence[np.ndarray], scores: bool = True, location: bool = False, loglik: bool = True):
        mu, logsd, eta_e, eta_d = etas
        if eta_e.shape[0] > 1 and not (np.ptp(eta_e, axis=0).any() or np.ptp(eta_d, axis=0).any()):
            eta_e, eta_d = eta_e[:1], eta_d[:1]  # one shape per response: moments once, broadcast
        te = np.tanh(eta_e / EPS_MAX)
        td = np.tanh(eta_d / LOG_DELTA_MAX)
        eps = EPS_MAX * te
        delta = np.exp(LOG_DELTA_MAX * td)
        m, v, m_e, m_d, v_e, v_d = shash_moments(eps, delta, derivatives=True)
        inv_sd = np.exp(-logsd)
        r = (self.Y - mu) * inv_sd
        x = m + v * r
        q = 1.0 + x * x
        sq = np.sqrt(q)
        ash = np.arcsinh(x)
        a = delta * ash - eps
        # sinh, cosh, tanh and log cosh of a from one exponential: e = exp(-2|a|) in (0, 1]
        abs_a = np.abs(a)
        e = np.exp(-2.0 * abs_a)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            half = 0.5 / np.sqrt(e)  # exp(|a|) / 2
            s = np.copysign((1.0 - e) * half, a)
            c = (1.0 + e) * half
            k = np.copysign((1.0 - e) / (1.0 + e), a) - s * c
        ll = None
        if loglik:
            log_cosh = abs_a + np.log1p(e) - np.log(2.0)
            ll = (np.log(delta) + log_cosh - 0.5 * np.log(q) - 0.5 * _LOG_2PI - 0.5 * s * s + np.log(v)
                  - self.dof * logsd)
        if not scores:
            return ll, None
        ll_x = delta / sq * k - x / q
        s_mu = -ll_x * v * inv_sd
        s_sd = -ll_x * v * r - self.dof
        s_e = ll_x * (m_e + v_e * r) - k + v_e / v
        s_d = ll_x * (m_d + v_d * r) + 1.0 / delta + ash * k + v_d / v
        s_e = s_e * (1.0 - te * te)
        s_d = s_d * delta * (1.0 - td * td)
        if not location:
            return ll, [s_mu, s_sd, s_e, s_d]
        # the observed information of the location-scale part, analytic: d2 ll / dx2 and the chain rule
        with np.errstate(over="ignore", invalid="ignore"):
            k_a = 1.0 / (c * c) - c * c - s * s
        ll_xx = -delta * x * k / (q * sq) + delta * delta / q * k_a - (1.0 - x * x) / (q * q)
        vs = v * inv_sd
        h_mu_mu = -ll_xx * vs * vs
        h_mu_sd = -(ll_xx * v * r + ll_x) * vs
        h_sd_sd = -(ll_xx * v * r + ll_x) * v * r
        return ll, [s_mu, s_sd, s_e, s_d], (h_mu_mu, h_mu_sd, h_sd_sd)

    def evaluate(self, etas: Sequence[np.ndarray], hessian: bool = True):
        """Log-likelihood (M,), scores, and BHHH / observed Hessian weights (each (n, M))."""
        etas = [np.broadcast_to(e, self.Y.shape) for e in etas]
        with np.errstate(over="ignore", invalid="ignore"):
            out = self._scores(etas, scores=hessian, location=hessian)
        ll, scores = out[0], out[1]
        ll_sum = ll.sum(axis=0)
        ll_sum = np.where(np.isfinite(ll_sum), ll_sum, -np.inf)
        if not hessian:
            return ll_sum, None, None, None
        K = len(etas)
        # location-scale block analytic; the shape rows by forward differences of the scores
        observed = {(0, 0): out[2][0], (0, 1): out[2][1], (1, 1): out[2][2]}
        jac = {}
        for k in (2, 3):
            up = list(etas)
            up[k] = etas[k] + _FD_STEP
            with np.errstate(over="ignore", invalid="ignore"):
                s_up = self._scores(up, loglik=False)[1]
            for j in range(K):
                jac[(k, j)] = (s_up[j] - scores[j]) / _FD_STEP
        for j in (0, 1):
            for k in (2, 3):
                observed[(j, k)] = -jac[(k, j)]
        for k in (2, 3):
            for j in range(k, K):
                observed[(k, j)] = -0.5 * (jac[(k, j)] + jac[(j, k)])
        fisher = {}
        for k in range(K):
            for j in range(k, K):
                observed[(k, j)] = np.nan_to_num(observed[(k, j)])
                fisher[(k, j)] = np.nan_to_num(scores[k] * scores[j])
        scores = [np.nan_to_num(s) for s in scores]
        return ll_sum, scores, fisher, observed


def quantiles(dist: dict[str, np.ndarray], p, axis: int = -1) -> np.ndarray:
    """Values at probabilities ``p`` of predicted distributions (``mu``, ``sd`` and optional shape).

    ``dist`` arrays of shape (n,) are broadcast against ``p`` along a new ``axis``.
    """
    parts = {k: np.expand_dims(v, axis) for k, v in dist.items()}
    if "epsilon" in parts:
        return shash_quantile(p, parts["mu"], parts["sd"], parts["epsilon"], parts["delta"])
    return parts["mu"] + parts["sd"] * special.ndtri(p)


def harmonize_values(y, full: dict[str, np.ndarray], without: dict[str, np.ndarray]) -> np.ndarray:
    """Map observations ``y`` to the same centile of the ``without`` distribution (same-shape arrays)."""
    if "epsilon" not in full:
        return without["mu"] + (y - full["mu"]) / full["sd"] * without["sd"]
    z = shash_z(y, full["mu"], full["sd"], full["epsilon"], full["delta"])
    m, v = shash_moments(without["epsilon"], without["delta"])
    x = np.sinh((np.arcsinh(z) + without["epsilon"]) / without["delta"])
    return without["mu"] + without["sd"] * (x - m) / v
