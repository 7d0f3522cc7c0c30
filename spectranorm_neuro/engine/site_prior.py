"""The empirical-Bayes prior of a new site's offsets, learned from the training sites of all responses.

A model fitted to ``M`` responses at once (the regions of a table, the modes of a map) holds, for
every training site ``k``, one offset per response ``theta[r, k]`` (mean or log-sd). A new site's
offsets are fitted on a few of its controls with a prior learned from these (see
:func:`~spectranorm_neuro.engine.direct.adapt_direct`):

* each training offset is first turned back into its data-only estimate (posterior precision minus
  the prior's), so the hyperprior's shrinkage does not make the sites look alike
  (:func:`data_only`);
* with several responses, a site's offsets share a common part: a site with twice the spread is
  noisier in (nearly) every region, a scanner's bias map loads on the eigenmodes in a fixed way.
  The training offsets, in units of each response's residual sd, follow a one-factor model
  ``loading[r] * centre[k] + deviation[r, k]`` with the deviations' variance ``omega^2`` pooled
  over all responses and sites (:func:`common_structure`); a new site's centre is then estimated
  from all its responses at once (:func:`site_centre`), so each response's offset is shrunk
  towards its loading times the site's own centre, not towards the training sites' average;
* with one response or fewer than three sites, the prior is centred at the population level with
  the between-site variance of :func:`between_level_variance`;
* every prior is a Student-t (:data:`ADAPT_PRIOR_DF` degrees of freedom) scaled by :func:`t_scale2`.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["data_only", "between_level_variance", "common_structure", "site_centre", "t_scale2", "t_prior_variance",
           "level_priors", "centre_offsets", "MIN_CENTRE_DF", "ADAPT_PRIOR_DF"]

#: Degrees of freedom of the Student-t prior of a new site's offsets (Cauchy).
ADAPT_PRIOR_DF = 1.0

#: Degrees of freedom (sites x (responses - 1)) needed to estimate the spread of a site's offsets
#: about its centre; with fewer the prior is centred at the population level.
MIN_CENTRE_DF = 10


def data_only(theta: np.ndarray, var: np.ndarray, prior_var) -> tuple[np.ndarray, np.ndarray]:
    """Data-only estimate and variance of normal-prior offsets from their posterior.

    Parameters
    ----------
    theta, var : numpy.ndarray, shape (M, L)
        Posterior means and variances of ``L`` offsets of ``M`` responses.
    prior_var : numpy.ndarray, broadcastable to (M, L)
        Their prior variances (prior mean 0).

    Returns
    -------
    estimate, variance : numpy.ndarray, shape (M, L)
    """
    var = np.maximum(var, 1e-12)
    data_prec = np.maximum(1.0 / var - 1.0 / prior_var, 1e-6)
    return theta / var / data_prec, 1.0 / data_prec


def between_level_variance(theta: np.ndarray, cov: np.ndarray, tau2: np.ndarray, block) -> np.ndarray:
    """Between-level variance of a hierarchical block, not shrunk by the hyperprior, pooled over responses.

    The training levels' data-only offsets (:func:`data_only`) re-pooled by the EM fixed point of
    the marginal likelihood (no hyperprior); half of each response's estimate is pooled with the
    median over responses (few training levels make one response's estimate noisy).

    Parameters
    ----------
    theta : numpy.ndarray, shape (M, p)
    cov : numpy.ndarray, shape (M, p, p)
    tau2 : numpy.ndarray, shape (M,)
        The block's fitted variance.
    block : Block

    Returns
    -------
    numpy.ndarray, shape (M,)
    """
    est_t, est_v = _training_offsets(theta, cov, tau2, block)
    data_prec, data_mean = 1.0 / est_v, est_t
    est = np.maximum(tau2.copy(), 1e-8)
    for _ in range(200):
        post_var = 1.0 / (data_prec + 1.0 / est[:, None])
        post_mean = data_mean * data_prec * post_var
        est = np.mean(post_mean**2 + post_var, axis=1)
    return 0.5 * est + 0.5 * np.median(est)


def _training_offsets(theta, cov, tau2, block, conditional: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Data-only offsets (M, L) of the training levels, with their marginal or conditional variances.

    The marginal posterior variance of an offset includes the uncertainty of the intercept (which
    trades off against all the offsets at once); the conditional one (given every other
    coefficient, ``1 / (C^-1)_kk``) is the offset's own sampling noise.
    """
    if conditional:
        s = 1.0 / np.diagonal(np.linalg.inv(cov), axis1=1, axis2=2)[:, block.slice]
    else:
        s = np.diagonal(cov[:, block.slice, block.slice], axis1=1, axis2=2)
    return data_only(theta[:, block.slice], s, tau2[:, None])


def common_structure(theta: np.ndarray, cov: np.ndarray, tau2: np.ndarray, block, scale: np.ndarray):
    """A one-factor model of the training sites' offsets: each site's centre, each response's loading.

    ``offset[r, k] = loading[r] * centre[k] + deviation[r, k]`` (in ``scale`` units): a site acts
    on all responses at once, each response with its own sensitivity (a volume may take half the
    shift a thickness takes), and the deviations have a variance ``omega2`` pooled over responses
    and sites. Fitted by alternating weighted least squares (loadings averaging 1, each shrunk
    towards 1 by its precision) on the training offsets' data-only estimates.

    Parameters
    ----------
    theta, cov, tau2, block
        As in :func:`between_level_variance`.
    scale : numpy.ndarray, shape (M,)
        Each response's unit (its residual sd for mean offsets, 1 for log-sd offsets).

    Returns
    -------
    (omega2, centre2, loading) : tuple of float, float, numpy.ndarray (M,), or None
        ``omega2``: variance of a deviation; ``centre2``: variance of the sites' centres;
        ``loading``: each response's loading. ``None`` with fewer than 3 sites or when
        ``sites * (responses - 1) < MIN_CENTRE_DF``. Offsets without a common part give
        ``centre2`` near 0 and ``omega2`` near their between-site variance: each response is then
        shrunk towards a centre near 0 with its own spread, as without the factor.
    """
    M, K = theta.shape[0], block.stop - block.start
    if K < 3 or K * (M - 1) < MIN_CENTRE_DF:
        return None
    # the intercept's error is shared by every site of a response and is not a deviation from a
    # site's centre: compare offsets with the response's average offset, with their own noise only
    est, var = _training_offsets(theta, cov, tau2, block, conditional=True)
    est = est - est.mean(axis=1, keepdims=True)
    a, av = est / scale[:, None], var / scale[:, None] ** 2
    loading, omega2 = np.ones(M), max(float(np.mean(np.var(a, axis=0))), 1e-6)
    df = max(M * K - M - K + 1, 1)
    for _ in range(200):
        w = 1.0 / (av + omega2)
        centre = (w * loading[:, None] * a).sum(axis=0) / (w * loading[:, None] ** 2).sum(axis=0)
        info = np.maximum((w * centre**2).sum(axis=1), 1e-12)
        raw = (w * a * centre).sum(axis=1) / info
        # loadings shrunk towards 1 by their own precision (empirical Bayes): with sites whose
        # centres are alike the loadings are mostly noise, and noisy loadings would attenuate a
        # new site's centre
        spread = max(float(np.mean((raw - 1.0) ** 2 - 1.0 / info)), 0.0)
        loading = 1.0 + (raw - 1.0) * spread / (spread + 1.0 / info)
        mean_loading = loading.mean()
        if abs(mean_loading) < 1e-6:
            return None
        loading, centre = loading / mean_loading, centre * mean_loading
        new = max(float(np.sum((a - np.outer(loading, centre)) ** 2 - av)) / df, 1e-6)
        if abs(new - omega2) <= 1e-8 * omega2:
            break
        omega2 = new
    centre_var = 1.0 / (w * loading[:, None] ** 2).sum(axis=0)
    centre2 = max(float(np.mean(centre**2 - centre_var)), 1e-6)
    return omega2, centre2, loading


def site_centre(estimate: np.ndarray, variance: np.ndarray, omega2: float, prior_scale2: float,
                subject_scores: np.ndarray | None = None, loading: np.ndarray | None = None) -> tuple[float, float]:
    """Posterior mode and variance of a new site's centre from its data-only offsets over responses.

    The centre's prior is the same Student-t as the offsets' (:data:`ADAPT_PRIOR_DF` degrees of
    freedom, squared scale ``prior_scale2``, see :func:`t_scale2`), fitted by EM as a scale mixture
    of normals: with few training sites the spread of their centres is poorly known, and a site
    whose controls clearly lie beyond it keeps its centre.

    Parameters
    ----------
    estimate, variance : numpy.ndarray, shape (M,)
        The new site's data-only offsets and their variances, in ``scale`` units.
    omega2 : float
        Variance of an offset about its site's centre (:func:`common_structure`).
    prior_scale2 : float
        Squared scale of the Student-t prior of a site centre (mean 0).
    subject_scores : numpy.ndarray, shape (n, M), optional
        Each control's contribution to each response's offset (standardized residual for a mean
        offset, ``(r^2 - 1) / 2`` for a log-sd offset). The responses of one subject are
        correlated (a subject thick in one region is thick in others), so the centre is no more
        precise than the spread over subjects of their weighted average score says; this
        empirical variance is the floor of the centre's variance.
    loading : numpy.ndarray, shape (M,), optional
        Each response's loading on the centre (:func:`common_structure`); default 1.

    Returns
    -------
    centre, centre_var, prior_var : float
        The posterior mode and variance, and the normal variance the t prior amounts to there.
    """
    lam = np.ones_like(estimate) if loading is None else loading
    w = 1.0 / (variance + omega2)
    data_var = 1.0 / (w * lam**2).sum()
    centre = float((w * lam * estimate).sum() * data_var)
    if subject_scores is not None and subject_scores.shape[0] > 1:
        per_subject = subject_scores @ (w * lam * data_var)
        data_var = max(data_var, float(np.var(per_subject, ddof=1)) / subject_scores.shape[0])
    prior_var = prior_scale2
    for _ in range(50):
        post_var = 1.0 / (1.0 / prior_var + 1.0 / data_var)
        post = centre / data_var * post_var
        prior_var = t_prior_variance(post**2 + post_var, prior_scale2)
    post_var = 1.0 / (1.0 / prior_var + 1.0 / data_var)
    return centre / data_var * post_var, post_var, prior_var


def t_prior_variance(second_moment, scale2):
    """One EM step of a Student-t prior fitted as a scale mixture of normals: the normal variance it amounts to.

    ``scale2 / w`` with ``w = (nu + 1) / (nu + E[theta^2] / scale2)`` (:data:`ADAPT_PRIOR_DF` = nu), the
    posterior mean of the mixing weight given the offset's posterior second moment ``E[theta^2]``.
    Arrays broadcast.
    """
    weight = (ADAPT_PRIOR_DF + 1.0) / (ADAPT_PRIOR_DF + second_moment / scale2)
    return scale2 / weight


def t_scale2(variance, n_levels: int):
    """Squared scale of the Student-t prior whose curvature at 0 is that of ``N(0, variance (1 + 1/K))``.

    A new level's offset about an estimated centre has variance ``variance (1 + 1/K)`` (the centre
    is itself estimated from ``K`` levels). The Student-t prior with :data:`ADAPT_PRIOR_DF` degrees
    of freedom and ``scale^2 = (nu + 1) / nu`` times that shrinks small offsets no more than that
    normal would (a Cauchy of scale ``tau`` shrinks them as a normal of variance ``tau^2 / 2``,
    which pulled a typical site's offsets halfway to zero); its heavy tails only add room for a
    site unlike the training ones.
    """
    return variance * (1.0 + 1.0 / n_levels) * (ADAPT_PRIOR_DF + 1.0) / ADAPT_PRIOR_DF


def level_priors(design, params, scale: np.ndarray) -> tuple[np.ndarray, list]:
    """Prior of a new level's offsets per hierarchical block: t scale^2 (M, h) and the common structure.

    Parameters
    ----------
    design : Design
        The fitted design of one target.
    params : DirectParams
        The fitted parameters (``params.target(design.target)``).
    scale : numpy.ndarray, shape (M,)
        Each response's unit for this target (see :func:`common_structure`).

    Returns
    -------
    scale2 : numpy.ndarray, shape (M, n_hierarchical_blocks)
    structure : list of (omega2, centre2, loading) or None, one per block (see :func:`common_structure`)
    """
    theta, cov, tau2 = params.target(design.target)
    out, structure = tau2.copy(), []
    for j, block in enumerate(design.hierarchical_blocks):
        common = None
        if design.spec.covariate(block.name).effect == "categorical":
            n_levels = block.stop - block.start
            if design.target in ("mean", "variance"):
                common = common_structure(theta, cov, tau2[:, j], block, scale)
            var = (common[0] * scale**2 if common is not None
                   else between_level_variance(theta, cov, tau2[:, j], block))
            out[:, j] = t_scale2(var, n_levels)
        structure.append(common)
    return out, structure


def centre_offsets(designs, Xs, fit, frees, wide, structures, scales, n_levels, dof, Ys):
    """Each new level's centre over responses (a shared part of its offsets) as fixed linear-predictor parts.

    A log-sd offset estimated from ``nu`` degrees of freedom is biased by ``(psi(nu/2) - log(nu/2)) / 2``
    (the log of a chi-square; -0.11 from 5 controls): harmless in one response, it would be the
    centre's whole error when averaged over many, so it is removed from each before averaging.

    Parameters
    ----------
    designs, Xs : sequences of Design and numpy.ndarray (n, p_k)
        The new designs and the controls' design matrices.
    fit : LaplaceFit
        The adaptation fit with the wide prior ``wide`` (list of (M, h_k)).
    frees : sequence of numpy.ndarray of bool, each (p_k,)
        The new levels' columns.
    structures, scales, n_levels
        Per target: :func:`level_priors`' structures, the responses' units, the fitted levels per block.
    dof : numpy.ndarray, shape (n, M), or None
        Each control's degrees of freedom in the variance (REML weights), or 1.
    Ys : numpy.ndarray, shape (n, M)
        The controls' standardized responses.

    Returns
    -------
    offsets : list of numpy.ndarray, each (n, M)
    centres : list of (target index, column, centre (M,), its posterior and prior variances (M,))
    """
    offsets, centres = [np.zeros((X.shape[0], fit.theta[0].shape[0])) for X in Xs], []
    r = (Ys - Xs[0] @ fit.theta[0].T) * np.exp(-(Xs[1] @ fit.theta[1].T))  # (n, M) at the wide fit
    scores = {"mean": r, "variance": 0.5 * (r**2 - 1.0)}
    for k, d in enumerate(designs):
        for j, b in enumerate(d.hierarchical_blocks):
            if structures[k][j] is None:
                continue
            omega2, centre2, loading = structures[k][j]
            for col in np.flatnonzero(frees[k][b.slice]) + b.start:
                est, var = data_only(fit.theta[k][:, col], fit.cov[k][:, col, col], wide[k][:, j])
                rows = Xs[k][:, col] != 0
                if d.target == "variance":
                    nu = np.maximum(dof[rows].sum(axis=0) if dof is not None else rows.sum(), 1.0)
                    est = est + 0.5 * (np.log(nu / 2.0) - special.digamma(nu / 2.0))
                c, c_var, c_prior = site_centre(est / scales[k], var / scales[k] ** 2, omega2,
                                                t_scale2(centre2, n_levels[k][j]), scores[d.target][rows], loading)
                unit2 = (loading * scales[k]) ** 2
                offsets[k] += np.outer(Xs[k][:, col], loading * c * scales[k])
                centres.append((k, col, loading * c * scales[k], c_var * unit2, c_prior * unit2))
    return offsets, centres
