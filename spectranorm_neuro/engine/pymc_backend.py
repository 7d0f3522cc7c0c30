"""The pymc inference path: one vectorized pymc model over all eigenmodes (ADVI or NUTS).

:func:`fit_direct_pymc` fits the same direct models as :func:`~spectranorm_neuro.engine.direct.
fit_direct` (same standardization, design matrices and priors), but with full Bayesian inference
in pymc instead of MAP + Laplace + empirical Bayes. Every parameter carries a ``"mode"``
dimension, so the ``M`` regressions live in **one** pymc model and one compiled gradient::

    y_im / sd_m - mean_m ~ N(mu_im, sigma_im^2)                 (each mode z-scored, as fit_direct)
    mu_i. = X_mean[i] @ beta.T,   log sigma_i. = X_var[i] @ gamma.T
    fixed block B:         beta[:, B] ~ N(0, scale_B^2)             (intercept, splines, BLR levels)
    hierarchical block B:  beta[:, B] = offset * tau_B,  offset ~ N(0, 1)      (non-centred)
                           tau_B^2 ~ InverseGamma(hier_a, hier_b)    (one per mode and block)

The returned :class:`~spectranorm_neuro.engine.direct.DirectParams` holds posterior means of the
coefficients, their posterior covariances (from draws), posterior means of ``tau^2`` and
per-mode convergence flags, so every prediction function works unchanged.

How it is made fast (issue #4: a naive vectorized ADVI took ~9 min for 20k steps)
-------------------------------------------------------------------------------
Measured on the seed cohort (3000 subjects, 100 modes, age spline df=5 + 6-site hierarchical
effects on the mean and the log-sd) on a shared 2-core machine, ``bench/bench_pymc.py``: the
whole ADVI fit takes ~13 s (~60 s the very first time, when pytensor compiles its C code), the
fast path ~3.5 s. Cost of one ADVI step (wall ms), each change added to the previous ones:

==========================================================  =========
pytensor defaults (pip install: no BLAS, OpenBLAS threads)    20.9
+ pytensor's C code linked to scipy's OpenBLAS                 9.6
+ one BLAS thread                                              9.1 (CPU time halved)
+ intermediate arrays kept between steps (``allow_gc=False``)  4.1
+ Normal density written with the log-sd (one ``exp``)         3.9
==========================================================  =========

and the number of steps falls from tens of thousands to ~2000:

* **BLAS.** A pip-installed pytensor finds no BLAS. numpy's bundled OpenBLAS uses 64-bit integers
  and suffixed names, but scipy's wheel bundles a 32-bit-integer OpenBLAS (``scipy.libs/
  libscipy_openblas-*.so``) whose Fortran routines are prefixed ``scipy_``.
  :func:`pytensor_blas_flags` links pytensor's C code to it and renames the routines with
  ``-Ddgemm_=scipy_dgemm_``-style defines (each checked to exist with :mod:`ctypes`). The flags
  are set only while our functions compile (:func:`pytensor_setup`; the user's configuration is
  restored afterwards) and never replace a ``blas__ldflags`` the user configured. Without that
  library the NUMBA backend is used (numba is a pytensor dependency); ``compile_mode`` overrides.
  No runtime dependency is added.
* **One BLAS thread** (``n_threads=1``, :func:`~spectranorm_neuro._util.blas_threads`): the
  products (3000 x 12 x 100) are too small for threads, which only contend for the cores.
* **No reallocation.** The compiled functions keep their intermediate (subjects x modes) arrays
  between calls (linker ``allow_gc=False``) instead of freeing and reallocating ~20 MB per step.
* **Likelihood** ``-log_sd - (y - mu)^2 exp(-2 log_sd) / 2`` (``pm.CustomDist``, the Normal
  density exactly) instead of ``pm.Normal(sigma=exp(log_sd))``, which evaluates ``exp`` and
  divisions several times; ``check_bounds=False`` drops per-observation parameter checks (every
  scale is positive by construction).
* **Start at, and whiten with, the fast path** (``init="map"``). ADVI starts at the MAP fit of
  :func:`~spectranorm_neuro.engine.direct.fit_direct` (offsets = MAP coefficient / MAP ``tau``,
  ``tau^2`` at its empirical-Bayes value), and each mode's coefficient vector gets the affine
  transform :class:`AffineWhitening` ``raw = MAP + L eps`` with ``L L'`` the Laplace covariance.
  This changes coordinates, not the model: ADVI and NUTS then work on ``eps``, which is close to
  ``N(0, I)`` under the posterior, so the strongly correlated spline/intercept coefficients no
  longer slow the optimizer down, the mean-field (diagonal) approximation in ``eps`` is a
  full-rank one per mode in the coefficients, and every variational parameter is in posterior-sd
  units. Without it ADVI's means wander along the correlated directions (differences to MAP of
  0.25 predictive sd after 10k steps, against 0.1 with it).
* **Average, then stop.** With a constant step (Adam, ``learning_rate=0.01``) the parameters keep
  jittering around the optimum. :class:`AveragedConvergence` (a :class:`pymc.callbacks.
  CheckParametersConvergence`) averages them over windows of ``check_every=500`` steps and stops
  when no window average moved by more than ``tolerance=0.3`` posterior sd from the previous
  window (the floor set by the gradient noise is ~0.22 here); the average of the last two windows
  (Polyak averaging) is the fit. ``n_steps`` is only a cap; a fit that hits it is flagged not
  converged and warned about.
* **Minibatching** (``minibatch_size``) is supported but off: a step on 500 subjects costs ~1 ms
  instead of ~4, but the subsampling noise raises the floor of the convergence check above its
  tolerance (so it needs a looser one) and makes the averaged estimate noisier, for a saving of
  a few seconds on the seed cohort.

pytensor caches compiled C code in its per-user compile directory (``pytensor.config.compiledir``,
under ``~/.pytensor`` by default), so only the first fit on a machine pays the C compilation.

Reproducibility: ``random_state`` seeds one :class:`numpy.random.Generator` from which the seeds
of ADVI (gradient noise, minibatches), of the draws from the approximation and of NUTS are taken;
the computation is single-threaded, so the same inputs and seed give identical outputs.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.distributions.transforms import Transform
from pymc.variational.callbacks import CheckParametersConvergence
from pytensor.compile.mode import Mode, get_mode

from .._util import blas_threads, check_random_state
from ..exceptions import ConvergenceWarning, bad_value
from .direct import TARGET_FIELDS, DirectParams, check_training_data, fit_direct
from .effects import Design
from .shash import EPS_MAX, LOG_DELTA_MAX, log_p_tables
from .specs import NormativeModelSpec

__all__ = ["METHODS", "INITS", "fit_direct_pymc", "build_direct_model", "AffineWhitening",
           "AveragedConvergence", "pytensor_blas_flags", "pytensor_setup"]

logger = logging.getLogger("spectranorm_neuro")

METHODS = ("advi", "nuts")
INITS = ("map", "prior")

_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))
#: BLAS routines pytensor's C code may call, renamed onto scipy's prefixed OpenBLAS symbols.
_BLAS_ROUTINES = ("gemm", "gemv", "ger", "dot", "axpy", "copy", "scal", "swap", "nrm2", "asum")


# ---------------------------------------------------------------------------------- pytensor set-up
@functools.cache
def pytensor_blas_flags() -> str:
    """``blas__ldflags`` linking pytensor's C code to scipy's bundled OpenBLAS ('' if unavailable).

    scipy wheels ship a 32-bit-integer OpenBLAS in ``<site-packages>/scipy.libs`` whose Fortran
    routines are exported as ``scipy_dgemm_`` etc.; the flags link that library (with an rpath)
    and rename each routine pytensor uses (``-Ddgemm_=scipy_dgemm_``), for the routines the
    library really exports.

    Returns
    -------
    str
        Flags for ``pytensor.config.blas__ldflags``, or ``""`` when no such library is found.
    """
    import scipy

    libdir = Path(scipy.__file__).resolve().parent.parent / "scipy.libs"
    candidates = sorted(libdir.glob("libscipy_openblas*.so")) if libdir.is_dir() else []
    candidates = [p for p in candidates if "64_" not in p.name]  # ILP64 builds use 64-bit ints
    for lib in candidates:
        try:
            handle = ctypes.CDLL(str(lib))
        except OSError:
            continue
        names = [f"{p}{r}_" for p in "sd" for r in _BLAS_ROUTINES]
        found = [n for n in names if hasattr(handle, f"scipy_{n}")]
        if "dgemm_" not in found or "dgemv_" not in found:
            continue
        defines = " ".join(f"-D{n}=scipy_{n}" for n in found)
        return f"-L{libdir} -l{lib.name[3:-3]} -Wl,-rpath,{libdir} {defines}"
    return ""


def _user_blas_flags() -> str | None:
    """``blas__ldflags`` the user configured (flags or .pytensorrc), without auto-detection."""
    param = pytensor.config._config_var_dict["blas__ldflags"]
    if hasattr(param, "val"):  # already resolved (set by the user, or detected earlier)
        return param.val
    try:
        return pytensor.config.fetch_val_for_key("blas__ldflags")
    except KeyError:
        return None


@contextlib.contextmanager
def pytensor_setup(compile_mode: str | None = None) -> Iterator[Mode]:
    """Configure pytensor for fast compiled code inside the block; restore its configuration after.

    Inside the block ``blas__ldflags`` points at scipy's OpenBLAS (:func:`pytensor_blas_flags`)
    unless the user configured BLAS. The yielded mode keeps intermediate arrays between calls
    (linker ``allow_gc=False``) instead of freeing and reallocating them at every step.

    Parameters
    ----------
    compile_mode : str, optional
        A pytensor mode (``"FAST_RUN"``, ``"NUMBA"`` ...) to use instead of the automatic choice.

    Yields
    ------
    pytensor.compile.mode.Mode
        The mode to compile with: ``compile_mode`` if given, else pytensor's default (C backend,
        with BLAS from the user's configuration or from scipy's OpenBLAS), or NUMBA when no BLAS
        can be linked.
    """
    param = pytensor.config._config_var_dict["blas__ldflags"]
    had, old = hasattr(param, "val"), getattr(param, "val", None)
    user = _user_blas_flags()
    mode = compile_mode
    if not user:
        flags = pytensor_blas_flags()
        if flags:
            param.val = flags
        elif mode is None:
            mode = "NUMBA"
            logger.info("pymc backend: no BLAS for pytensor's C backend; compiling with NUMBA")
    try:
        yield get_mode(mode).clone(link_kwargs={"allow_gc": False})
    finally:
        if had:
            param.val = old
        elif hasattr(param, "val"):
            del param.val


# ---------------------------------------------------------------------------------- the model
class AffineWhitening(Transform):
    """Per-mode affine map of a (M, p) variable: ``value = loc + L @ eps`` for each mode.

    Used as the pymc transform of the coefficient variables, it leaves the model (prior and
    likelihood) unchanged and only changes the unconstrained coordinates ADVI and NUTS work in:
    with ``loc`` and ``L`` the MAP and Cholesky factor of the Laplace covariance, ``eps`` is close
    to ``N(0, I)`` under the posterior, so a mean-field (diagonal) approximation in ``eps`` is a
    full-rank one per mode in the original coordinates, and the optimizer sees an isotropic problem.

    Parameters
    ----------
    loc : numpy.ndarray, shape (M, p)
    chol : numpy.ndarray, shape (M, p, p)
        Invertible factors ``L`` (Cholesky factors of the covariances, or any ``L`` with
        ``L L' = covariance``).
    """

    name = "affine_whitening"

    def __init__(self, loc: np.ndarray, chol: np.ndarray):
        self.loc = np.asarray(loc, dtype=float)
        self.chol = np.asarray(chol, dtype=float)
        self.chol_inv = np.linalg.inv(self.chol)
        self.log_det = np.linalg.slogdet(self.chol)[1]

    def backward(self, value, *inputs):
        """``eps`` (M, p) -> ``value`` (M, p)."""
        return self.loc + (pt.as_tensor(self.chol) * value[:, None, :]).sum(axis=-1)

    def forward(self, value, *inputs):
        """``value`` (M, p) -> ``eps`` (M, p)."""
        return (pt.as_tensor(self.chol_inv) * (value - self.loc)[:, None, :]).sum(axis=-1)

    def log_jac_det(self, value, *inputs):
        """Constant ``log |det L|`` of each mode, shape (M,)."""
        return pt.as_tensor(self.log_det)


def _prior_sd(design: Design) -> np.ndarray:
    """Prior sd of each column of a target's raw coefficients (block scale, or 1 for offsets)."""
    sd = np.empty(design.n_columns)
    for block in design.blocks:
        sd[block.slice] = 1.0 if block.hierarchical else block.scale
    return sd


def _tau_name(target: str, block) -> str:
    return f"{target}_tau2_{block.name}"


def _normal_logp_log_sd(value, mu, log_sd):
    """Normal log density with the log standard deviation as parameter (one ``exp`` per value)."""
    return -log_sd - 0.5 * pt.sqr(value - mu) * pt.exp(-2.0 * log_sd) - _HALF_LOG_2PI


class _LogP(pytensor.graph.Op):
    """``(log P(1/delta), log P(2/delta))`` of the SHASH moments as functions of ``u = log delta``.

    Tabulated like the fast path (``engine.shash``); its gradient is the tables' derivative
    (:class:`_DLogP`), which is all ADVI and NUTS need.
    """

    __props__ = ("order",)

    def __init__(self, order: int = 0):
        self.order = order

    def make_node(self, u):
        u = pt.as_tensor_variable(u)
        return pytensor.graph.Apply(self, [u], [u.type(), u.type()])

    def perform(self, node, inputs, outputs):
        u = np.asarray(inputs[0])
        for out, table in zip(outputs, log_p_tables()):
            out[0] = np.asarray(table(u, self.order), dtype=u.dtype)

    def grad(self, inputs, grads):
        if self.order:  # second derivatives: never needed by ADVI or NUTS
            return [pytensor.gradient.grad_not_implemented(self, 0, inputs[0])]
        d1, d2 = _LogP(1)(inputs[0])
        total = []
        for g, d in zip(grads, (d1, d2)):
            if not isinstance(g.type, pytensor.gradient.DisconnectedType):
                total.append(g * d)
        return [sum(total) if total else pt.zeros_like(inputs[0])]


def _shash_logp(value, mu, log_sd, eta_skew, eta_tail):
    """SHASHb log density (``engine.shash``) in pytensor, shape parameters from their predictors."""
    eps = EPS_MAX * pt.tanh(eta_skew / EPS_MAX)
    u = LOG_DELTA_MAX * pt.tanh(eta_tail / LOG_DELTA_MAX)
    delta = pt.exp(u)
    lp1, lp2 = _LogP()(u)
    a = eps / delta
    m = pt.sinh(a) * pt.exp(lp1)
    v = pt.sqrt(pt.maximum(0.5 * (pt.cosh(2.0 * a) * pt.exp(lp2) - 1.0) - m * m, 1e-12))
    x = m + v * (value - mu) * pt.exp(-log_sd)
    big_a = delta * pt.arcsinh(x) - eps
    log_cosh = pt.abs(big_a) + pt.log1p(pt.exp(-2.0 * pt.abs(big_a))) - np.log(2.0)
    return (u + log_cosh - 0.5 * pt.log1p(x * x) - _HALF_LOG_2PI - 0.5 * pt.sqr(pt.sinh(big_a)) + pt.log(v)
            - log_sd)


def build_direct_model(spec: NormativeModelSpec, Ys: np.ndarray, Xm: np.ndarray, Xv: np.ndarray,
                       minibatch_size: int | None = None, whitening: dict | None = None,
                       X_shape: tuple[np.ndarray, np.ndarray] | None = None) -> pm.Model:
    """One pymc model of ``M`` standardized responses, every parameter with a ``mode`` dimension.

    For each target (``mean``, ``variance``) the coefficients of all blocks live in one variable
    ``<target>_raw`` (M, p) with independent normal priors: sd ``block.scale`` on the columns of
    fixed blocks (these are the coefficients), sd 1 on the columns of hierarchical blocks (the
    non-centred offsets). The coefficients are the deterministic ``<target>_coef`` (M, p): raw
    times ``tau`` on hierarchical columns, with ``<target>_tau2_<covariate>`` (M,) ~
    InverseGamma(hier_a, hier_b).

    Parameters
    ----------
    spec : NormativeModelSpec
        Gives the designs' blocks and priors (``spec.priors``).
    Ys : numpy.ndarray, shape (n_subjects, M)
        Standardized responses.
    Xm, Xv : numpy.ndarray, shapes (n_subjects, p_mean) and (n_subjects, p_var)
        Design matrices of the mean and of the log-sd (``Design(spec, target).matrix(df)``).
    minibatch_size : int, optional
        Use random minibatches of this many subjects per gradient step (``pm.Minibatch``).
    whitening : dict, optional
        ``{target: (loc (M, p), chol (M, p, p))}``: :class:`AffineWhitening` of ``<target>_raw``.
    X_shape : tuple of numpy.ndarray, optional
        SHASHb only: design matrices of the skew and tail predictors (the likelihood is then the
        SHASHb density of ``engine.shash``, written in pytensor).

    Returns
    -------
    pymc.Model
    """
    n, M = Ys.shape
    designs = {t: Design(spec, t) for t in spec.fitted_targets}
    coords: dict[str, Any] = {"mode": np.arange(M)}
    for target, design in designs.items():
        coords[f"{target}_column"] = np.arange(design.n_columns)
    with pm.Model(coords=coords, check_bounds=False) as model:
        thetas = {}
        for target, design in designs.items():
            dims = ("mode", f"{target}_column")
            transform = None if whitening is None else AffineWhitening(*whitening[target])
            raw = pm.Normal(f"{target}_raw", 0.0, _prior_sd(design)[None, :], dims=dims,
                            default_transform=transform)
            parts = []
            for block in design.blocks:
                if block.hierarchical:
                    hyper_a, hyper_b = design.hyperprior(block)
                    tau2 = pm.InverseGamma(_tau_name(target, block), alpha=hyper_a,
                                           beta=hyper_b, dims="mode")
                    parts.append(raw[:, block.slice] * pt.sqrt(tau2)[:, None])
                else:
                    parts.append(raw[:, block.slice])
            theta = pt.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            thetas[target] = pm.Deterministic(f"{target}_coef", theta, dims=dims)
        Xs = [Xm, Xv, *(X_shape or ())]
        if minibatch_size is None:
            xs, ys, total = [pt.as_tensor(X) for X in Xs], Ys, None
        else:
            *xs, ys = pm.Minibatch(*Xs, Ys, batch_size=int(minibatch_size))
            total = n
        etas = [pt.dot(x, thetas[t].T) for x, t in zip(xs, designs)]
        logp = _shash_logp if len(etas) == 4 else _normal_logp_log_sd
        pm.CustomDist("y", *etas, logp=logp, observed=ys, total_size=total)
    return model


def _map_start(spec: NormativeModelSpec, params: DirectParams) -> tuple[dict, dict]:
    """Start values and whitening of the raw coefficients from a MAP/Laplace fit.

    Returns
    -------
    start : dict
        Initial values (model space): ``<target>_raw`` (M, p) and ``<target>_tau2_*`` (M,).
    whitening : dict
        ``{target: (loc (M, p), chol (M, p, p))}``, the MAP and the Cholesky factor of the
        Laplace covariance of the raw coefficients (offsets = coefficient / MAP tau).
    """
    start, whitening = {}, {}
    for target in spec.fitted_targets:
        beta, cov, tau2 = params.target(target)
        unset = ~np.abs(cov).reshape(cov.shape[0], -1).any(axis=1)  # shape kept at the Normal by the MAP fit
        cov = np.where(unset[:, None, None], 0.01 * np.eye(cov.shape[1]), cov)
        design = Design(spec, target)
        scale = np.ones_like(beta)
        for j, block in enumerate(design.hierarchical_blocks):
            scale[:, block.slice] = np.sqrt(tau2[:, j:j + 1])
            start[_tau_name(target, block)] = tau2[:, j]
        raw = beta / scale
        cov_raw = cov / (scale[:, :, None] * scale[:, None, :])
        start[f"{target}_raw"] = raw
        whitening[target] = (raw, _cov_factor(cov_raw))
    return start, whitening


def _cov_factor(cov: np.ndarray) -> np.ndarray:
    """Factors ``L`` with ``L L' = cov`` of a (M, p, p) stack: Cholesky, or eigen if not PD."""
    cov = 0.5 * (cov + cov.transpose(0, 2, 1))
    jitter = 1e-10 * np.maximum(np.trace(cov, axis1=1, axis2=2), 1e-300)[:, None, None]
    try:
        return np.linalg.cholesky(cov + jitter * np.eye(cov.shape[1]))
    except np.linalg.LinAlgError:  # a Laplace covariance that is not numerically PD
        w, V = np.linalg.eigh(cov)
        w = np.maximum(w, 1e-10 * np.maximum(w.max(axis=1, keepdims=True), 1e-300))
        return V * np.sqrt(w)[:, None, :]


def _draws(posterior, name: str) -> np.ndarray:
    """Draws of a variable stacked over chains: (n_draws, *shape)."""
    arr = np.asarray(posterior[name])
    return arr.reshape(-1, *arr.shape[2:])


def _summarize(spec: NormativeModelSpec, posterior, y_mean, y_std, converged) -> DirectParams:
    """Posterior means, covariances and mean ``tau^2`` from draws, as :class:`DirectParams`."""
    out = {}
    for target in spec.fitted_targets:
        key, _, tau_key = TARGET_FIELDS[target]
        coef = _draws(posterior, f"{target}_coef")  # (S, M, p)
        mean = coef.mean(axis=0)
        centred = coef - mean
        out[key] = mean
        out[f"cov_{key}"] = np.einsum("smp,smq->mpq", centred, centred, optimize=True) / (coef.shape[0] - 1)
        taus = [_draws(posterior, _tau_name(target, b)).mean(axis=0)
                for b in Design(spec, target).hierarchical_blocks]
        out[tau_key] = np.stack(taus, axis=1) if taus else np.zeros((mean.shape[0], 0))
    return DirectParams(y_mean=y_mean, y_std=y_std, converged=np.asarray(converged, dtype=bool), **out)


class AveragedConvergence(CheckParametersConvergence):
    """Convergence check on window averages of the variational parameters (Polyak averaging).

    With a constant step size, ADVI's parameters keep jittering around the optimum (stochastic
    gradients), so single snapshots never stop changing. This
    :class:`pymc.callbacks.CheckParametersConvergence` averages the parameters over consecutive
    windows of ``every`` steps and stops when two successive window averages differ by less than
    ``tolerance`` in the size-normalized ``ord`` norm (``ord=2``: root mean square change,
    ``np.inf``: largest change). :meth:`averaged` then gives the average of the last two windows,
    the estimate used instead of the last iterate.

    Parameters
    ----------
    every : int
        Window length (steps).
    tolerance : float
        Threshold on the normalized change of the window averages.
    ord : {numpy.inf, 2}, optional
        Norm of the change (default: the largest change of any parameter).
    """

    def __init__(self, every: int = 500, tolerance: float = 0.3, ord=np.inf):
        super().__init__(every=every, tolerance=tolerance, diff="absolute", ord=ord)
        self.stopped_at: int | None = None
        self.last_change = np.inf
        self._sum: list[np.ndarray] | None = None
        self._count = 0
        self._windows: list[list[np.ndarray]] = []

    def __call__(self, approx, loss, i) -> None:
        """Accumulate the parameters; at the end of a window, compare it with the previous one."""
        values = [sh.get_value() for sh in approx.params]
        if self._sum is None:
            self._sum = [np.zeros_like(v) for v in values]
        for acc, v in zip(self._sum, values):
            acc += v
        self._count += 1
        if self._count < self.every:
            return
        self._windows = [*self._windows[-1:], [acc / self._count for acc in self._sum]]
        self._sum, self._count = None, 0
        if len(self._windows) < 2:
            return
        delta = np.concatenate([np.ravel(c - p) for p, c in zip(*self._windows)])
        scale = delta.size ** (1.0 / self.ord) if np.isfinite(self.ord) else 1.0
        self.last_change = float(np.linalg.norm(delta, self.ord) / scale)
        logger.debug("ADVI step %d: change of the window-averaged parameters %.3g (rms %.3g, max %.3g)", i,
                     self.last_change, np.sqrt(np.mean(delta**2)), np.abs(delta).max())
        if self.last_change < self.tolerance:
            self.stopped_at = i
            raise StopIteration(f"Convergence achieved at {i}")

    def averaged(self) -> list[np.ndarray] | None:
        """Average of the last (up to two) complete windows, one array per parameter."""
        if not self._windows:
            return None
        return [np.mean(ws, axis=0) for ws in zip(*self._windows)]


def _rhat_by_mode(posterior, names: list[str]) -> np.ndarray:
    """Largest R-hat of each mode over the variables ``names`` (leading dim ``mode``) -> (M,)."""
    rhat = az.rhat(posterior[names])
    worst = None
    for name in names:
        r = np.asarray(rhat[name])
        r = np.nan_to_num(r.reshape(r.shape[0], -1).max(axis=1), nan=np.inf)
        worst = r if worst is None else np.maximum(worst, r)
    return worst


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise bad_value(name, value, f"is not an integer >= {minimum}", f"pass an integer >= {minimum}")
    return int(value)


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
            np.isfinite(value) and value > 0):
        raise bad_value(name, value, "is not a positive number", f"pass a positive float for {name}")
    return float(value)


