"""Effects of covariates on a linear predictor, written once and reused for every target.

Each target of a normative model (the mean, the log standard deviation, and the Fisher-z of a
cross-mode correlation) is a linear predictor ``eta = X @ theta``. A :class:`Design` assembles
``X`` from an intercept and one effect block per influencing covariate:

* ``linear``: the standardized covariate, one column;
* ``spline``: a cubic B-spline basis on knots captured at fit time (``df`` columns; the first basis
  function is dropped so the block is not collinear with the intercept); values beyond the padded
  boundary knots are clamped (constant extrapolation) and warned about;
* ``pspline``: a penalized cubic B-spline with ``df`` basis functions on equally spaced knots and a
  second-order difference penalty (Eilers & Marx), written as a mixed model: a fixed linear column
  plus ``df - 2`` columns ``B D'(D D')^-1`` (scaled to unit average variance) whose coefficients are
  ~ N(0, tau^2); tau^2, the inverse smoothing parameter, is learned per model exactly as the
  variance of a hierarchical site effect (empirical Bayes on the fast path), so the smoothness is
  chosen from the data;
* ``categorical`` fixed: sum-to-zero (deviation) coding, ``K - 1`` columns, so the population
  level is the average of the levels;
* ``categorical`` hierarchical: one-hot, ``K`` columns, with offsets ~ N(0, tau^2) and tau learned
  (empirical Bayes on the fast path, sampled on the pymc path); an unseen level maps to the
  population level (all zeros) and is reported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.interpolate import BSpline

from ..exceptions import ExtrapolationWarning, UnseenCategoryError, bad_value
from .specs import CovariateSpec, NormativeModelSpec

__all__ = ["Block", "Design", "effect_width", "effect_columns", "relayout", "new_level_mask", "SMOOTH_HYPERPRIOR"]

#: Default inverse-gamma (shape, scale) hyperprior of the smoothing variance of ``pspline`` effects,
#: overridable per target with ``priors[target]["smooth_a"]`` / ``["smooth_b"]``.
SMOOTH_HYPERPRIOR = (1.0, 1e-4)


def effect_width(cov: CovariateSpec) -> int:
    """Number of design columns of a covariate's effect."""
    if cov.effect == "linear":
        return 1
    if cov.effect in ("spline", "pspline"):
        return len(cov.knots) - cov.degree - 2
    n = len(cov.categories)
    extra = len(cov.adapted or [])
    return (n if cov.hierarchical else n - 1) + extra


def _numeric(values: pd.Series | np.ndarray) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)


