"""Scoring a cohort with a fitted model: covariate checks, z/centile/mu/sd/harmonized maps, writing them.

The maps are exactly what the Python API gives for the same data::

    Q = io.vertex_queries(basis, n_modes=k).encoded              # (k, n_features)
    pred = model.predict(Q, covariates, predict_without=without)  # mu, sd: (n_subjects, n_features)
    pred.add_observations(coefficients[:, :k] @ Q)                # z-score, centiles

(``model.evaluate(Q, coefficients, covariates)`` computes the same ``z-score``), done over
blocks of subjects so memory stays bounded; ``harmonized`` is ``mu_without + z * sd_without``
with the batch covariates left out (``SpectralNormativeModel.harmonize``).

The blocks come from the engine's own streaming prediction,
:meth:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel.iter_predict`: blocks of subjects
run through joblib (``n_jobs``; ``None`` takes joblib's default, which the command line sets from
``--n-jobs`` and ``--scheduler``, so ``joblib.parallel_config(backend="dask")`` spreads them over
a dask cluster), each with BLAS on one thread, so the maps do not depend on ``n_jobs`` or the
backend. :func:`score_and_write` writes each block as it arrives, so the cohort's maps are never
all in memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._util import check_n_jobs, check_positive_int, run_tasks
from ..exceptions import ExtrapolationWarning, InvalidInputError, UnseenCategoryError, bad_value
from ..io import DerivativesWriter, build_bids_name, cohort_summary, vertex_queries, write_summary

__all__ = ["MAP_KINDS", "check_covariates", "iter_maps", "score", "score_and_write", "write_maps", "encoded_queries",
           "check_writable"]

#: Maps ``apply`` can write (BIDS ``desc-`` values).
MAP_KINDS = ("zscore", "centile", "harmonized", "mu", "sd")
_KEYS = {"zscore": "z-score", "centile": "centiles", "mu": "mu_estimate", "sd": "std_estimate"}
SUBJECT_BLOCK = 256  # subjects per block of score()
WRITE_BLOCK = 64  # subjects per block of write_maps() and score_and_write()


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
            new = cov.unseen_levels(covariates[cov.name])
            if not new:
                continue
            known = cov.known_levels
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


def _check_kinds(kinds: Sequence[str], argument: str = "kinds") -> list[str]:
    kinds = list(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in MAP_KINDS]
    if unknown:
        raise bad_value(argument, unknown, "are not maps apply can write", f"pass some of {list(MAP_KINDS)}")
    return kinds


def _harmonize_without(model, population: bool, harmonize_without: Sequence[str] | None) -> list[str]:
    """Covariates the harmonized maps are freed of.

    With nothing to remove (or population scoring) these are the scoring's own covariates, so the
    harmonized values are the observed ones.
    """
    batch = list(model.spec.batch_covariates)
    remove = batch if harmonize_without is None else list(harmonize_without)
    return remove if remove and not population else (batch if population else [])


def _stream(model, coefficients, covariates: pd.DataFrame, kinds: Sequence[str], population: bool,
            Q: np.ndarray | None, block: int, n_jobs, progress: bool, harmonize_without, transform=None):
    """``model.iter_predict`` over blocks of subjects and every query, with harmonized maps when asked."""
    block = check_positive_int(block, "block", WRITE_BLOCK)
    n_jobs = check_n_jobs(n_jobs)
    Q = encoded_queries(model) if Q is None else Q
    C = np.ascontiguousarray(np.asarray(coefficients, dtype=np.float64)[:, :Q.shape[0]])
    without = list(model.spec.batch_covariates) if population else []
    harmonize = _harmonize_without(model, population, harmonize_without) if "harmonized" in kinds else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)  # reported once by check_covariates
        yield from model.iter_predict(Q, covariates, observed=C, predict_without=without, subject_block=block,
                                      query_block=max(Q.shape[1], 1), n_jobs=n_jobs, progress=progress,
                                      harmonize_without=harmonize, transform=transform)


def _maps(pred, kinds: Sequence[str]) -> dict[str, np.ndarray]:
    p = pred.predictions
    return {kind: p[_KEYS.get(kind, kind)] for kind in kinds}


def iter_maps(model, coefficients: np.ndarray, covariates: pd.DataFrame, kinds: Sequence[str],
              population: bool = False, Q: np.ndarray | None = None, block: int = SUBJECT_BLOCK,
              n_jobs: int | None = None, progress: bool = False,
              harmonize_without: Sequence[str] | None = None) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """Stream the maps of blocks of subjects through ``model.iter_predict``.

    Parameters
    ----------
    model : SpectralNormativeModel
    coefficients : numpy.ndarray, shape (n_subjects, >= n_modes)
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    kinds : sequence of str
        Among :data:`MAP_KINDS`.
    population : bool, optional
        Predict without the batch covariates.
    Q : numpy.ndarray, shape (n_modes, n_features), optional
    block : int, optional
        Subjects per block.
    n_jobs : int or None, optional
        Workers over blocks (joblib semantics).
    progress : bool, optional
    harmonize_without : sequence of str, optional
        Covariates the ``"harmonized"`` maps are freed of (default: the batch covariates).

    Yields
    ------
    rows : slice
    maps : dict of str to numpy.ndarray, each (n_block, n_features)
    """
    kinds = _check_kinds(kinds)
    for rows, _, pred in _stream(model, coefficients, covariates, kinds, population, Q, block, n_jobs, progress,
                                 harmonize_without):
        yield rows, _maps(pred, kinds)


class _BlockWriter:
    """``iter_predict`` transform of :func:`score_and_write`: writes a block's maps where it is computed.

    Returns the written paths, the kept maps and the block's z summary rows.
    """

    def __init__(self, writer: DerivativesWriter, subjects: list[str], measure: str, structures, space: dict,
                 kinds: list[str], computed: list[str], keep: list[str], summary: bool):
        self.writer, self.subjects, self.measure = writer, subjects, measure
        self.structures, self.space = tuple(structures), dict(space)
        self.kinds, self.computed, self.keep, self.summary = kinds, computed, keep, summary

    def __call__(self, rows: slice, cols: slice, pred) -> tuple[dict, dict, pd.DataFrame | None]:
        maps = _maps(pred, self.computed)
        subjects = self.subjects[rows]
        paths = _write_block(self.writer, {k: maps[k] for k in self.kinds}, subjects, self.measure, self.structures,
                             self.space)
        table = cohort_summary(maps["zscore"], subjects) if self.summary else None
        return paths, {k: maps[k] for k in self.keep}, table


def _check_subjects(subjects: Sequence[str], n_rows: int) -> list[str]:
    subjects = [str(s) for s in subjects]
    if len(subjects) != n_rows:
        raise bad_value("subjects", f"{len(subjects)} ids", f"do not match the {n_rows} rows of maps/covariates",
                        "pass one participant id per subject, in the same order")
    labels = pd.Series([s.removeprefix("sub-") for s in subjects])
    dup = sorted(f"sub-{s}" for s in labels[labels.duplicated()].unique())
    if dup:
        raise bad_value("subjects", dup, "appear more than once",
                        "drop the duplicates (one map per participant) or use the Python API with sessions",
                        InvalidInputError)
    return subjects


def score(model, coefficients: np.ndarray, covariates: pd.DataFrame, kinds: Sequence[str] = ("zscore", "centile"),
          population: bool = False, Q: np.ndarray | None = None, progress: bool = False,
          block: int | None = None, n_jobs: int | None = None) -> dict[str, np.ndarray]:
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
        Subjects per block; default :data:`SUBJECT_BLOCK`.
    n_jobs : int or None, optional
        Workers over blocks (joblib semantics; None: joblib's default, 1 unless set by
        ``joblib.parallel_config``). The maps do not depend on it.

    Returns
    -------
    dict of str to numpy.ndarray, each (n_subjects, n_features)

    See Also
    --------
    score_and_write : the same maps written block by block, never all in memory.
    """
    kinds = _check_kinds(kinds)
    Q = encoded_queries(model) if Q is None else Q
    out = {kind: np.empty((len(covariates), Q.shape[1])) for kind in kinds}
    for rows, maps in iter_maps(model, coefficients, covariates, kinds, population, Q,
                                SUBJECT_BLOCK if block is None else block, n_jobs, progress):
        for kind in kinds:
            out[kind][rows] = maps[kind]
    return out