def fit_direct_pymc(spec: NormativeModelSpec, Y, covariates: pd.DataFrame, method: str = "advi",
                    random_state=None, init: str = "map", n_steps: int = 10000, draws: int = 1000,
                    tune: int = 1000, minibatch_size: int | None = None, progress: bool | None = None,
                    chains: int = 2, learning_rate: float = 0.01, check_every: int = 500,
                    tolerance: float = 0.3, n_threads: int | None = 1, compile_mode: str | None = None,
                    **kw) -> DirectParams:
    """Fit ``M`` direct models as one vectorized pymc model (ADVI or NUTS).

    Parameters
    ----------
    spec : NormativeModelSpec
        Specification with captured fit-time state (designs and priors).
    Y : array_like, shape (n_subjects, M)
        Responses (e.g. spectral coefficients of ``M`` modes).
    covariates : pandas.DataFrame, shape (n_subjects, ...)
        Covariates of the same subjects, in the same order.
    method : {"advi", "nuts"}, optional
        Mean-field ADVI (``pm.ADVI``) or NUTS (``pm.sample``; for small problems).
    random_state : int or numpy.random.Generator, optional
        Seed of every random step (ADVI gradients and minibatches, draws, NUTS chains).
    init : {"map", "prior"}, optional
        ``"map"``: start at, and whiten with, the fast path's MAP/Laplace fit (see the module
        notes); ``"prior"``: pymc's defaults (ADVI: zero means, unit sds; no whitening).
    n_steps : int, optional
        ADVI: maximum number of optimization steps (the convergence check usually stops earlier).
    draws : int, optional
        Draws from the ADVI approximation, or NUTS draws per chain, used for posterior means and
        covariances.
    tune : int, optional
        NUTS tuning steps per chain.
    minibatch_size : int, optional
        ADVI: subjects per gradient step (default: all).
    progress : bool, optional
        Show pymc's progress bar.
    chains : int, optional
        NUTS chains, run one after the other (at least 2 for R-hat).
    learning_rate : float, optional
        ADVI: step size of the Adam optimizer (in posterior-sd units with ``init="map"``).
    check_every : int, optional
        ADVI: window length (steps) of the averaged convergence check (:class:`AveragedConvergence`).
    tolerance : float, optional
        ADVI: stop when no window-averaged variational parameter moved by more than this from the
        previous window (with ``init="map"``, in posterior-sd units).
    n_threads : int, optional
        BLAS threads during the fit (``None``: leave as is).
    compile_mode : str, optional
        pytensor mode to compile with (default: C with BLAS, see the module notes).
    **kw
        Passed to ``ADVI.fit`` (e.g. ``obj_n_mc``) or ``pymc.sample`` (e.g. ``target_accept``).

    Returns
    -------
    DirectParams
        ``beta``/``gamma``: posterior means (M, p); ``cov_beta``/``cov_gamma``: posterior
        covariances from the draws (M, p, p); ``tau2_mean``/``tau2_var``: posterior means of the
        hierarchical variances (M, h); ``converged`` (M,): ADVI stopped by its convergence check
        (one flag for all modes), or NUTS R-hat < 1.01 for every variable of the mode.

    Examples
    --------
    >>> params = fit_direct_pymc(spec, coeffs, covariates, method="advi", random_state=0)  # doctest: +SKIP
    """
    if method not in METHODS:
        raise bad_value("method", method, "is not a pymc inference method", f"pass one of {list(METHODS)}")
    if init not in INITS:
        raise bad_value("init", init, "is not a known initialization", f"pass one of {list(INITS)}")
    n_steps = _check_int("n_steps", n_steps, 1)
    draws = _check_int("draws", draws, 2)
    tune = _check_int("tune", tune, 0)
    chains = _check_int("chains", chains, 1)
    check_every = _check_int("check_every", check_every, 1)
    learning_rate = _check_positive("learning_rate", learning_rate)
    tolerance = _check_positive("tolerance", tolerance)
    rng = check_random_state(random_state)
    Y = check_training_data(spec, Y, covariates)
    if minibatch_size is not None:
        minibatch_size = _check_int("minibatch_size", minibatch_size, 1)
        if minibatch_size > Y.shape[0]:
            raise bad_value("minibatch_size", minibatch_size, f"exceeds the {Y.shape[0]} subjects",
                            "pass a smaller minibatch_size, or None for full-batch gradients")
    seed_fit, seed_draws, seed_nuts = (int(s) for s in rng.integers(0, 2**31 - 1, size=3))

    y_mean = Y.mean(axis=0)
    y_std = Y.std(axis=0)
    y_std = np.where(y_std > 0, y_std, 1.0)
    Ys = (Y - y_mean) / y_std
    Xm, _ = Design(spec, "mean").matrix(covariates, warn=False)
    Xv, _ = Design(spec, "variance").matrix(covariates, warn=False)
    M = Y.shape[1]
    start = whitening = None
    if init == "map":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start, whitening = _map_start(spec, fit_direct(spec, Y, covariates))
    with blas_threads(n_threads), pytensor_setup(compile_mode) as mode:
        compile_kwargs = {"mode": mode}
        X_shape = tuple(Design(spec, t).matrix(covariates, warn=False)[0] for t in spec.fitted_targets[2:])
        model = build_direct_model(spec, Ys, Xm, Xv, minibatch_size if method == "advi" else None, whitening,
                                   X_shape or None)
        if method == "advi":
            idata, converged = _fit_advi(model, start, M, n_steps, draws, learning_rate, check_every,
                                         tolerance, (seed_fit, seed_draws), bool(progress), compile_kwargs, kw)
        else:
            free = [rv.name for rv in model.free_RVs]
            with model:
                idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=1, random_seed=seed_nuts,
                                  initvals=start, progressbar=bool(progress), compute_convergence_checks=False,
                                  compile_kwargs=compile_kwargs, **kw)
            converged = _rhat_by_mode(idata.posterior, free) < 1.01 if chains >= 2 else np.zeros(M, bool)
            if not converged.all():
                warnings.warn(f"NUTS: {int((~converged).sum())} of {M} modes have R-hat >= 1.01 (or one "
                              "chain only); raise draws, tune or chains", ConvergenceWarning, stacklevel=2)
    return _summarize(spec, idata.posterior, y_mean, y_std, converged)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Raise a library logger's level to WARNING inside the block."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def _fit_advi(model, start, M, n_steps, draws, learning_rate, check_every, tolerance, seeds, progress,
              compile_kwargs, kw) -> tuple[Any, np.ndarray]:
    """Run mean-field ADVI until the averaged parameters settle; draw from the averaged fit."""
    check = AveragedConvergence(every=check_every, tolerance=tolerance)
    start_sigma = None
    if start is not None:  # whitened raw coefficients: posterior sd ~ 1; log tau^2: ~ 0.5
        start_sigma = {model.rvs_to_values[rv].name: (1.0 if rv.name.endswith("_raw") else 0.5)
                       for rv in model.free_RVs}
    with model:
        advi = pm.ADVI(random_seed=seeds[0], start=start, start_sigma=start_sigma)
        # keep score=True (pymc's default): with score=False the compiled step function of pymc 5.28
        # has no outputs, does not advance its random generator, and ADVI diverged on one fixed draw
        fit_kwargs = {"obj_optimizer": pm.adam(learning_rate=learning_rate)}
        fit_kwargs.update(kw)
        with _quiet("pymc.variational.inference"):  # its "Interrupted at ..." would mislead; we log ours
            approx = advi.fit(n=n_steps, callbacks=[check], progressbar=progress,
                              compile_kwargs=compile_kwargs, **fit_kwargs)
        averaged = check.averaged()
        if averaged is not None:
            for shared, value in zip(approx.params, averaged):
                shared.set_value(value)
        idata = approx.sample(draws, random_seed=seeds[1])
    stopped = check.stopped_at is not None
    logger.info("pymc ADVI: %s after %d steps (last change of the averaged parameters %.3g)",
                "converged" if stopped else "not converged", check.stopped_at or n_steps, check.last_change)
    if not stopped:
        warnings.warn(f"ADVI did not meet its convergence check (tolerance={tolerance}) in {n_steps} "
                      f"steps (last change {check.last_change:.3g}); raise n_steps or tolerance",
                      ConvergenceWarning, stacklevel=3)
    return idata, np.full(M, stopped)