def effect_columns(cov: CovariateSpec, values, warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Design columns of one covariate.

    Parameters
    ----------
    cov : CovariateSpec
        Covariate with captured fit-time state.
    values : array_like, shape (n,)
        Covariate values.
    warn : bool, optional
        Warn (:class:`ExtrapolationWarning`) when numerical values leave the training range.

    Returns
    -------
    columns : numpy.ndarray, shape (n, effect_width(cov))
    unseen : numpy.ndarray of bool, shape (n,)
        Rows whose category was not seen at fit time (hierarchical effects only; fixed effects
        raise :class:`UnseenCategoryError` instead).
    """
    n = len(values)
    unseen = np.zeros(n, dtype=bool)
    if cov.cov_type == "numerical":
        x = _numeric(values)
        slack = 0.01 * (cov.maximum - cov.minimum)  # ignore excursions below 1% of the range
        if warn and n and (x.min() < cov.minimum - slack or x.max() > cov.maximum + slack):
            warnings.warn(
                f"covariate {cov.name!r} has values in [{x.min():g}, {x.max():g}] outside the training "
                f"range [{cov.minimum:g}, {cov.maximum:g}]; predictions there are extrapolations",
                ExtrapolationWarning, stacklevel=3)
        if cov.effect == "linear":
            return ((x - cov.mean) / cov.std)[:, None], unseen
        t = np.asarray(cov.knots)
        xc = np.clip(x, t[0], t[-1])
        dm = BSpline.design_matrix(xc, t, cov.degree, extrapolate=False).toarray()
        if cov.effect == "pspline":
            return np.hstack([((xc - cov.mean) / cov.std)[:, None], dm @ _penalized_transform(cov)]), unseen
        return dm[:, 1:], unseen
    all_levels = cov.known_levels
    levels = {c: i for i, c in enumerate(all_levels)}
    # map each distinct value once, then broadcast to the rows
    row_codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    lookup = np.array([levels.get(str(v), -1) for v in uniques], dtype=int)
    codes = lookup[row_codes] if len(row_codes) else np.zeros(0, dtype=int)
    unseen = codes < 0
    k = len(cov.categories)
    if not cov.hierarchical and unseen.any():
        new = cov.unseen_levels(values)
        raise bad_value(cov.name, new, f"holds level(s) not seen at fit time (known: {all_levels})",
                        f"remove those rows, adapt the model with adapt_fit(...) if {cov.name!r} is a "
                        f"batch covariate, or pass predict_without=[{cov.name!r}] to predict at "
                        "population level", UnseenCategoryError)
    rows = np.flatnonzero(~unseen)
    if cov.hierarchical:  # one-hot over fit-time then adapted levels
        out = np.zeros((n, len(all_levels)))
        out[rows, codes[rows]] = 1.0
        return out, unseen
    # deviation coding of fit-time levels, then one column per adapted level
    out = np.zeros((n, k - 1 + len(all_levels) - k))
    last = codes == k - 1
    out[last, : k - 1] = -1.0
    base = rows[codes[rows] < k - 1]
    out[base, codes[base]] = 1.0
    extra = rows[codes[rows] >= k]
    out[extra, codes[extra] - 1] = 1.0
    return out, unseen


def _penalized_transform(cov: CovariateSpec) -> np.ndarray:
    """``D'(D D')^-1`` (K, K - 2) of a P-spline's second differences, scaled to unit average variance.

    The scale makes ``tau^2`` the average variance of the smooth part over the covariate's range.
    """
    t = np.asarray(cov.knots)
    K = len(t) - cov.degree - 1
    D = np.diff(np.eye(K), n=2, axis=0)
    T = D.T @ np.linalg.inv(D @ D.T)
    grid = np.linspace(t[0], t[-1], 201)
    Zg = BSpline.design_matrix(grid, t, cov.degree, extrapolate=False).toarray() @ T
    return T / np.sqrt(np.mean(np.sum(Zg**2, axis=1)))


def _effect_blocks(cov: CovariateSpec) -> list[tuple[int, bool]]:
    """(width, hierarchical) of each block of a covariate's effect."""
    width = effect_width(cov)
    if cov.effect == "pspline":
        return [(1, False), (width - 1, True)]
    return [(width, cov.hierarchical)]


@dataclass(frozen=True)
class Block:
    """A contiguous group of design columns sharing one prior.

    Attributes
    ----------
    name : str
        ``"intercept"`` or the covariate name (a ``pspline`` effect has two blocks: its linear
        part, fixed, and its penalized part, hierarchical).
    start, stop : int
        Column slice of the block.
    hierarchical : bool
        Offsets with a learned variance (else fixed normal prior with sd ``scale``).
    scale : float
        Prior sd of fixed coefficients.
    """

    name: str
    start: int
    stop: int
    hierarchical: bool
    scale: float

    @property
    def slice(self) -> slice:
        """Column slice."""
        return slice(self.start, self.stop)


