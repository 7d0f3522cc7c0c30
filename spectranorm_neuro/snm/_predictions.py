"""``snm.NormativePredictions``: the engine's prediction container plus the reference's methods."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..engine.results import NormativePredictions as _NativePredictions
from .utils import metrics as _m
from .utils import stats as _s

__all__ = ["NormativePredictions"]


class NormativePredictions(_NativePredictions):
    """Predictions (``mu_estimate``, ``std_estimate`` ...) and evaluations, with the reference's methods.

    Parameters
    ----------
    predictions : dict of str to numpy.ndarray
        Arrays of shape (n_subjects,) or (n_subjects, n_queries).
    evaluations : dict, optional
    index : pandas.Index, optional
        Subject labels.
    """

    @classmethod
    def from_native(cls, pred: _NativePredictions) -> NormativePredictions:
        """Wrap an engine result (no copy of the arrays)."""
        return cls(pred.predictions, pred.evaluations, index=pred.index)

    def extend_predictions(self, variable_of_interest, *, likelihood_censoring_quantile: float = 0.01
                           ) -> NormativePredictions:
        """Add ``z-score``, censored ``log-likelihood``, ``centiles`` and ``variable_of_interest`` (in place).

        Log-likelihoods are censored as in :func:`snm.utils.stats.compute_censored_log_likelihood`
        (``likelihood_censoring_quantile=0`` for uncensored ones).
        """
        y = np.asarray(variable_of_interest, dtype=float)
        mu, sd = self.predictions["mu_estimate"], self.predictions["std_estimate"]
        self.predictions["z-score"] = (y - mu) / sd
        self.predictions["log-likelihood"] = _s.compute_censored_log_likelihood(
            y, mu, sd, censored_quantile=likelihood_censoring_quantile)
        self.predictions["centiles"] = _s.compute_centiles_from_z_scores(self.predictions["z-score"])
        self.predictions["variable_of_interest"] = y
        return self

    def evaluate_predictions(self, variable_of_interest, train_mean, train_std, n_params: int | None = None,
                             msll_censored_quantile: float = 0.01) -> NormativePredictions:
        """Extend the predictions, then compute MAE, MSE, RMSE, MAPE, R-squared, Explained Variance and MSLL.

        MSLL compares censored log-likelihoods of the model and of ``N(train_mean, train_std^2)``
        (``msll_censored_quantile=0`` for the uncensored MSLL). ``n_params`` is accepted and not
        used, as in the reference: ``evaluations`` holds exactly these seven metrics, each a 0-d array
        (one value per query for several queries). For an information criterion use
        :func:`snm.utils.metrics.compute_bic`.
        """
        del n_params  # the reference's parameter, kept "for future use" there too
        self.extend_predictions(variable_of_interest, likelihood_censoring_quantile=msll_censored_quantile)
        y, mu = self.predictions["variable_of_interest"], self.predictions["mu_estimate"]
        ev = self.evaluations
        ev["MAE"] = _m.compute_mae(y, mu)
        ev["MSE"] = _m.compute_mse(y, mu)
        ev["RMSE"] = _m.compute_rmse(y, mu)
        ev["MAPE"] = _m.compute_mape(y, mu)
        ev["R-squared"] = _m.compute_r2(y, mu)
        ev["Explained Variance"] = _m.compute_expv(y, mu)
        baseline = _s.compute_censored_log_likelihood(y, np.asarray(train_mean), np.asarray(train_std),
                                                      censored_quantile=msll_censored_quantile)
        ev["MSLL"] = _m.compute_msll(self.predictions["log-likelihood"], baseline)
        return self

    def to_dataframe(self, index=None, which: str = "predictions") -> pd.DataFrame:
        """Predictions as a table: one column per key (``key_1`` ... ``key_q`` for several queries).

        ``which="evaluations"`` tabulates the evaluations (one row per query), as the engine's
        ``to_dataframe("evaluations")``, which is also accepted.
        """
        if isinstance(index, str) and index in ("predictions", "evaluations"):  # the engine's call
            which, index = index, None
        if which == "evaluations":
            return super().to_dataframe("evaluations")
        if which != "predictions":
            return super().to_dataframe(which)  # the engine names the problem
        cols = {}
        for key, arr in self.predictions.items():
            arr = np.asarray(arr)
            if arr.ndim > 1 and arr.shape[1] == 1:
                cols[key] = arr[:, 0]
            elif arr.ndim > 1:
                cols.update({f"{key}_{i + 1}": arr[:, i] for i in range(arr.shape[1])})
            else:
                cols[key] = arr
        return pd.DataFrame(cols, index=self.index if index is None else index)
