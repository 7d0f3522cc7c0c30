"""``snm.DirectNormativeModel``: the engine's direct model with the reference's signatures.

Maps the reference's calls onto :class:`spectranorm_neuro.engine.direct.DirectNormativeModel`:
``defaults`` and ``model_params`` dicts, ``predict(extended=True)`` (z-scores, censored
log-likelihoods, centiles), ``evaluate(new_data)`` with the reference's censored MSLL,
``adapt_fit(covariate_to_adapt, new_category_names, train_data)`` in place (as the reference
documents), ``save_model(directory)`` / ``load_model(directory)`` (this package's safe format in
``directory/saved_model``; a reference-saved directory is read by the restricted unpickler and its
parameters predict exactly as the reference does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._manifest import read_manifest, verify_manifest
from .._util import json_default, write_npz
from ..engine.direct import DirectNormativeModel as _NativeDirect
from ..engine.direct import DirectParams
from ..engine.specs import NormativeModelSpec
from ..exceptions import NotFittedError, bad_value
from ._predictions import NormativePredictions
from ._store import save_folder
from ._upstream import UpstreamParameters, is_converted, is_upstream_path, load_converted, read_upstream, save_converted
from ._upstream_adapt import adapt_upstream

__all__ = ["DEFAULTS", "DirectNormativeModel"]

#: The reference's default settings. The engine's default MAP/Laplace path uses none of the ADVI
#: settings; ``spline_*`` are applied by ``from_dataframe`` when ``spline_kwargs`` does not set them.
DEFAULTS: dict[str, Any] = {
    "spline_df": 5, "spline_degree": 3, "spline_extrapolation_factor": 0.1, "advi_iterations": 20_000,
    "advi_convergence_tolerance": 1e-3, "random_seed": 12345, "adam_learning_rate": 0.1,
    "adam_learning_rate_decay": 0.9995,
}
DIRECT_FORMAT = "spectranorm_neuro.direct_model"
SUBDIRECTORY = "saved_model"


def _is_frame(value) -> bool:
    return isinstance(value, pd.DataFrame)


class DirectNormativeModel(_NativeDirect):
    """Normative model of one variable, with the reference's API (see the module docstring).

    Parameters
    ----------
    spec : NormativeModelSpec
    defaults : dict, optional
        Overrides of :data:`DEFAULTS`.
    """

    def __init__(self, spec: NormativeModelSpec | None, defaults: dict | None = None):
        super().__init__(spec)
        self.defaults = {**DEFAULTS, **(defaults or {})}
        self._upstream: UpstreamParameters | None = None
        self._n_train: int | None = None

    @classmethod
    def from_dataframe(cls, model_type: str, dataframe: pd.DataFrame, variable_of_interest: str = "dummy_VOI",
                       numerical_covariates=None, categorical_covariates=None, batch_covariates=None,
                       nonlinear_covariates=None, influencing_mean=None, influencing_variance=None,
                       spline_kwargs=None, **kwargs) -> DirectNormativeModel:
        """Build a model from a covariate table, as the reference does.

        As in the reference, ``influencing_mean`` / ``influencing_variance`` left as ``None`` mean
        no covariate acts on the mean / the variance (the native engine's defaults differ: every
        covariate on the mean, numerical and batch covariates on the log-sd).
        """
        return super().from_dataframe(
            model_type, dataframe, variable_of_interest, numerical_covariates, categorical_covariates,
            batch_covariates, nonlinear_covariates, list(influencing_mean or []), list(influencing_variance or []),
            spline_kwargs, **kwargs)

    # ------------------------------------------------------------------ state
    @property
    def model_params(self) -> dict:
        """Fitted parameters as a dict, the engine's arrays under ``"params"``.

        Keys ``mean_VOI``, ``std_VOI``, ``sample_size``, ``n_params``, ``posterior_means``,
        ``posterior_stds``. Raises ``AttributeError`` before fitting (as the reference, so ``hasattr`` works).
        """
        if self._upstream is not None:
            return self._upstream.model_params
        if self.params is None:
            raise AttributeError("model_params: the model is not fitted. Fix: call fit(...) first.")
        p = self.params
        sd_b = np.sqrt(np.maximum(np.einsum("mpp->mp", p.cov_beta), 0.0))[0]
        sd_g = np.sqrt(np.maximum(np.einsum("mpp->mp", p.cov_gamma), 0.0))[0]
        return {"mean_VOI": float(p.y_mean[0]), "std_VOI": float(p.y_std[0]), "sample_size": self._n_train,
                "n_params": int(p.beta.shape[1] + p.gamma.shape[1]),
                "posterior_means": {"mean_coefficients": p.beta[0], "log_sd_coefficients": p.gamma[0]},
                "posterior_stds": {"mean_coefficients": sd_b, "log_sd_coefficients": sd_g},
                "params": p, **{k: v for k, v in getattr(self, "_settings", {}).items()}}

    @model_params.setter
    def model_params(self, value: dict) -> None:
        # the engine's own settings and reports (inference, adaptation ...): kept beside the reference's keys
        self._settings = dict(value)

    def _response(self, data: pd.DataFrame, y, argument: str) -> np.ndarray:
        if self._upstream is not None and y is None:
            voi = self._upstream.spec["variable_of_interest"]
            if not isinstance(data, pd.DataFrame) or voi not in data.columns:
                raise bad_value(argument, "table without the response column",
                                f"lacks the variable of interest {voi!r}", f"add a {voi!r} column or pass y=")
            y = data[voi].to_numpy()
        return super()._response(data, y, argument)

    def _moments(self, covariates: pd.DataFrame, without, unseen_batch: str, model_params) -> tuple:
        if model_params is not None and "params" not in model_params and self._upstream is not None:
            return self._upstream.direct_moments(model_params, covariates, without)
        if self._upstream is not None and model_params is None:
            return self._upstream.direct_moments(self._upstream.model_params, covariates, without)
        if model_params is not None:
            if "params" not in model_params:
                raise bad_value("model_params", sorted(model_params), "are not parameters of this model",
                                "pass model.model_params of a fitted model of the same specification")
            saved, self.params = self.params, model_params["params"]
            try:
                return self._native_moments(covariates, without, unseen_batch)
            finally:
                self.params = saved
        return self._native_moments(covariates, without, unseen_batch)

    def _native_moments(self, covariates, without, unseen_batch):
        pred = super().predict(covariates, list(without or ()), unseen_batch)
        return pred.predictions["mu_estimate"], pred.predictions["std_estimate"]

    # ------------------------------------------------------------------ API
    def fit(self, train_data: pd.DataFrame, y=None, *, save_directory=None, progress_bar: bool = True,
            adapt: dict | None = None, **solver_kwargs) -> DirectNormativeModel:
        """Fit on ``train_data`` (covariates and the variable of interest, or ``y``).

        ``progress_bar`` is accepted for compatibility (the fit is one batched solve); with
        ``save_directory`` the fitted model is saved there. ``adapt`` is the reference's internal
        hook: use :meth:`adapt_fit` instead.
        """
        if adapt is not None:
            raise bad_value("adapt", adapt, "is the reference's internal adaptation hook",
                            "call adapt_fit(covariate_to_adapt, new_category_names, train_data)")
        super().fit(train_data, y, **solver_kwargs)
        self._upstream, self._n_train = None, len(train_data)
        if save_directory is not None:
            self.save_model(save_directory)
        return self

    def predict(self, test_covariates: pd.DataFrame, predict_without=None, unseen_batch: str = "error",
                extended: bool = False, *, model_params: dict | None = None) -> NormativePredictions:
        """Mean and sd (n_subjects,); ``extended=True`` adds z-scores, censored log-likelihoods, centiles."""
        if self.params is None and self._upstream is None:
            raise NotFittedError("DirectNormativeModel: the model is not fitted. Fix: call fit(...) first.")
        mu, sd = self._moments(test_covariates, predict_without or (), unseen_batch, model_params)
        pred = NormativePredictions({"mu_estimate": np.asarray(mu), "std_estimate": np.asarray(sd)},
                                    index=test_covariates.index)
        if extended:
            pred.extend_predictions(self._response(test_covariates, None, "test_covariates"))
        return pred

    def evaluate(self, new_data: pd.DataFrame, y=None, train_moments=None, unseen_batch: str = "error"
                 ) -> NormativePredictions:
        """Predict and evaluate on ``new_data`` (reference metrics, censored MSLL against the training moments)."""
        y = self._response(new_data, y, "new_data")
        params = self.model_params
        mean, std = (params["mean_VOI"], params["std_VOI"]) if train_moments is None else tuple(train_moments)
        pred = self.predict(new_data, unseen_batch=unseen_batch)
        return pred.evaluate_predictions(y, np.asarray(mean), np.asarray(std), n_params=params.get("n_params"))

    def harmonize(self, data: pd.DataFrame, covariates_to_harmonize, y=None, *, model_params=None) -> np.ndarray:
        """Values with the effects of ``covariates_to_harmonize`` removed, each keeping its centile (n,)."""
        y = self._response(data, y, "data")
        mu, sd = self._moments(data, (), "error", model_params)
        mu_wo, sd_wo = self._moments(data, list(covariates_to_harmonize), "error", model_params)
        return np.asarray((y - mu) / sd * sd_wo + mu_wo, dtype=np.float64)

    def adapt_fit(self, covariate_to_adapt, new_category_names=None, train_data: pd.DataFrame | None = None, *,
                  pretrained_model_params: dict | None = None, save_directory=None, progress_bar: bool = True,
                  y=None, **solver_kwargs) -> DirectNormativeModel:
        """Learn the effects of new levels of a batch covariate from ``train_data``, in place.

        The reference's order ``(covariate_to_adapt, new_category_names, train_data)``; the
        engine's order ``adapt_fit(new_data)`` (a DataFrame first) is also accepted. Every other
        parameter stays frozen. Returns ``self``.
        """
        if _is_frame(covariate_to_adapt):
            train_data, covariate_to_adapt = covariate_to_adapt, None
        if train_data is None:
            raise bad_value("train_data", None, "is missing", "pass the new site's data (covariates and response)")
        if self._upstream is not None:  # the reference's parameters: the new levels' effects by their posterior mode
            data = adapt_upstream(self._upstream.data, covariate_to_adapt, new_category_names, train_data,
                                  self._response(train_data, y, "train_data"))
            self._upstream = UpstreamParameters(data)
            if save_directory is not None:
                self.save_model(save_directory)
            return self
        if pretrained_model_params is not None and "params" in pretrained_model_params:
            self.params = pretrained_model_params["params"]
        if covariate_to_adapt is not None:
            _check_adaptation(self.spec, covariate_to_adapt, new_category_names, train_data)
        adapted = _NativeDirect.adapt_fit(self, train_data, y, **solver_kwargs)
        self.spec, self.params = adapted.spec, adapted.params
        if save_directory is not None:
            self.save_model(save_directory)
        return self

    # ------------------------------------------------------------------ persistence
    def save_model(self, directory, *, save_posterior: bool = False, overwrite: bool = False) -> None:
        """Save into ``directory/saved_model`` (JSON + npz + checksummed manifest; never pickle).

        ``save_posterior`` is accepted for compatibility: the Laplace posterior (means and
        covariances) is always saved.
        """
        target = Path(directory) / SUBDIRECTORY
        if self._upstream is not None:
            save_converted(self._upstream.data, target, overwrite=overwrite)
            return
        _save_direct(self, target, overwrite)

    @classmethod
    def load_model(cls, directory, *, load_posterior: bool = False) -> DirectNormativeModel:
        """Load a model saved by :meth:`save_model`, a converted reference model, or a reference-saved one."""
        directory = Path(directory)
        sub = directory / SUBDIRECTORY if (directory / SUBDIRECTORY).is_dir() else directory
        if is_upstream_path(directory):
            return cls.from_upstream(read_upstream(directory))
        if is_converted(sub):
            return cls.from_upstream(load_converted(sub))
        return _load_direct(cls, sub)

    @classmethod
    def from_upstream(cls, data: dict) -> DirectNormativeModel:
        """A model predicting from a reference model's plain data (see :mod:`._upstream`)."""
        if data.get("kind") != "direct":
            raise bad_value("model", data.get("kind"), "is not a reference direct model",
                            "load spectral models with SpectralNormativeModel.load_model")
        model = cls(None, data.get("defaults"))
        model._upstream = UpstreamParameters(data)
        return model


