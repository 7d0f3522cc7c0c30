"""Scoring a cohort with a fitted model: covariate checks, z/centile/mu/sd/harmonized maps, writing them.

The maps are exactly what the Python API gives for the same data::

    Q = io.vertex_queries(basis, n_modes=k).encoded              # (k, n_features)
    pred = model.predict(Q, covariates, predict_without=without)  # mu, sd: (n_subjects, n_features)
    pred.add_observations(coefficients[:, :k] @ Q)                # z-score, centiles

(``model.evaluate(Q, coefficients, covariates)`` computes the same ``z-score``), done over
blocks of subjects so memory stays bounded; ``harmonized`` is ``mu_without + z * sd_without``
with the batch covariates left out (``SpectralNormativeModel.harmonize``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..exceptions import ExtrapolationWarning, InvalidInputError, UnseenCategoryError, bad_value
from ..io import DerivativesWriter, vertex_queries

__all__ = ["MAP_KINDS", "check_covariates", "score", "write_maps", "encoded_queries"]

#: Maps ``apply`` can write (BIDS ``desc-`` values).
MAP_KINDS = ("zscore", "centile", "harmonized", "mu", "sd")
_KEYS = {"zscore": "z-score", "centile": "centiles", "mu": "mu_estimate", "sd": "std_estimate"}
SUBJECT_BLOCK = 256


def check_covariates(model, covariates: pd.DataFrame, population: bool, source: str,
                     bundle: str = "BUNDLE") -> list[str]:
    """Check a cohort's covariates against the model before scoring.

    Parameters
    ----------
    model : SpectralNormativeModel
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    population : bool
        ``--population``: batch covariates are left out, unseen sites are fine.
    source : str
        Where the covariates come from (named in messages).
    bundle : str, optional
        How to name the bundle in suggested commands.

    Returns
    -------
    list of str
        One extrapolation warning per numerical covariate outside its training range.

    Raises
    ------
    InvalidInputError
        A needed covariate column is missing or has missing values.
    UnseenCategoryError
        A site never seen in training (or adapted to) without ``--population``; or a level of a
        non-batch categorical covariate never seen in training.
    """
    spec = model.spec
    batch = list(spec.batch_covariates)
    without = batch if population else []
    needed = [c for c in spec.covariate_names if c not in without
              and (c in spec.influencing_mean or c in spec.influencing_variance)]
    missing = [c for c in needed if c not in covariates.columns]
    if missing:
        raise bad_value("covariates", source, f"lack the column(s) {missing} the model needs",
                        f"add {missing} to the covariate table" +
                        (" (or pass --population to predict without the site)" if set(missing) <= set(batch) else ""),
                        InvalidInputError)
    for name in needed:
        if covariates[name].isna().any():
            rows = list(covariates.index[covariates[name].isna().to_numpy()][:5])
            raise bad_value(f"covariates[{name!r}]", source, f"has missing values (subjects {rows})",
                            "fill them in or leave those subjects out (e.g. with --select)", InvalidInputError)
    messages = []
    for cov in spec.covariates:
        if cov.name not in needed:
            continue
        if cov.cov_type == "categorical":
            known = set(cov.categories or []) | set(cov.adapted or [])
            new = sorted({str(v) for v in covariates[cov.name].tolist()} - known)
            if not new:
                continue
            if cov.name in batch:
                raise bad_value(cov.name, new, f"is a {cov.name} the model never saw (known: {sorted(known)})",
                                f"adapt the bundle to it with `spectranorm-neuro adapt {bundle} <controls of that "
                                f"{cov.name}> --out <new bundle>`, or pass --population to use population-level "
                                f"norms (no {cov.name} effect)", UnseenCategoryError)
            raise bad_value(cov.name, new, f"holds level(s) the model never saw (known: {sorted(known)})",
                            f"recode {cov.name} with the training levels", UnseenCategoryError)
        x = pd.to_numeric(covariates[cov.name], errors="coerce").to_numpy(dtype=float)
        out = (x < cov.minimum) | (x > cov.maximum)
        if out.any():
            messages.append(f"{int(out.sum())} subject(s) have {cov.name} outside the training range "
                            f"[{cov.minimum:g}, {cov.maximum:g}] (observed {np.nanmin(x):g} .. {np.nanmax(x):g}); "
                            "their norms are extrapolations")
    return messages


def encoded_queries(model) -> np.ndarray:
    """Identity (vertex/voxel) queries of every feature, encoded with the model's modes: (k, n_features)."""
    k = int(model.model_params["n_modes"])
    return vertex_queries(model.eigenmode_basis, n_modes=k).encoded


