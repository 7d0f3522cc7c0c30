"""The reference's step-by-step fitting methods of ``SpectralNormativeModel``, on the engine's solvers.

``fit`` = ``fit_all_direct`` (one direct model per mode) + ``identify_covariance_structure``
(pairs of modes) + ``fit_all_covariance`` (their correlation models); the single-model methods fit
one mode or one pair and return its parameters as a dict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine.covariance import fit_covariance, select_pairs
from ..engine.direct import predict_direct
from ..exceptions import NotFittedError, bad_value

__all__ = ["StepwiseFitMixin"]


def _no_adapt(adapt) -> None:
    if adapt is not None:
        raise bad_value("adapt", adapt, "is the reference's internal adaptation hook",
                        "call adapt_fit(covariate_to_adapt, new_category_names, data, covariates)")


class StepwiseFitMixin:
    """Step-by-step fitting (mixed into ``snm.SpectralNormativeModel``)."""

    def identify_sparse_covariance_structure(self, data, sparsity_threshold: float = 1) -> np.ndarray:
        """The ``int(sparsity_threshold * n_modes)`` mode pairs (n_pairs, 2) of largest |correlation| in ``data``.

        ``data`` is (n_samples, n_modes); pairs are ``(i, j)`` with ``i < j``, strongest first.
        """
        data = np.asarray(data, dtype=float)
        return select_pairs(data, int(sparsity_threshold * data.shape[1]))

    def fit_single_direct(self, variable_of_interest, covariates_dataframe: pd.DataFrame, *, save_directory=None,
                          return_model_params: bool = True, adapt=None) -> dict | None:
        """Fit the base model's specification to one response (n_samples,); return its ``model_params``."""
        _no_adapt(adapt)
        from ._direct import DirectNormativeModel

        model = DirectNormativeModel(self.spec, getattr(self.base_model, "defaults", None))
        model.fit(covariates_dataframe, np.asarray(variable_of_interest, dtype=float), save_directory=save_directory)
        return model.model_params if return_model_params else None

    def fit_single_covariance(self, variable_of_interest_1, variable_of_interest_2, direct_model_params_1: dict,
                              direct_model_params_2: dict, covariates_dataframe: pd.DataFrame, *,
                              save_directory=None, return_model_params: bool = True,
                              defaults_overwrite: dict | None = None, adapt=None) -> dict | None:
        """Fit the correlation model of two responses given their direct models' parameters; return its parameters."""
        _no_adapt(adapt)
        from ._covariance import CovarianceNormativeModel
        from ._direct import DirectNormativeModel

        base = DirectNormativeModel(self.spec, getattr(self.base_model, "defaults", None))
        table = covariates_dataframe.copy()
        for name, y, params in (("voi_1", variable_of_interest_1, direct_model_params_1),
                                ("voi_2", variable_of_interest_2, direct_model_params_2)):
            mu, sd = base._moments(covariates_dataframe, (), "error", params)
            table[name], table[f"{name}_mu_estimate"], table[f"{name}_std_estimate"] = np.asarray(y), mu, sd
        model = CovarianceNormativeModel.from_direct_model(base, "voi_1", "voi_2",
                                                           defaults_overwrite=defaults_overwrite)
        model.fit(table, save_directory=save_directory)
        return model.model_params if return_model_params else None

    def fit_all_direct(self, spectral_coeff_train_data, covariates_dataframe: pd.DataFrame, *, n_modes: int = -1,
                       n_jobs: int = -1, save_directory=None, save_separate: bool = False, adapt=None) -> None:
        """Fit one direct model per mode (step 1 of ``fit``); no mode pairs yet."""
        _no_adapt(adapt)
        self.fit(spectral_coeff_train_data, covariates_dataframe, n_modes, n_jobs, np.zeros((0, 2), dtype=int),
                 save_directory=save_directory)
        self.sparse_covariance_structure = np.zeros((0, 2), dtype=np.int64)

    def _train_z(self, spectral_coeff_train_data, covariates_dataframe) -> np.ndarray:
        if self.direct_params is None:
            raise NotFittedError("SpectralNormativeModel: no direct models. Fix: call fit_all_direct(...) first.")
        k = self.direct_params.n_targets
        C = self._coeffs(spectral_coeff_train_data, "spectral_coeff_train_data", len(covariates_dataframe), k)
        mu, sd = predict_direct(self.spec, self.direct_params, covariates_dataframe, warn=False)
        return (C - mu) / sd

    def identify_covariance_structure(self, spectral_coeff_train_data, covariates_dataframe: pd.DataFrame,
                                      n_modes: int, covariance_structure=0.5, adapt=None) -> None:
        """Choose the mode pairs (step 2 of ``fit``) into ``sparse_covariance_structure`` (n_pairs, 2)."""
        _no_adapt(adapt)
        z = self._train_z(spectral_coeff_train_data, covariates_dataframe)[:, :int(n_modes)]
        self.sparse_covariance_structure = select_pairs(z, covariance_structure)

    def fit_all_covariance(self, spectral_coeff_train_data, covariates_dataframe: pd.DataFrame, *, n_jobs: int = -1,
                           save_directory=None, save_separate: bool = False, adapt=None) -> None:
        """Fit the correlation models of ``sparse_covariance_structure`` (step 3 of ``fit``)."""
        _no_adapt(adapt)
        pairs = getattr(self, "sparse_covariance_structure", None)
        if pairs is None:
            raise NotFittedError("SpectralNormativeModel: no mode pairs. "
                                 "Fix: call identify_covariance_structure(...) first.")
        z = self._train_z(spectral_coeff_train_data, covariates_dataframe)
        self.covariance_params = fit_covariance(self.spec, z, covariates_dataframe, np.asarray(pairs))
        self.model_params.update(n_pairs=len(pairs), sparse_covariance_structure=np.asarray(pairs))
        if save_directory is not None:
            self.save_model(save_directory)