def check_writable(structures, argument: str = "bundle") -> None:
    """Refuse bases on lattices or parcels, whose maps have no image format."""
    if any(s.kind not in ("surface", "volume") for s in structures):
        kinds = sorted({s.kind for s in structures})
        raise bad_value(argument, kinds, "has a basis on a lattice or parcels, which have no image format",
                        "use the Python API (io.write_map / io.write_parcel_table) for such models",
                        InvalidInputError)


def _write_block(writer: DerivativesWriter, maps: dict[str, np.ndarray], subjects: Sequence[str], measure: str,
                 structures, space: dict) -> dict[str, list[Path]]:
    """Write one block of subjects' maps; returns the paths of each kind."""
    return {kind: writer.write_cohort(values, subjects, kind, measure, structures, **space)
            for kind, values in maps.items()}


def score_and_write(root, model, coefficients: np.ndarray, covariates: pd.DataFrame, subjects: Sequence[str],
                    measure: str, structures, space: dict, kinds: Sequence[str] = ("zscore", "centile"),
                    population: bool = False, summary: bool = True, keep: Sequence[str] = (),
                    Q: np.ndarray | None = None, block: int | None = None, n_jobs: int | None = None,
                    progress: bool = False, harmonize_without: Sequence[str] | None = None,
                    metadata: dict | None = None, source_datasets: Sequence | None = None,
                    ) -> tuple[list[Path], dict[str, np.ndarray]]:
    """Score a cohort and write its maps block by block (what :func:`score` + :func:`write_maps` do together).

    Blocks of subjects are predicted by ``model.iter_predict`` (joblib workers), and each worker
    writes its block (BIDS derivatives: GIFTI per hemisphere / NIfTI per volume; the ``transform``
    of ``iter_predict``), so memory holds a few blocks, never the cohort's maps. On a cluster the
    output folder must be on a file system every worker shares. The files are those :func:`write_maps` writes
    for :func:`score`'s maps, with the same values.

    Parameters
    ----------
    root : path-like
        Derivatives folder (normally a staging folder).
    model : SpectralNormativeModel
    coefficients : numpy.ndarray, shape (n_subjects, >= n_modes)
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    subjects : sequence of str, length n_subjects
    measure : str
        BIDS suffix.
    structures : sequence of Structure
    space : dict
        Template entities (``space``, ``den``, ``res``).
    kinds : sequence of str, optional
        Maps to write, among :data:`MAP_KINDS`.
    population : bool, optional
        Predict without the batch covariates.
    summary : bool, optional
        Also write ``group/desc-zscoresummary_<measure>.tsv`` (the z-maps are computed for it
        even when ``"zscore"`` is not among ``kinds``).
    keep : sequence of str, optional
        Kinds whose maps are also returned (e.g. ``["zscore"]`` for a report).
    Q : numpy.ndarray, shape (n_modes, n_features), optional
        Encoded queries (default: :func:`encoded_queries`).
    block : int, optional
        Subjects per block; default :data:`WRITE_BLOCK`.
    n_jobs : int or None, optional
        Workers (joblib semantics; None: joblib's default). The files do not depend on it.
    progress : bool, optional
    harmonize_without : sequence of str, optional
        Covariates the ``"harmonized"`` maps are freed of (default: the batch covariates); each
        value keeps its centile, as in ``SpectralNormativeModel.harmonize``.
    metadata : dict, optional
        Keys added to every map's JSON sidecar (e.g. ``"Model"``, see ``io.map_sidecar``).
    source_datasets : sequence, optional
        ``SourceDatasets`` of ``dataset_description.json``.

    Returns
    -------
    written : list of pathlib.Path
        Map files (kind by kind, subjects in order), then the summary table.
    kept : dict of str to numpy.ndarray, each (n_subjects, n_features)
        The maps named in ``keep``.
    """
    check_writable(structures)
    kinds = _check_kinds(kinds)
    keep = _check_kinds(keep, "keep")
    subjects = _check_subjects(subjects, len(covariates))
    computed = list(dict.fromkeys([*kinds, *keep, *(["zscore"] if summary else [])]))
    Q = encoded_queries(model) if Q is None else Q
    writer = DerivativesWriter(root, source_datasets=source_datasets, metadata=metadata)
    n = len(covariates)
    kept = {kind: np.empty((n, Q.shape[1])) for kind in keep}
    written: dict[str, list[Path]] = {kind: [] for kind in kinds}
    tables = []
    task = _BlockWriter(writer, subjects, measure, structures, space, kinds, computed, keep, summary)
    for rows, _, (paths, maps, table) in _stream(model, coefficients, covariates, computed, population, Q,
                                                 WRITE_BLOCK if block is None else block, n_jobs, progress,
                                                 harmonize_without, task):
        for kind in kinds:
            written[kind] += paths[kind]
        for kind in keep:
            kept[kind][rows] = maps[kind]
        if table is not None:
            tables.append(table)
    out = [path for kind in kinds for path in written[kind]]
    if summary:
        table = pd.concat(tables) if tables else cohort_summary(np.empty((0, Q.shape[1])), [])
        name = build_bids_name({"desc": "zscoresummary"}, measure, ".tsv")
        out.append(write_summary(table, writer.root / "group" / name, overwrite=writer.overwrite))
    return out, kept


