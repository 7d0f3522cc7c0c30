"""Regional normative models: every column of a table of regional measures fitted at once.

A :class:`RegionalNormativeModel` holds one direct model per region (cortical thickness per
parcel, subcortical volumes, any ROI value), all sharing one specification and fitted in one
batched pass, exactly as the modes of a spectral model (:func:`~spectranorm_neuro.engine.direct.
fit_direct`): a 200-region table is one stacked Newton solve, not 200 fits. Results come back as
tables (subjects x regions) of z-scores, centiles, log-likelihoods, predicted means and sds, plus
per-region metrics. With ``likelihood="SHASHb"`` each region gets its own skew and tail (z-scores
from the exact CDF), and :meth:`RegionalNormativeModel.likelihood_comparison` tells, per region,
whether the Normal would have been adequate.

Saved models (regional and :class:`~spectranorm_neuro.engine.direct.DirectNormativeModel`) are a
directory in a documented safe format (no pickle)::

    manifest.json   format name and version, package version, SHA-256 of every other file
    spec.json       the NormativeModelSpec with its fit-time state
    model.json      kind ("regional" or "direct"), response names, model_params
    params.npz      the DirectParams arrays (loaded with allow_pickle=False)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._util import json_default, write_npz
from ..exceptions import FileFormatError, NotFittedError, ShapeMismatchError, bad_value
from . import metrics
from .direct import (
    DirectParams,
    adapt_direct,
    fit_responses,
    likelihood_comparison,
    predict_distribution,
)
from .persistence import read_manifest, save_folder, verify_manifest
from .results import NormativePredictions
from .shash import harmonize_values, quantiles
from .specs import NormativeModelSpec

__all__ = ["RegionalNormativeModel", "RegionalResults", "save_direct_params", "load_direct_params",
           "DIRECT_FORMAT_NAME", "DIRECT_FORMAT_VERSION"]

DIRECT_FORMAT_NAME = "spectranorm_neuro.direct_model"
DIRECT_FORMAT_VERSION = 1
_FILES = ("spec.json", "model.json", "params.npz")


def save_direct_params(directory, spec: NormativeModelSpec, params: DirectParams, names, model_params: dict,
                       kind: str, overwrite: bool = False) -> Path:
    """Write a fitted direct/regional model (see the module notes), atomically.

    Parameters
    ----------
    directory : path-like
        New or empty directory (an existing non-empty one only with ``overwrite=True``).
    spec : NormativeModelSpec
    params : DirectParams
    names : sequence of str
        One name per response (region names, or the variable of interest).
    model_params : dict
        JSON-serialisable settings and reports.
    kind : {"regional", "direct"}
    overwrite : bool, optional

    Returns
    -------
    pathlib.Path
    """
    def write(tmp: Path) -> list[str]:
        (tmp / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2, default=json_default))
        meta = {"kind": kind, "responses": [str(n) for n in names], "model_params": model_params}
        (tmp / "model.json").write_text(json.dumps(meta, indent=2, default=json_default))
        with open(tmp / "params.npz", "wb") as fh:
            write_npz(fh, params.to_arrays())
        return list(_FILES)

    return save_folder(directory, overwrite, write, DIRECT_FORMAT_NAME, DIRECT_FORMAT_VERSION)


def load_direct_params(directory, kind: str) -> tuple[NormativeModelSpec, DirectParams, list[str], dict]:
    """Read a model written by :func:`save_direct_params`, verifying format, checksums and kind.

    Returns
    -------
    spec, params, names, model_params
    """
    manifest = read_manifest(directory, DIRECT_FORMAT_NAME, DIRECT_FORMAT_VERSION)
    verify_manifest(directory, manifest)
    directory = Path(directory)
    spec = NormativeModelSpec.from_dict(json.loads((directory / "spec.json").read_text()))
    meta = json.loads((directory / "model.json").read_text())
    if meta.get("kind") != kind:
        raise bad_value("directory", str(directory), f"holds a {meta.get('kind')!r} model, not a {kind!r} one",
                        f"load it with the {meta.get('kind')!r} model's load_model", FileFormatError)
    with np.load(directory / "params.npz", allow_pickle=False) as arrays:
        params = DirectParams.from_arrays(arrays)
    return spec, params, list(meta["responses"]), dict(meta.get("model_params", {}))


@dataclass
class RegionalResults:
    """Scores of a cohort under a regional model.

    Attributes
    ----------
    tables : dict of str to pandas.DataFrame, each (n_subjects, n_regions)
        ``"z-score"``, ``"centiles"`` (0-100), ``"log-likelihood"``, ``"mu"``, ``"sd"`` (and for
        SHASHb ``"epsilon"``, ``"delta"``), indexed by subject, one column per region.
    metrics : pandas.DataFrame, shape (n_regions, n_metrics)
        Per-region metrics (MSLL, SMSE, z mean/sd, fraction beyond +-1.96, ...).
    """

    tables: dict[str, pd.DataFrame]
    metrics: pd.DataFrame

    def __getitem__(self, key: str) -> pd.DataFrame:
        return self.tables[key]


class RegionalNormativeModel:
    """Normative models of every region of a table, fitted at once (batched like modes).

    Parameters
    ----------
    spec : NormativeModelSpec
        The specification every region shares (see :meth:`from_dataframe`).

    Examples
    --------
    >>> model = RegionalNormativeModel.from_dataframe(  # doctest: +SKIP
    ...     "HBR", covariates, numerical_covariates=["age"], nonlinear_covariates=["age"],
    ...     categorical_covariates=["sex", "site"], batch_covariates=["site"],
    ...     influencing_mean=["age", "sex", "site"], influencing_variance=["age", "site"],
    ...     likelihood="SHASHb")
    >>> model.fit(thickness_table, covariates)  # doctest: +SKIP
    >>> z = model.evaluate(test_table, test_covariates)["z-score"]  # doctest: +SKIP
    """

    def __init__(self, spec: NormativeModelSpec):
        self.spec = spec
        self.params: DirectParams | None = None
        self.regions: list[str] = []
        self.model_params: dict = {}

    def __repr__(self) -> str:
        return f"RegionalNormativeModel(n_regions={len(self.regions)}, spec={self.spec!r})"

    @classmethod
    def from_dataframe(cls, model_type: str, covariates_dataframe: pd.DataFrame, numerical_covariates=None,
                       categorical_covariates=None, batch_covariates=None, nonlinear_covariates=None,
                       influencing_mean=None, influencing_variance=None, spline_kwargs=None,
                       **kwargs) -> RegionalNormativeModel:
        """Build a model from a covariate table; see :meth:`NormativeModelSpec.from_dataframe`."""
        spec = NormativeModelSpec.from_dataframe(
            model_type, covariates_dataframe, "regions", numerical_covariates, categorical_covariates,
            batch_covariates, nonlinear_covariates, influencing_mean, influencing_variance, spline_kwargs, **kwargs)
        return cls(spec)

    # ------------------------------------------------------------------ helpers
    def _fitted(self) -> DirectParams:
        if self.params is None:
            raise NotFittedError("RegionalNormativeModel: the model is not fitted. Fix: call fit(...) first.")
        return self.params

    def _values(self, data, covariates: pd.DataFrame, argument: str, regions=None) -> tuple[np.ndarray, pd.DataFrame]:
        """Region values (n, M) in model order and covariates with rows matched to them."""
        if not isinstance(data, pd.DataFrame):
            raise bad_value(argument, type(data).__name__, "is not a table of regional measures",
                            "pass a DataFrame (subjects x regions), e.g. from io.read_regional_table")
        if not isinstance(covariates, pd.DataFrame):
            raise bad_value("covariates_dataframe", type(covariates).__name__, "is not a pandas DataFrame",
                            "pass the covariates as a DataFrame with one row per subject")
        regions = list(data.columns) if regions is None else regions
        missing = [r for r in regions if r not in data.columns]
        if missing:
            raise bad_value(argument, f"table with {data.shape[1]} columns", f"lacks region column(s) {missing[:5]}",
                            "pass a table with every region the model was fitted on", ShapeMismatchError)
        if len(data) != len(covariates):
            raise bad_value("covariates_dataframe", f"{len(covariates)} rows",
                            f"do not match the {len(data)} rows of {argument}",
                            "pass one covariate row per subject (io.align_subjects pairs them by id)",
                            ShapeMismatchError)
        if not data.index.equals(covariates.index) and set(data.index) == set(covariates.index):
            covariates = covariates.loc[data.index]
        return data[regions].to_numpy(dtype=float), covariates

    def _distribution(self, covariates, predict_without=(), unseen_batch="error") -> dict[str, np.ndarray]:
        return predict_distribution(self.spec, self._fitted(), covariates, predict_without, unseen_batch)

    def _frame(self, values: np.ndarray, index) -> pd.DataFrame:
        return pd.DataFrame(values, index=index, columns=self.regions)

    # ------------------------------------------------------------------ API
    def fit(self, regional_data: pd.DataFrame, covariates_dataframe: pd.DataFrame, inference: str = "map",
            random_state=None, **inference_kwargs) -> RegionalNormativeModel:
        """Fit every region (column) of ``regional_data`` at once.

        Parameters
        ----------
        regional_data : pandas.DataFrame, shape (n_subjects, n_regions)
            One column per region (e.g. :func:`spectranorm_neuro.io.read_regional_table`).
        covariates_dataframe : pandas.DataFrame, shape (n_subjects, ...)
            Covariates; rows are matched by index when both tables share the same subject ids,
            else by position.
        inference : {"map", "advi", "nuts"}, optional
            Batched MAP + Laplace + empirical Bayes (default), or one vectorized pymc model.
        random_state : int, optional
            Seed of the pymc paths.
        **inference_kwargs
            Passed to the inference backend.

        Returns
        -------
        RegionalNormativeModel
            ``self``.
        """
        Y, covariates = self._values(regional_data, covariates_dataframe, "regional_data")
        self.regions = [str(c) for c in regional_data.columns]
        self.params = fit_responses(self.spec, Y, covariates, inference, random_state, **inference_kwargs)
        self.model_params = {"inference": inference, "n_train": len(covariates), "n_regions": len(self.regions),
                             "random_state": random_state, "likelihood": self.spec.likelihood,
                             "converged_fraction": float(np.mean(self.params.converged))}
        return self

    def predict(self, test_covariates: pd.DataFrame, predict_without=(), unseen_batch: str = "error"
                ) -> dict[str, pd.DataFrame]:
        """Predicted mean and sd (and SHASHb shape) of every region: tables (n_subjects, n_regions)."""
        dist = self._distribution(test_covariates, predict_without, unseen_batch)
        return {k: self._frame(v, test_covariates.index) for k, v in dist.items()}

    def centiles(self, test_covariates: pd.DataFrame, centiles=(5, 25, 50, 75, 95), predict_without=(),
                 unseen_batch: str = "error") -> pd.DataFrame:
        """Centile curves of every region from the exact CDF.

        Returns
        -------
        pandas.DataFrame, shape (n_subjects, n_regions * n_centiles)
            Columns ``(region, centile)``.
        """
        q = np.asarray(centiles, dtype=float)
        if q.ndim != 1 or not np.all((q > 0) & (q < 100)):
            raise bad_value("centiles", centiles, "are not centiles strictly between 0 and 100",
                            "pass e.g. centiles=(5, 50, 95)")
        dist = self._distribution(test_covariates, predict_without, unseen_batch)
        values = quantiles(dist, q[None, None, :] / 100.0, axis=2)  # (n, M, C)
        columns = pd.MultiIndex.from_product([self.regions, list(centiles)], names=["region", "centile"])
        return pd.DataFrame(values.reshape(values.shape[0], -1), index=test_covariates.index, columns=columns)

    def evaluate(self, regional_data: pd.DataFrame, covariates_dataframe: pd.DataFrame,
                 unseen_batch: str = "error", predict_without=()) -> RegionalResults:
        """Score a cohort: z-scores, centiles, log-likelihoods, means and sds per region, and metrics.

        Returns
        -------
        RegionalResults
        """
        params = self._fitted()
        Y, covariates = self._values(regional_data, covariates_dataframe, "regional_data", self.regions)
        dist = self._distribution(covariates, predict_without, unseen_batch)
        pred = NormativePredictions({"mu_estimate": dist["mu"], "std_estimate": dist["sd"],
                                     **{k: v for k, v in dist.items() if k not in ("mu", "sd")}})
        pred.evaluate(Y, np.stack([params.y_mean, params.y_std]))
        index = regional_data.index
        tables = {k: self._frame(pred.predictions[k], index) for k in ("z-score", "centiles", "log-likelihood")}
        tables.update({k: self._frame(v, index) for k, v in dist.items()})
        table = pd.DataFrame({k: np.asarray(v) for k, v in pred.evaluations.items()},
                             index=pd.Index(self.regions, name="region"))
        return RegionalResults(tables, table)

    def harmonize(self, regional_data: pd.DataFrame, covariates_dataframe: pd.DataFrame,
                  covariates_to_harmonize) -> pd.DataFrame:
        """Regional values with the effects of ``covariates_to_harmonize`` removed (each keeps its centile)."""
        Y, covariates = self._values(regional_data, covariates_dataframe, "regional_data", self.regions)
        full = self._distribution(covariates)
        wo = self._distribution(covariates, list(covariates_to_harmonize))
        return self._frame(harmonize_values(Y, full, wo), regional_data.index)

    def adapt_fit(self, regional_data: pd.DataFrame, covariates_dataframe: pd.DataFrame,
                  **solver_kwargs) -> RegionalNormativeModel:
        """Adapt to new sites from their controls (see :func:`~spectranorm_neuro.engine.direct.adapt_direct`).

        The report (controls and effective controls per new site) is kept in
        ``model_params["adaptation"]``.
        """
        params = self._fitted()
        Y, covariates = self._values(regional_data, covariates_dataframe, "regional_data", self.regions)
        self.spec, self.params, _added, report = adapt_direct(self.spec, params, Y, covariates,
                                                              return_report=True, **solver_kwargs)
        self.model_params.setdefault("adaptation", {}).update(report)
        return self

    def likelihood_comparison(self) -> pd.DataFrame:
        """Per region: is the Normal adequate? (likelihood-ratio test of the SHASHb fit, see ``engine.direct``)."""
        return likelihood_comparison(self.spec, self._fitted(), self.regions)

    def calibration(self, z: pd.DataFrame) -> pd.DataFrame:
        """Mean, sd and fraction beyond +-1.96 of a z-score table, per region."""
        return pd.DataFrame(metrics.calibration(z.to_numpy()), index=z.columns)

    def save_model(self, directory, overwrite: bool = False) -> None:
        """Save to a directory in the safe format described in the module notes."""
        save_direct_params(directory, self.spec, self._fitted(), self.regions, self.model_params, "regional",
                           overwrite=overwrite)

    @classmethod
    def load_model(cls, directory) -> RegionalNormativeModel:
        """Load a model written by :meth:`save_model` (checksums and format version verified)."""
        spec, params, names, model_params = load_direct_params(directory, "regional")
        model = cls(spec)
        model.params, model.regions, model.model_params = params, names, model_params
        return model
