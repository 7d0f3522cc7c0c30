"""``snm.SpectralNormativeModel``: the engine's spectral model with the reference's signatures.

A thin adapter over :class:`spectranorm_neuro.engine.spectral.SpectralNormativeModel`:

* ``build_from_dataframe`` with the reference's argument order;
* ``fit(..., save_directory=, save_separate=, adapt=, progress_bar=)``;
* ``compute_spectral_predictions`` returns the documented dict (``eigenmode_mu_estimates``,
  ``eigenmode_std_estimates`` (n_subjects, n_modes), ``rho_estimates`` (n_subjects, n_pairs)),
  which ``predict`` / ``evaluate`` / ``harmonize`` accept back;
* ``predict(extended=True, spectral_coeff_test_data=...)``, ``evaluate`` with the reference's
  metrics (censored MSLL, see :mod:`snm.utils.stats`) plus the engine's calibration metrics;
* ``harmonize(encoded_query, spectral_coeff_data, covariates_to_harmonize=..., covariates_dataframe=...)``
  (the engine's order ``(encoded_query, covariates_dataframe, spectral_coeff_data, covariates)`` is
  recognised by a DataFrame in second place);
* ``adapt_fit(covariate_to_adapt, new_category_names, data, covariates)`` in place (the engine's
  returns a new model), ``reduce_model(n_modes, inplace=False)``;
* ``load_model(directory, mmap_mode="r")`` reads this package's models, converted reference models
  and reference-saved directories (restricted unpickler); reference parameters predict as the
  reference does (posterior means plugged in).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..basis import EigenmodeBasis as _NativeBasis
from ..engine.persistence import load_spectral_model
from ..engine.spectral import SpectralNormativeModel as _NativeSpectral
from ..engine.spectral import SpectralPredictions
from ..exceptions import ShapeMismatchError, bad_value
from ._direct import DirectNormativeModel
from ._predictions import NormativePredictions
from ._stepwise import StepwiseFitMixin
from ._upstream import UpstreamParameters, is_converted, is_upstream_path, load_converted, read_upstream, save_converted
from ._upstream_adapt import adapt_upstream
from .utils.gsp import EigenmodeBasis
from .utils.metrics import calibration, smse

__all__ = ["SpectralNormativeModel"]

logger = logging.getLogger("spectranorm_neuro")
SUBDIRECTORY = "spectral_normative_model"
_KEYS = ("eigenmode_mu_estimates", "eigenmode_std_estimates", "rho_estimates")


class SpectralNormativeModel(StepwiseFitMixin, _NativeSpectral):
    """Spectral normative model with the reference's API (see the module docstring).

    Parameters
    ----------
    eigenmode_basis : EigenmodeBasis
    base_model : DirectNormativeModel
    """

    def __init__(self, eigenmode_basis, base_model):
        super().__init__(eigenmode_basis, base_model)
        self._upstream: UpstreamParameters | None = None

    @classmethod
    def build_from_dataframe(cls, eigenmode_basis, model_type: str, covariates_dataframe: pd.DataFrame,
                             numerical_covariates=None, categorical_covariates=None, batch_covariates=None,
                             nonlinear_covariates=None, influencing_mean=None, influencing_variance=None,
                             spline_kwargs=None, **kwargs) -> SpectralNormativeModel:
        """Specify a model from a covariate table (the reference's argument order)."""
        if not isinstance(eigenmode_basis, _NativeBasis):
            raise bad_value("eigenmode_basis", type(eigenmode_basis).__name__, "is not an EigenmodeBasis",
                            "pass snm.utils.gsp.EigenmodeBasis(eigenvalues, eigenvectors)")
        base = DirectNormativeModel.from_dataframe(
            model_type, covariates_dataframe, "dummy_VOI", numerical_covariates, categorical_covariates,
            batch_covariates, nonlinear_covariates, influencing_mean, influencing_variance, spline_kwargs, **kwargs)
        return cls(eigenmode_basis, base)

    def _fitted(self):
        if self._upstream is not None:
            raise bad_value("model", "converted reference model",
                            "holds the reference's parameters, which this method of the engine cannot use",
                            "use predict, evaluate, harmonize or compute_spectral_predictions, or refit the "
                            "model with this package")
        return super()._fitted()

    # ------------------------------------------------------------------ fitting
    def fit(self, spectral_coeff_train_data, covariates_dataframe: pd.DataFrame, n_modes: int = -1, n_jobs: int = -1,
            covariance_structure=0.5, inference: str = "map", random_state=None, progress: bool | None = None,
            pair_selection: str = "covariance", *, save_directory=None, save_separate: bool = False,
            adapt: dict | None = None, progress_bar: bool | None = None, **inference_kwargs
            ) -> SpectralNormativeModel:
        """Fit (see the engine's ``fit``); ``save_directory`` saves the fitted model there.

        ``save_separate`` (one file per mode in the reference) is accepted; the model is saved as
        one directory. ``adapt`` is the reference's internal hook: use :meth:`adapt_fit`.
        """
        if adapt is not None:
            raise bad_value("adapt", adapt, "is the reference's internal adaptation hook",
                            "call adapt_fit(covariate_to_adapt, new_category_names, data, covariates)")
        super().fit(spectral_coeff_train_data, covariates_dataframe, n_modes, n_jobs, covariance_structure,
                    inference, random_state, progress if progress_bar is None else progress_bar, pair_selection,
                    **inference_kwargs)
        self._upstream = None
        self.model_params.update(self._reference_params())
        if save_directory is not None:
            self.save_model(save_directory)
        return self

    def _reference_params(self) -> dict:
        d = self.direct_params
        return {"sample_size": int(self.model_params.get("n_train", 0)),
                "n_params": int(d.beta.shape[1] + d.gamma.shape[1]),
                "sparse_covariance_structure": np.asarray(self.covariance_params.pairs)}

    # ------------------------------------------------------------------ mode-level predictions
    def _pairs(self) -> np.ndarray:
        if self._upstream is not None:
            return np.asarray(self._upstream.model_params["sparse_covariance_structure"], dtype=int).reshape(-1, 2)
        return self._fitted()[1].pairs

    def _mode_predictions(self, test_covariates, predict_without=(), n_modes=None, unseen_batch="error",
                          progress=None, model_params=None) -> SpectralPredictions:
        """The engine's mode-level hook: the reference's parameters for converted models, else the engine's."""
        if model_params is not None and model_params is not self.model_params:
            if "direct_model_params" not in model_params:
                raise bad_value("model_params", sorted(model_params), "are not parameters this model can use",
                                "pass model.model_params, or a reference model's parameters")
            if self._upstream is None:
                raise bad_value("model_params", "reference parameters", "need the reference's specification",
                                "load the reference model with load_model and predict with it")
            upstream = UpstreamParameters({"spec": self._upstream.spec, "model_params": model_params})
            return SpectralPredictions(*upstream.spectral_moments(test_covariates, n_modes, predict_without or ()))
        if self._upstream is not None:
            moments = self._upstream.spectral_moments(test_covariates, n_modes, predict_without or ())
            return SpectralPredictions(*moments)
        return _NativeSpectral._mode_predictions(self, test_covariates, list(predict_without or ()),
                                                 n_modes, unseen_batch, progress)

    def compute_spectral_predictions(self, test_covariates: pd.DataFrame, predict_without=None,
                                     n_modes: int | None = None, unseen_batch: str = "error",
                                     progress: bool | None = None, *, model_params: dict | None = None,
                                     n_jobs: int = -1) -> dict[str, np.ndarray]:
        """Mode-level predictions as the documented dict.

        Returns
        -------
        dict
            ``eigenmode_mu_estimates`` and ``eigenmode_std_estimates`` (n_subjects, n_modes),
            ``rho_estimates`` (n_subjects, n_pairs) for the pairs among the first ``n_modes``.
        """
        k = int(self.model_params["n_modes"]) if n_modes is None else int(n_modes)
        sp = self._mode_predictions(test_covariates, predict_without, k, unseen_batch, progress, model_params)
        return dict(zip(_KEYS, (sp.mu, sp.sd, sp.rho)))

    def _as_spectral(self, spectral_predictions, k: int) -> SpectralPredictions:
        if isinstance(spectral_predictions, SpectralPredictions):
            sp = spectral_predictions
        else:
            missing = [key for key in _KEYS if key not in spectral_predictions]
            if missing:
                raise bad_value("spectral_predictions", sorted(spectral_predictions), f"lack {missing}",
                                "pass the dict returned by compute_spectral_predictions")
            mu, sd, rho = (np.asarray(spectral_predictions[key]) for key in _KEYS)
            pairs = self._pairs()
            pairs = pairs[np.all(pairs < mu.shape[1], axis=1)]
            if rho.shape[1] != len(pairs):
                raise bad_value("spectral_predictions", f"rho_estimates of shape {rho.shape}",
                                f"do not match the {len(pairs)} pairs among the first {mu.shape[1]} modes",
                                "pass the dict returned by compute_spectral_predictions", ShapeMismatchError)
            sp = SpectralPredictions(mu, sd, rho, pairs)
        if sp.n_modes < k:
            raise bad_value("spectral_predictions", f"{sp.n_modes} modes", f"cover fewer than the {k} modes used",
                            "recompute them with compute_spectral_predictions(n_modes=...)", ShapeMismatchError)
        return sp.truncate(k)

    def _resolve_spectral_predictions(self, sp, test_covariates, predict_without, k, unseen_batch, progress,
                                      model_params=None) -> SpectralPredictions:
        if sp is None:
            if test_covariates is None:
                raise bad_value("test_covariates", None, "is missing", "pass test_covariates or spectral_predictions")
            return self._mode_predictions(test_covariates, predict_without, k, unseen_batch, progress, model_params)
        return self._as_spectral(sp, k)

    # ------------------------------------------------------------------ queries
    def _query_moments(self, sp: SpectralPredictions, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Query mean and sd (n_subjects, n_queries): the engine's, or for reference parameters the reference's.

        Where the modelled pair terms make a variance negative, the engine floors it at 1e-12 of
        the diagonal part; the reference drops the pair terms (keeps the diagonal part), which is
        reproduced for converted reference models so that they predict exactly as before.
        """
        if self._upstream is None:
            return sp.query_moments(Q)
        diag = (sp.sd**2) @ (Q**2)
        var = diag.copy()
        if sp.pairs.shape[0]:
            i, j = sp.pairs[:, 0], sp.pairs[:, 1]
            var += (2.0 * sp.rho * sp.sd[:, i] * sp.sd[:, j]) @ (Q[i] * Q[j])
        return sp.mu @ Q, np.sqrt(np.where(var < 0, diag, var))

    def predict(self, encoded_query, test_covariates: pd.DataFrame | None = None, predict_without=None,
                n_modes: int | None = None, *, spectral_predictions=None, extended: bool = False,
                model_params: dict | None = None, spectral_coeff_test_data=None, unseen_batch: str = "error",
                progress: bool | None = None) -> NormativePredictions:
        """Normative mean and sd (n_subjects, n_queries) of each encoded query (n_modes, n_queries).

        ``extended=True`` (with ``spectral_coeff_test_data``) adds z-scores, censored
        log-likelihoods, centiles and the observed query values.
        """
        Q, k = self._queries(encoded_query, n_modes)
        sp = self._resolve_spectral_predictions(spectral_predictions, test_covariates, predict_without, k,
                                                unseen_batch, progress, model_params)
        index = None if test_covariates is None else test_covariates.index
        mu, sd = self._query_moments(sp, Q)
        pred = NormativePredictions({"mu_estimate": mu, "std_estimate": sd}, index=index)
        if extended:
            if spectral_coeff_test_data is None:
                raise bad_value("spectral_coeff_test_data", None, "is required by extended=True",
                                "pass the encoded observed maps (basis.encode(maps))")
            pred.extend_predictions(self._coeffs(spectral_coeff_test_data, "spectral_coeff_test_data",
                                                 sp.n_subjects, k) @ Q)
        return pred

    def evaluate(self, encoded_query, spectral_coeff_test_data, test_covariates: pd.DataFrame | None = None,
                 query_train_moments=None, n_modes: int | None = None, predict_without=None,
                 unseen_batch: str = "error", progress: bool | None = None, *, spectral_predictions=None,
                 model_params: dict | None = None) -> NormativePredictions:
        """Predictions, z-scores, centiles and metrics (one per query) of observed maps.

        ``query_train_moments`` (2, n_queries): mean and sd of each query in the training data,
        the baseline of MSLL; without it the test data's own moments are used (with a warning).
        """
        pred = self.predict(encoded_query, test_covariates, predict_without, n_modes,
                            spectral_predictions=spectral_predictions, extended=True, model_params=model_params,
                            spectral_coeff_test_data=spectral_coeff_test_data, unseen_batch=unseen_batch,
                            progress=progress)
        y = pred.predictions["variable_of_interest"]
        if query_train_moments is None:
            logger.info("Query moments not provided. Using test data moments as an approximation, "
                           "which may lead to overestimating MSLL.")
            query_train_moments = np.array([y.mean(axis=0), y.std(axis=0, ddof=1)])
        moments = np.asarray(query_train_moments, dtype=float)
        if moments.shape != (2, y.shape[1]):
            raise bad_value("query_train_moments", f"array of shape {moments.shape}", f"is not (2, {y.shape[1]})",
                            "pass [means, sds] of each query in training", ShapeMismatchError)
        params = self.model_params if model_params is None else model_params
        pred.evaluate_predictions(y, moments[0], moments[1], n_params=params.get("n_params"))
        pred.evaluations["SMSE"] = smse(y, pred.predictions["mu_estimate"])
        pred.evaluations.update(calibration(pred.predictions["z-score"]))
        return pred

    def harmonize(self, encoded_query, spectral_coeff_data, *args, covariates_to_harmonize=None,
                  covariates_dataframe: pd.DataFrame | None = None, spectral_predictions_full=None,
                  spectral_predictions_partial=None, model_params: dict | None = None, n_modes: int | None = None,
                  unseen_batch: str = "error", progress: bool | None = None) -> np.ndarray:
        """Observed query values (n_subjects, n_queries) with the effects of ``covariates_to_harmonize`` removed.

        Each value keeps its centile: ``mu_without + z * sd_without``.
        """
        if isinstance(spectral_coeff_data, pd.DataFrame):  # the engine's order
            covariates_dataframe, spectral_coeff_data = spectral_coeff_data, (args[0] if args else None)
            if len(args) > 1:
                covariates_to_harmonize = args[1]
        elif args:
            raise bad_value("harmonize", f"{len(args) + 2} positional arguments", "are too many",
                            "pass covariates_to_harmonize=... and covariates_dataframe=... by keyword")
        if spectral_predictions_full is None and (covariates_dataframe is None or covariates_to_harmonize is None):
            raise bad_value("covariates_dataframe", covariates_dataframe, "and covariates_to_harmonize are needed",
                            "pass both, or spectral_predictions_full and spectral_predictions_partial")
        Q, k = self._queries(encoded_query, n_modes)
        full = self._resolve_spectral_predictions(spectral_predictions_full, covariates_dataframe, (), k,
                                                  unseen_batch, progress, model_params)
        part = self._resolve_spectral_predictions(spectral_predictions_partial, covariates_dataframe,
                                                  list(covariates_to_harmonize or ()), k, "error", progress,
                                                  model_params)
        C = self._coeffs(spectral_coeff_data, "spectral_coeff_data", full.n_subjects, k)
        mu, sd = self._query_moments(full, Q)
        mu_wo, sd_wo = self._query_moments(part, Q)
        return np.asarray((C @ Q - mu) / sd * sd_wo + mu_wo, dtype=np.float64)

    # ------------------------------------------------------------------ adaptation & reduction
    def adapt_fit(self, covariate_to_adapt, new_category_names=None, spectral_coeff_train_data=None,
                  covariates_dataframe: pd.DataFrame | None = None, *, pretrained_model_params=None,
                  n_jobs: int = -1, save_directory=None, save_separate: bool = False, **solver_kwargs
                  ) -> SpectralNormativeModel:
        """Learn the effects of new batch levels from their controls, in place (as the reference); returns ``self``.

        The reference's order ``(covariate_to_adapt, new_category_names, spectral_coeff_train_data,
        covariates_dataframe)``; the engine's ``(spectral_coeff_data, covariates_dataframe)`` is also
        accepted. The engine's :meth:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel.adapt_fit`
        leaves the model unchanged and returns an adapted copy.
        """
        if not isinstance(covariate_to_adapt, str):
            spectral_coeff_train_data, covariates_dataframe = covariate_to_adapt, new_category_names
            covariate_to_adapt = new_category_names = None
        if spectral_coeff_train_data is None or covariates_dataframe is None:
            raise bad_value("spectral_coeff_train_data", None, "or covariates_dataframe is missing",
                            "pass the new site's encoded maps and covariates")
        if self._upstream is not None:  # the reference's parameters: the new levels' effects by their posterior mode
            self._upstream = UpstreamParameters(adapt_upstream(
                self._upstream.data, covariate_to_adapt, new_category_names, covariates_dataframe,
                spectral_coeff_train_data))
            self.model_params = self._upstream.model_params
            if save_directory is not None:
                self.save_model(save_directory)
            return self
        if covariate_to_adapt is not None:
            from ._direct import _check_adaptation

            _check_adaptation(self.spec, covariate_to_adapt, new_category_names, covariates_dataframe)
        adapted = _NativeSpectral.adapt_fit(self, spectral_coeff_train_data, covariates_dataframe, **solver_kwargs)
        defaults = getattr(self.base_model, "defaults", None)
        self.base_model = adapted.base_model
        if defaults is not None:
            self.base_model.defaults = defaults
        self.direct_params, self.covariance_params = adapted.direct_params, adapted.covariance_params
        self.model_params = adapted.model_params
        if save_directory is not None:
            self.save_model(save_directory)
        return self

    def reduce_model(self, n_modes: int, *, inplace: bool = False) -> SpectralNormativeModel:
        """The model on its first ``n_modes`` modes: a new model, or this one (``inplace=True``)."""
        reduced = super().reduce_model(n_modes)
        reduced.model_params.update(reduced._reference_params())
        if not inplace:
            return reduced
        self.__dict__.update(reduced.__dict__)
        return self

    # ------------------------------------------------------------------ persistence
    def save_model(self, directory, overwrite: bool = False) -> None:
        """Save in this package's safe format (see :mod:`spectranorm_neuro.engine.persistence`)."""
        if self._upstream is not None:
            save_converted(self._upstream.data, directory, overwrite=overwrite)
            return
        super().save_model(directory, overwrite=overwrite)

    @classmethod
    def load_model(cls, directory, mmap_mode: str | None = "r") -> SpectralNormativeModel:
        """Load this package's model, a converted reference model, or a reference-saved directory.

        ``mmap_mode="r"`` (the default, as the reference) memory-maps the arrays that grow with the
        number of features (basis eigenvectors, the residual part; all arrays of a converted model)
        read-only from the saved files; ``None`` reads them into memory. The files are checksummed,
        so writable modes are refused. A reference-saved (joblib) directory is always read into
        memory by the restricted unpickler.
        """
        if mmap_mode not in (None, "r"):
            raise bad_value("mmap_mode", mmap_mode, "is not supported: saved models are checksummed and "
                            "never modified in place", "pass mmap_mode='r' (read-only) or None")
        if is_upstream_path(directory):
            return cls.from_upstream(read_upstream(directory))
        nested = Path(directory) / SUBDIRECTORY  # the reference's layout, if a model was saved that way
        if (nested / "manifest.json").is_file():
            directory = nested
        if is_converted(directory):
            return cls.from_upstream(load_converted(directory, mmap=mmap_mode is not None))
        native = load_spectral_model(directory, _NativeSpectral, mmap=mmap_mode is not None)
        model = cls(EigenmodeBasis(native.eigenmode_basis.eigenvalues, native.eigenmode_basis.eigenvectors,
                                   native.eigenmode_basis.mass_matrix, native.eigenmode_basis.provenance,
                                   native.eigenmode_basis.structures), DirectNormativeModel(native.spec))
        model.direct_params, model.covariance_params = native.direct_params, native.covariance_params
        model.factor_params, model.residual_params = native.factor_params, native.residual_params
        model.model_params = native.model_params
        return model

    @classmethod
    def from_upstream(cls, data: dict) -> SpectralNormativeModel:
        """A model predicting from a reference spectral model's plain data (see :mod:`._upstream`)."""
        if data.get("kind") != "spectral":
            raise bad_value("model", data.get("kind"), "is not a reference spectral model",
                            "load direct models with DirectNormativeModel.load_model")
        b = data["basis"]
        model = cls(EigenmodeBasis(b["eigenvalues"], b["eigenvectors"], b["mass_matrix"]),
                    DirectNormativeModel(None, data.get("defaults")))
        model._upstream = UpstreamParameters(data)
        model.model_params = model._upstream.model_params
        return model