class Design:
    """The design of one target's linear predictor.

    Parameters
    ----------
    spec : NormativeModelSpec
        Specification with captured fit-time state.
    target : {"mean", "variance", "correlation", "skew", "tail"}
        Which linear predictor (skew and tail: shape parameters of the SHASHb likelihood).
    """

    def __init__(self, spec: NormativeModelSpec, target: str):
        self.spec = spec
        self.target = target
        prior = spec.priors[target]
        names = spec.targets()[target]
        blocks = [Block("intercept", 0, 1, False, float(prior["intercept"]))]
        start = 1
        self._spans = []
        for cov in spec.covariates:  # spec order keeps designs identical whatever the list order
            if cov.name not in names:
                continue
            first = start
            for width, hierarchical in _effect_blocks(cov):
                blocks.append(Block(cov.name, start, start + width, hierarchical, float(prior["effect"])))
                start += width
            self._spans.append((cov, first, start))
        self.blocks = tuple(blocks)
        self.n_columns = start

    @property
    def covariates(self) -> list[str]:
        """Covariates of this design (intercept excluded)."""
        return [cov.name for cov, _, _ in self._spans]

    def hyperprior(self, block: Block) -> tuple[float, float]:
        """Inverse-gamma (shape, scale) hyperprior of a hierarchical block's variance."""
        prior = self.spec.priors[self.target]
        if self.spec.covariate(block.name).effect == "pspline":
            a, b = SMOOTH_HYPERPRIOR
            return float(prior.get("smooth_a", a)), float(prior.get("smooth_b", b))
        return float(prior["hier_a"]), float(prior["hier_b"])

    @property
    def hierarchical_blocks(self) -> list[Block]:
        """Blocks with a learned variance."""
        return [b for b in self.blocks if b.hierarchical]

    def matrix(self, dataframe: pd.DataFrame, without=(), warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Design matrix for a covariate table.

        Parameters
        ----------
        dataframe : pandas.DataFrame, shape (n, ...)
            Covariates (columns of ``without`` may be absent).
        without : sequence of str, optional
            Covariates to predict without: categorical effects are zeroed (population level),
            numerical ones are held at their training mean.
        warn : bool, optional
            Warn about extrapolation of numerical covariates.

        Returns
        -------
        X : numpy.ndarray, shape (n, n_columns)
        unseen : numpy.ndarray of bool, shape (n, n_hierarchical_blocks)
            Rows falling back to the population level because their level of a hierarchical
            covariate was not seen at fit time.
        """
        n = len(dataframe)
        X = np.zeros((n, self.n_columns))
        X[:, 0] = 1.0
        hier = self.hierarchical_blocks
        unseen = np.zeros((n, len(hier)), dtype=bool)
        for cov, start, stop in self._spans:
            if cov.name in without:
                if cov.cov_type == "numerical":
                    cols, _ = effect_columns(cov, np.full(n, cov.mean), warn=False)
                    X[:, start:stop] = cols
                continue
            cols, miss = effect_columns(cov, dataframe[cov.name], warn=warn)
            X[:, start:stop] = cols
            if cov.hierarchical:
                unseen[:, [j for j, b in enumerate(hier) if b.name == cov.name]] = miss[:, None]
        return X, unseen

    def prior_precision(self, tau2: np.ndarray | None, n_targets: int) -> np.ndarray:
        """Diagonal prior precision of every coefficient for each fitted target (mode or pair).

        Parameters
        ----------
        tau2 : numpy.ndarray, shape (n_targets, n_hierarchical_blocks), optional
            Variances of the hierarchical blocks.
        n_targets : int
            Number of modes or pairs.

        Returns
        -------
        numpy.ndarray, shape (n_targets, n_columns)
        """
        prec = np.empty((n_targets, self.n_columns))
        for block in self.blocks:
            if block.hierarchical:
                j = self.hierarchical_blocks.index(block)
                prec[:, block.slice] = 1.0 / tau2[:, j:j + 1]
            else:
                prec[:, block.slice] = 1.0 / block.scale**2
        return prec


def relayout(arr: np.ndarray, old_design: Design, new_design: Design, axes: tuple[int, ...]) -> np.ndarray:
    """Re-lay coefficient arrays from ``old_design``'s columns onto ``new_design``'s.

    ``new_design`` has the same blocks with possibly more columns at the end of some (levels added
    by adaptation); new columns are zero. ``axes`` are the column axes of ``arr`` (one for
    coefficients (M, p), two for covariances (M, p, p)).
    """
    shape = list(arr.shape)
    for ax in axes:
        shape[ax] = new_design.n_columns
    out = np.zeros(shape)
    old_cols, new_cols = [], []
    for ob, nb in zip(old_design.blocks, new_design.blocks):
        width = ob.stop - ob.start
        old_cols.extend(range(ob.start, ob.stop))
        new_cols.extend(range(nb.start, nb.start + width))
    index_old = [slice(None)] * arr.ndim
    index_new = [slice(None)] * arr.ndim
    if len(axes) == 1:
        index_old[axes[0]] = old_cols
        index_new[axes[0]] = new_cols
        out[tuple(index_new)] = arr[tuple(index_old)]
    else:
        o, n = np.asarray(old_cols), np.asarray(new_cols)
        out[:, n[:, None], n[None, :]] = arr[:, o[:, None], o[None, :]]
    return out


def new_level_mask(design: Design, added: dict) -> np.ndarray:
    """Boolean mask (n_columns,) of the columns of levels in ``added`` ({covariate: [levels]})."""
    free = np.zeros(design.n_columns, bool)
    for block in design.blocks[1:]:
        n_new = len(added.get(block.name, []))
        if n_new:
            free[block.stop - n_new:block.stop] = True
    return free