def score(model, coefficients: np.ndarray, covariates: pd.DataFrame, kinds: Sequence[str] = ("zscore", "centile"),
          population: bool = False, Q: np.ndarray | None = None, progress: bool = False,
          block: int = SUBJECT_BLOCK) -> dict[str, np.ndarray]:
    """Normative maps of every subject.

    Parameters
    ----------
    model : SpectralNormativeModel
    coefficients : numpy.ndarray, shape (n_subjects, >= n_modes)
        Encoded maps (``io.encode_cohort``).
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    kinds : sequence of str, optional
        Among :data:`MAP_KINDS`.
    population : bool, optional
        Predict without the batch covariates.
    Q : numpy.ndarray, shape (n_modes, n_features), optional
        Encoded queries (default: :func:`encoded_queries`).
    progress : bool, optional
    block : int, optional
        Subjects per block.

    Returns
    -------
    dict of str to numpy.ndarray, each (n_subjects, n_features)
    """
    Q = encoded_queries(model) if Q is None else Q
    k = Q.shape[0]
    batch = list(model.spec.batch_covariates)
    without = batch if population else []
    n = len(covariates)
    C = np.asarray(coefficients, dtype=np.float64)[:, :k]
    out = {kind: np.empty((n, Q.shape[1])) for kind in kinds}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)  # reported once by check_covariates
        for start in range(0, n, block):
            rows = slice(start, min(start + block, n))
            cov = covariates.iloc[rows]
            pred = model.predict(Q, cov, predict_without=without, progress=progress)
            pred.add_observations(C[rows] @ Q)
            for kind in kinds:
                if kind in _KEYS:
                    out[kind][rows] = pred.predictions[_KEYS[kind]]
            if "harmonized" in kinds:
                if batch and not population:
                    wo = model.predict(Q, cov, predict_without=batch, progress=progress).predictions
                    out["harmonized"][rows] = wo["mu_estimate"] + pred.predictions["z-score"] * wo["std_estimate"]
                else:
                    out["harmonized"][rows] = C[rows] @ Q
    return out


def write_maps(root, maps: dict[str, np.ndarray], subjects: Sequence[str], measure: str, structures,
               space: dict, summary: bool = True, progress: bool = False) -> list:
    """Write maps as BIDS derivatives (GIFTI per hemisphere / NIfTI per volume) and the z summary TSV.

    Parameters
    ----------
    root : path-like
        Derivatives folder (normally a staging folder).
    maps : dict of str to numpy.ndarray, each (n_subjects, n_features)
        Keyed by ``desc-`` value.
    subjects : sequence of str
    measure : str
        BIDS suffix.
    structures : sequence of Structure
    space : dict
        Template entities (``space``, ``den``, ``res``).
    summary : bool, optional
        Also write ``group/desc-zscoresummary_<measure>.tsv`` (needs ``zscore``).

    Returns
    -------
    list of pathlib.Path
    """
    if any(s.kind not in ("surface", "volume") for s in structures):
        kinds = sorted({s.kind for s in structures})
        raise bad_value("bundle", kinds, "has a basis on a lattice or parcels, which have no image format",
                        "use the Python API (io.write_map / io.write_parcel_table) for such models",
                        InvalidInputError)
    writer = DerivativesWriter(root)
    written = []
    for kind, values in maps.items():
        written += writer.write_cohort(values, subjects, kind, measure, structures, progress=progress, **space)
    if summary and "zscore" in maps:
        written.append(writer.write_summary(maps["zscore"], subjects, measure))
    return written

