"""Containers for normative predictions and their evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import bad_value
from . import metrics

__all__ = ["NormativePredictions"]


class NormativePredictions:
    """Normative predictions for a set of subjects and queries.

    Attributes
    ----------
    predictions : dict of str to numpy.ndarray
        ``"mu_estimate"`` and ``"std_estimate"`` of shape (n_subjects, n_queries) (or (n_subjects,)
        for a direct model); with observations also ``"z-score"``, ``"centiles"`` (0-100) and
        ``"log-likelihood"``. A SHASHb model also gives ``"epsilon"`` and ``"delta"`` (its skew
        and tail parameters); its z-scores are then ``Phi^-1(F(y))`` with ``F`` the exact SHASHb
        CDF, and its log-likelihoods the exact SHASHb log density.
    evaluations : dict of str to numpy.ndarray
        Per-query metrics (see :func:`spectranorm_neuro.engine.metrics.compute_metrics`); empty
        until :meth:`evaluate` is called.
    index : pandas.Index, optional
        Subject labels (from the covariate table).
    """

    def __init__(self, predictions: dict, evaluations: dict | None = None, index=None):
        self.predictions = dict(predictions)
        self.evaluations = dict(evaluations or {})
        self.index = index

    def __repr__(self) -> str:
        shape = np.shape(self.predictions.get("mu_estimate"))
        return (f"NormativePredictions(shape={shape}, predictions={list(self.predictions)}, "
                f"evaluations={list(self.evaluations)})")

    def add_observations(self, observed) -> NormativePredictions:
        """Add z-scores, centiles and log-likelihoods of ``observed`` (same shape as the means)."""
        mu, sd = self.predictions["mu_estimate"], self.predictions["std_estimate"]
        observed = np.asarray(observed, dtype=float)
        if observed.shape != mu.shape:
            raise bad_value("observed", f"array of shape {observed.shape}",
                            f"does not match the predictions' shape {mu.shape}",
                            "pass one observation per subject and query")
        if "epsilon" in self.predictions:
            from .shash import shash_log_density, shash_z

            eps, delta = self.predictions["epsilon"], self.predictions["delta"]
            z = shash_z(observed, mu, sd, eps, delta)
            ll = shash_log_density(observed, mu, sd, eps, delta)
        else:
            z = metrics.z_scores(observed, mu, sd)
            ll = metrics.gaussian_log_likelihood(observed, mu, sd)
        self.predictions["z-score"] = z
        self.predictions["centiles"] = metrics.centiles(z)
        self.predictions["log-likelihood"] = ll
        self._observed = observed
        return self

    def evaluate(self, observed, train_moments=None) -> NormativePredictions:
        """Add observations (see :meth:`add_observations`) and compute every metric."""
        self.add_observations(observed)
        mu, sd = self.predictions["mu_estimate"], self.predictions["std_estimate"]
        obs = self._observed
        z, ll = self.predictions["z-score"], self.predictions["log-likelihood"]
        if obs.ndim == 1:
            obs, mu, sd, z, ll = obs[:, None], mu[:, None], sd[:, None], z[:, None], ll[:, None]
            if train_moments is not None:
                train_moments = np.asarray(train_moments, dtype=float).reshape(2, 1)
        ev = metrics.compute_metrics(obs, mu, sd, train_moments, z=z, log_likelihood=ll)
        if self._observed.ndim == 1:
            ev = {k: v[0] for k, v in ev.items()}
        self.evaluations = ev
        return self

    def to_array(self, keys=None) -> np.ndarray:
        """Stack prediction arrays.

        Parameters
        ----------
        keys : list of str, optional
            Which predictions (default: all, in insertion order).

        Returns
        -------
        numpy.ndarray, shape (n_keys, n_subjects, n_queries) (or (n_keys, n_subjects))
        """
        keys = list(self.predictions) if keys is None else list(keys)
        return np.stack([np.asarray(self.predictions[k]) for k in keys])

    def to_dataframe(self, which: str = "predictions") -> pd.DataFrame:
        """Tabulate predictions (long format: subject, query, one column per key) or evaluations.

        Parameters
        ----------
        which : {"predictions", "evaluations"}
            What to tabulate. Evaluations give one row per query.

        Returns
        -------
        pandas.DataFrame
        """
        if which == "evaluations":
            return pd.DataFrame({k: np.atleast_1d(v) for k, v in self.evaluations.items()}).rename_axis("query")
        if which != "predictions":
            raise bad_value("which", which, "is not a table this object holds",
                            "pass 'predictions' or 'evaluations'")
        arrays = {k: np.asarray(v) for k, v in self.predictions.items()}
        first = next(iter(arrays.values()))
        if first.ndim == 1:
            df = pd.DataFrame(arrays)
            df.index = self.index if self.index is not None else df.index
            return df
        n_subj, n_q = first.shape
        subjects = np.repeat(np.asarray(self.index if self.index is not None else np.arange(n_subj)), n_q)
        df = pd.DataFrame({"subject": subjects, "query": np.tile(np.arange(n_q), n_subj)})
        for k, v in arrays.items():
            df[k] = v.reshape(-1)
        return df
