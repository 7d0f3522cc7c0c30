"""``snm.CovarianceNormativeModel``: the correlation of two variables as a function of covariates.

The reference's pairwise model, mapped onto the engine's correlation models
(:func:`spectranorm_neuro.engine.covariance.fit_covariance`): the two variables are standardized
by their direct models' predictions (``{voi}_mu_estimate`` and ``{voi}_std_estimate`` columns of the
training table, as in the reference), and ``atanh(rho)`` is a linear function of the covariates
in ``influencing_covariance`` (same effect types as the mean and variance).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .._manifest import read_manifest, verify_manifest
from .._util import as_finite_array, json_default, write_npz
from ..engine.covariance import CovarianceParams, adapt_covariance, fit_covariance, predict_correlation
from ..engine.direct import extend_levels
from ..engine.specs import NormativeModelSpec
from ..exceptions import NotFittedError, bad_value
from ._direct import DEFAULTS, DirectNormativeModel, _check_adaptation
from ._predictions import NormativePredictions
from ._specs import CovarianceModelSpec
from ._store import save_folder

__all__ = ["CovarianceNormativeModel"]

COVARIANCE_FORMAT = "spectranorm_neuro.covariance_model"
_PAIR = np.array([[0, 1]])


class CovarianceNormativeModel:
    """Normative model of the correlation between two variables.

    Parameters
    ----------
    spec : CovarianceModelSpec
    defaults : dict, optional
    base_spec : NormativeModelSpec, optional
        Specification of the direct models (model type, splines, priors); set by
        :meth:`from_direct_model`.
    """

    def __init__(self, spec: CovarianceModelSpec, defaults: dict | None = None,
                 base_spec: NormativeModelSpec | None = None):
        self.spec = spec
        self.defaults = {**DEFAULTS, **(defaults or {})}
        self._base_spec = base_spec
        self.params: CovarianceParams | None = None

    def __repr__(self) -> str:
        return f"CovarianceNormativeModel(spec={self.spec!r})"

    @classmethod
    def from_direct_model(cls, direct_model: DirectNormativeModel, variable_of_interest_1: str,
                          variable_of_interest_2: str, influencing_covariance=None,
                          defaults_overwrite: dict | None = None) -> CovarianceNormativeModel:
        """A correlation model sharing ``direct_model``'s covariates (default: its variance covariates)."""
        if not isinstance(direct_model, DirectNormativeModel) or direct_model.spec is None:
            raise bad_value("direct_model", type(direct_model).__name__, "is not a DirectNormativeModel",
                            "pass a model built with snm.DirectNormativeModel.from_dataframe")
        for arg, name in (("variable_of_interest_1", variable_of_interest_1),
                          ("variable_of_interest_2", variable_of_interest_2)):
            if not isinstance(name, str):
                raise bad_value(arg, name, "is not a column name", "pass a string")
        base = direct_model.spec
        infl = list(base.influencing_variance if influencing_covariance is None else influencing_covariance)
        spec = CovarianceModelSpec(variable_of_interest_1, variable_of_interest_2, copy.deepcopy(base.covariates),
                                   infl)
        return cls(spec, {**direct_model.defaults, **(defaults_overwrite or {})}, base)

    def _native_spec(self) -> NormativeModelSpec:
        if self._base_spec is None:
            raise bad_value("model", "CovarianceNormativeModel", "has no direct-model specification",
                            "build it with CovarianceNormativeModel.from_direct_model(...)")
        return self.spec.to_native(self._base_spec)

    def _standardized(self, data: pd.DataFrame, argument: str) -> np.ndarray:
        cols = []
        for voi in (self.spec.variable_of_interest_1, self.spec.variable_of_interest_2):
            need = [voi, f"{voi}_mu_estimate", f"{voi}_std_estimate"]
            missing = [c for c in need if c not in data.columns]
            if missing:
                raise bad_value(argument, "table", f"lacks the column(s) {missing}",
                                f"add {voi!r} and its direct model's predictions as {need[1]!r}, {need[2]!r}")
            y, mu, sd = (as_finite_array(data[c].to_numpy(dtype=float), c, ndim=1) for c in need)
            cols.append((y - mu) / sd)
        return np.column_stack(cols)

    @property
    def model_params(self) -> dict:
        """Fitted parameters: ``posterior_means`` of the ``atanh(rho)`` coefficients (engine arrays: ``"params"``)."""
        if self.params is None:
            raise AttributeError("model_params: the model is not fitted. Fix: call fit(...) first.")
        return {"n_params": int(self.params.theta.shape[1]),
                "posterior_means": {"correlation_coefficients": self.params.theta[0]},
                "posterior_stds": {"correlation_coefficients": np.sqrt(np.diag(self.params.cov[0]))},
                "params": self.params}

    def fit(self, train_data: pd.DataFrame, *, save_directory=None, progress_bar: bool = True,
            adapt: dict | None = None, **solver_kwargs) -> CovarianceNormativeModel:
        """Fit on ``train_data`` (covariates, both variables and their direct predictions)."""
        if adapt is not None:
            raise bad_value("adapt", adapt, "is the reference's internal adaptation hook", "call adapt_fit(...)")
        spec = self._native_spec()
        spec.check_dataframe(train_data, "train_data")
        self.params = fit_covariance(spec, self._standardized(train_data, "train_data"), train_data, _PAIR,
                                     **solver_kwargs)
        if save_directory is not None:
            self.save_model(save_directory)
        return self

    def predict(self, test_covariates: pd.DataFrame, model_params: dict | None = None, predict_without=None
                ) -> NormativePredictions:
        """Predicted correlation (n_subjects,) as ``predictions["correlation_estimate"]``."""
        params = self.params if model_params is None else model_params.get("params")
        if params is None:
            raise NotFittedError("CovarianceNormativeModel: the model is not fitted. Fix: call fit(...) first.")
        rho = predict_correlation(self._native_spec(), params, test_covariates, predict_without or ())
        return NormativePredictions({"correlation_estimate": rho[:, 0]}, index=test_covariates.index)

    def adapt_fit(self, covariate_to_adapt: str, new_category_names, train_data: pd.DataFrame, *,
                  pretrained_model_params: dict | None = None, save_directory=None, progress_bar: bool = True,
                  **solver_kwargs) -> CovarianceNormativeModel:
        """Learn the correlation effects of new batch levels from ``train_data``, in place; returns ``self``."""
        if pretrained_model_params is not None:
            self.params = pretrained_model_params["params"]
        if self.params is None:
            raise NotFittedError("CovarianceNormativeModel: the model is not fitted. Fix: call fit(...) first.")
        old = self._native_spec()
        _check_adaptation(old, covariate_to_adapt, new_category_names, train_data)
        new, added = extend_levels(old, train_data)
        self.params = adapt_covariance(old, new, self.params, self._standardized(train_data, "train_data"),
                                       train_data, added, **solver_kwargs)
        self._base_spec = new
        self.spec = CovarianceModelSpec(self.spec.variable_of_interest_1, self.spec.variable_of_interest_2,
                                        new.covariates, self.spec.influencing_covariance)
        if save_directory is not None:
            self.save_model(save_directory)
        return self

    def save_model(self, directory, *, save_posterior: bool = False, overwrite: bool = False) -> None:
        """Save into ``directory/saved_model`` (JSON + npz + checksummed manifest)."""
        if self.params is None:
            raise NotFittedError("CovarianceNormativeModel: the model is not fitted. Fix: call fit(...) first.")
        meta = {"variable_of_interest_1": self.spec.variable_of_interest_1,
                "variable_of_interest_2": self.spec.variable_of_interest_2,
                "influencing_covariance": list(self.spec.influencing_covariance),
                "base_spec": self._native_spec().to_dict(), "defaults": self.defaults}
        params = self.params

        def write_params(path):
            with open(path, "wb") as fh:
                write_npz(fh, params.to_arrays())

        save_folder(Path(directory) / "saved_model", overwrite, {
            "model.json": lambda path: path.write_text(json.dumps(meta, indent=1, default=json_default)),
            "params.npz": write_params}, COVARIANCE_FORMAT)

    @classmethod
    def load_model(cls, directory, *, load_posterior: bool = False) -> CovarianceNormativeModel:
        """Load a model written by :meth:`save_model`."""
        sub = Path(directory) / "saved_model"
        manifest = read_manifest(sub, COVARIANCE_FORMAT, 1)
        verify_manifest(sub, manifest)
        meta = json.loads((sub / "model.json").read_text())
        base = NormativeModelSpec.from_dict(meta["base_spec"])
        spec = CovarianceModelSpec(meta["variable_of_interest_1"], meta["variable_of_interest_2"], base.covariates,
                                   meta["influencing_covariance"])
        model = cls(spec, meta.get("defaults"), base)
        with np.load(sub / "params.npz", allow_pickle=False) as npz:
            model.params = CovarianceParams.from_arrays(npz)
        return model