def _check_adaptation(spec: NormativeModelSpec, covariate: str, new_names, data: pd.DataFrame) -> None:
    names = [c.name for c in spec.covariates if c.cov_type == "categorical"]
    if covariate not in names:
        raise bad_value("covariate_to_adapt", covariate, "is not a categorical covariate of the model",
                        f"pass one of {names}")
    if new_names is not None:
        new = {str(v) for v in np.atleast_1d(np.asarray(new_names)).tolist()}
        present = {str(v) for v in data[covariate].unique()}
        missing = sorted(new - present)
        if missing:
            raise bad_value("new_category_names", missing, f"do not occur in train_data[{covariate!r}]",
                            "pass the new levels present in the adaptation data")


def _save_direct(model: DirectNormativeModel, directory: Path, overwrite: bool) -> None:
    if model.params is None:
        raise NotFittedError("DirectNormativeModel: the model is not fitted. Fix: call fit(...) before save_model.")
    params = model.params
    meta = {"defaults": model.defaults, "sample_size": model._n_train}

    def write_params(path):
        with open(path, "wb") as fh:
            write_npz(fh, params.to_arrays())

    save_folder(directory, overwrite, {
        "spec.json": lambda path: path.write_text(json.dumps(model.spec.to_dict(), indent=1, default=json_default)),
        "model.json": lambda path: path.write_text(json.dumps(meta, indent=1, default=json_default)),
        "params.npz": write_params}, DIRECT_FORMAT)


def _load_direct(cls, directory: Path) -> DirectNormativeModel:
    manifest = read_manifest(directory, DIRECT_FORMAT, 1)
    verify_manifest(directory, manifest)
    spec = NormativeModelSpec.from_dict(json.loads((directory / "spec.json").read_text()))
    meta = json.loads((directory / "model.json").read_text())
    model = cls(spec, meta.get("defaults"))
    with np.load(directory / "params.npz", allow_pickle=False) as npz:
        model.params = DirectParams.from_arrays(npz)
    model._n_train = meta.get("sample_size")
    return model