def write_maps(root, maps: dict[str, np.ndarray], subjects: Sequence[str], measure: str, structures,
               space: dict, summary: bool = True, progress: bool = False, n_jobs: int | None = None,
               block: int | None = None, metadata: dict | None = None, source_datasets: Sequence | None = None,
               ) -> list:
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
    progress : bool, optional
    n_jobs : int or None, optional
        Workers over blocks of subjects (joblib semantics; None: joblib's default).
    block : int, optional
        Subjects per task; default :data:`WRITE_BLOCK`.
    metadata, source_datasets : optional
        See :func:`score_and_write`.

    Returns
    -------
    list of pathlib.Path
        Map files (kind by kind, subjects in order), then the summary table.
    """
    check_writable(structures)
    block = check_positive_int(WRITE_BLOCK if block is None else block, "block", WRITE_BLOCK)
    writer = DerivativesWriter(root, source_datasets=source_datasets, metadata=metadata)
    n = next(iter(maps.values())).shape[0] if maps else len(subjects)
    subjects = _check_subjects(subjects, n)
    written: dict[str, list[Path]] = {kind: [] for kind in maps}
    bounds = [slice(a, min(a + block, n)) for a in range(0, n, block)]
    tasks = ((writer, {kind: values[rows] for kind, values in maps.items()}, subjects[rows], measure,
              tuple(structures), dict(space)) for rows in bounds)
    for paths in run_tasks(_write_block, tasks, n_jobs, total=n, progress=progress, desc="writing maps",
                           unit="subject", weights=(b.stop - b.start for b in bounds)):
        for kind in maps:
            written[kind] += paths[kind]
    out = [path for kind in maps for path in written[kind]]
    if summary and "zscore" in maps:
        out.append(writer.write_summary(maps["zscore"], subjects, measure))
    return out
