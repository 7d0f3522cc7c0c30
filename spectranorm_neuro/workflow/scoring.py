"""Scoring a cohort with a fitted model: covariate checks, z/centile/mu/sd/harmonized maps, writing them.

The maps are exactly what the Python API gives for the same data::

    Q = io.vertex_queries(basis, n_modes=k).encoded              # (k, n_features)
    pred = model.predict(Q, covariates, predict_without=without)  # mu, sd: (n_subjects, n_features)
    pred.add_observations(coefficients[:, :k] @ Q)                # z-score, centiles

(``model.evaluate(Q, coefficients, covariates)`` computes the same ``z-score``), done over
blocks of subjects so memory stays bounded; ``harmonized`` is ``mu_without + z * sd_without``
with the batch covariates left out (``SpectralNormativeModel.harmonize``).

With the subjects' maps themselves (``maps``: e.g. ``cohort.maps()``), the maps are those of
:meth:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel.iter_evaluate_maps`: by default
the exact per-vertex z (the spectral part plus the model's residual part, what the modes miss), or
smoothed maps (kernel ``queries``), or the projected low-pass z on request (``score="projected"``).
Every GIFTI file written says which one it holds in its metadata (:func:`z_metadata`).

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

from .._util import block_slices, check_n_jobs, check_positive_int, run_tasks
from ..exceptions import ExtrapolationWarning, InvalidInputError, UnseenCategoryError, bad_value
from ..io import DerivativesWriter, build_bids_name, cohort_summary, kernel_queries, vertex_queries, write_summary

__all__ = ["MAP_KINDS", "check_covariates", "iter_maps", "score", "score_and_write", "write_maps", "encoded_queries",
           "check_writable", "smoothing_queries", "z_metadata", "z_sidecar"]

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


def template_surfaces(basis) -> dict | None:
    """The meshes of a basis built on nilearn's fsaverage5 (from its provenance), else None."""
    provenance = dict(basis.provenance)
    parts = provenance.get("parts") or [provenance]
    if parts and all(p.get("adapter") == "fsaverage5" for p in parts):
        from ..io import load_surface

        return {("L" if p.get("hemi") == "left" else "R"): load_surface("fsaverage5", hemi=p.get("hemi"),
                                                                       surface=p.get("surface", "midthickness"))
                for p in parts}
    return None


def smoothing_queries(basis, fwhm: float, surfaces=None):
    """Gaussian kernel queries centred on every vertex (``io.kernel_queries``) for smoothed maps.

    Parameters
    ----------
    basis : EigenmodeBasis
    fwhm : float
        Full width at half maximum in mm on the mesh (Euclidean distance, kernels cut at 3 sigma).
    surfaces : mapping, optional
        ``{"L": mesh, "R": mesh}`` (paths or (vertices, faces)); default: the fsaverage5 meshes
        when the basis was built on them.

    Returns
    -------
    io.QuerySet
    """
    surfaces = surfaces if surfaces is not None else template_surfaces(basis)
    if surfaces is None:
        raise bad_value("--fwhm", fwhm, "needs the meshes of the basis, which it does not record",
                        "pass surfaces={'L': mesh, 'R': mesh} (the meshes the basis was built on)", InvalidInputError)
    return kernel_queries(basis, surfaces, fwhm=float(fwhm))


def z_metadata(model, score: str, fwhm: float | None = None) -> dict:
    """GIFTI metadata saying which z-score a written map holds."""
    k = int(model.model_params["n_modes"])
    local = int((model.model_params.get("residual") or {}).get("local_modes") or 0) if score == "local" else 0
    if score == "projected":
        kind, text = "projected", f"low-pass z of the map's projection onto the model's {k} modes"
    elif local:
        scale = "vertex value" if fwhm is None else f"value smoothed with a Gaussian kernel of FWHM {fwhm:g} mm"
        kind, text = "local", (f"local z: the {scale} minus the subject's own first {local} modes (its broad "
                               "pattern), against the moments of the rest (spectral plus residual parts), "
                               "calibrated on the training maps")
    elif fwhm is None:
        kind, text = "exact", (f"exact per-vertex z: spectral part ({k} modes) plus the per-vertex residual part "
                               "(what the modes miss), calibrated per vertex on the training maps")
    else:
        kind, text = "smoothed", (f"z of the map smoothed with a Gaussian kernel of FWHM {fwhm:g} mm on the mesh "
                                  "(spectral plus residual parts)")
    meta = {"SpectraNormZ": kind, "SpectraNormZDescription": text, "SpectraNormModes": str(k)}
    if fwhm is not None:
        meta["SpectraNormFWHMmm"] = f"{fwhm:g}"
    if local:
        meta["SpectraNormLocalModes"] = str(local)
    return meta


def z_sidecar(meta: dict | None) -> dict:
    """JSON-sidecar keys saying which z-score a map holds (from :func:`z_metadata`'s GIFTI metadata)."""
    meta = meta or {}
    out = {"ZScore": meta["SpectraNormZ"]} if "SpectraNormZ" in meta else {}
    if "SpectraNormZDescription" in meta:
        out["ZScoreDescription"] = meta["SpectraNormZDescription"]
    if "SpectraNormFWHMmm" in meta:
        out["SmoothingFWHMmm"] = float(meta["SpectraNormFWHMmm"])
    if "SpectraNormLocalModes" in meta:
        out["LocalZCoarseModes"] = int(meta["SpectraNormLocalModes"])
    return out


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
              harmonize_without: Sequence[str] | None = None, maps=None, z: str | None = None,
              queries=None) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """Stream the maps of blocks of subjects (``model.iter_evaluate_maps``, or ``iter_predict`` on coefficients).

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
    maps : array_like, shape (n_subjects, n_features), optional
        The subjects' maps (e.g. ``cohort.maps()``, read a block at a time): scored by
        ``model.iter_evaluate_maps`` (exact z by default); ``coefficients`` is then unused.
    z : {"exact", "projected"}, optional
        With ``maps``: which z (``score`` of ``SpectralNormativeModel.iter_evaluate_maps``).
    queries : optional
        With ``maps``: query weights (e.g. :func:`smoothing_queries`) instead of every feature.

    Yields
    ------
    rows : slice
    maps : dict of str to numpy.ndarray, each (n_block, n_features)
    """
    kinds = _check_kinds(kinds)
    if maps is not None:
        yield from _iter_map_scores(model, maps, covariates, kinds, population,
                                    check_positive_int(block, "block", WRITE_BLOCK), check_n_jobs(n_jobs),
                                    harmonize_without, z, queries)
        return
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


def _n_queries(maps, queries) -> int:
    """Number of queries scored: one per feature, or the rows of the query weights."""
    if queries is None:
        return int(maps.shape[1])
    return int(getattr(queries, "n_queries", None) or queries.shape[0])


def _iter_map_scores(model, maps, covariates, kinds, population, block, n_jobs, harmonize_without, score, queries):
    """:func:`iter_maps` on the maps themselves (exact, smoothed or projected z)."""
    batch = list(model.spec.batch_covariates)
    remove = batch if harmonize_without is None else list(harmonize_without)
    without = batch if population else []
    n_q = _n_queries(maps, queries)
    unseen = "population" if population else "error"

    def stream(drop):
        return model.iter_evaluate_maps(maps, covariates, queries, score, drop, unseen, subject_block=block,
                                        query_block=max(n_q, 1), n_jobs=n_jobs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)  # reported once by check_covariates
        full = stream(without)
        other = stream(remove) if "harmonized" in kinds and remove and not population else None
        for rows, _, pred in full:
            p = pred.predictions
            out = {kind: p[_KEYS[kind]] for kind in kinds if kind in _KEYS}
            if "harmonized" in kinds:
                if other is None:  # nothing to remove: the observed values
                    out["harmonized"] = p["mu_estimate"] + p["z-score"] * p["std_estimate"]
                else:
                    wo = next(other)[2].predictions
                    out["harmonized"] = wo["mu_estimate"] + p["z-score"] * wo["std_estimate"]
            yield rows, out


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
          block: int | None = None, n_jobs: int | None = None, maps=None, z: str | None = None,
          queries=None) -> dict[str, np.ndarray]:
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
    maps, z, queries : optional
        Score the maps themselves (see :func:`iter_maps`); ``coefficients`` may then be None.

    Returns
    -------
    dict of str to numpy.ndarray, each (n_subjects, n_features)

    See Also
    --------
    score_and_write : the same maps written block by block, never all in memory.
    """
    kinds = _check_kinds(kinds)
    if maps is None:
        Q = encoded_queries(model) if Q is None else Q
        n_q = Q.shape[1]
    else:
        queries = None if queries is None else getattr(queries, "weights", queries)
        n_q = _n_queries(maps, queries)
    out = {kind: np.empty((len(covariates), n_q)) for kind in kinds}
    for rows, block_maps in iter_maps(model, coefficients, covariates, kinds, population, Q,
                                      SUBJECT_BLOCK if block is None else block, n_jobs, progress, None, maps, z,
                                      queries):
        for kind in kinds:
            out[kind][rows] = block_maps[kind]
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
                    maps=None, z: str | None = None, queries=None, meta: dict | None = None,
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
    maps, z, queries : optional
        Score the maps themselves (see :func:`iter_maps`); ``coefficients`` may then be None.
    meta : dict, optional
        GIFTI file metadata of every map (default :func:`z_metadata` of the score used).
    metadata : dict, optional
        Keys added to every map's JSON sidecar (e.g. ``"Model"``, see ``io.map_sidecar``); the
        z-score the maps hold (``ZScore``, ``ZScoreDescription``) is added from ``meta``.
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
    if maps is not None:
        from ..engine.maps import resolve_score

        z = resolve_score(model, z)
        queries = None if queries is None else getattr(queries, "weights", queries)
        Q = np.empty((0, _n_queries(maps, queries)))
    else:
        Q = encoded_queries(model) if Q is None else Q
        z = "projected"
    if meta is None:
        meta = z_metadata(model, z)
    metadata = {**z_sidecar(meta), **dict(metadata or {})}
    writer = DerivativesWriter(root, source_datasets=source_datasets, metadata=metadata)
    n = len(covariates)
    kept = {kind: np.empty((n, Q.shape[1])) for kind in keep}
    written: dict[str, list[Path]] = {kind: [] for kind in kinds}
    tables = []
    if maps is not None:  # the maps themselves: exact, smoothed or projected z (engine.maps)
        stream = ((rows, None, (_write_block(writer, {k: block_maps[k] for k in kinds}, subjects[rows], measure,
                                             tuple(structures), dict(space, meta=meta)),
                                {k: block_maps[k] for k in keep},
                                cohort_summary(block_maps["zscore"], subjects[rows]) if summary else None))
                  for rows, block_maps in iter_maps(model, coefficients, covariates, computed, population, None,
                                                    WRITE_BLOCK if block is None else block, n_jobs, progress,
                                                    harmonize_without, maps, z, queries))
    else:  # coefficients: each block is written by the worker that computes it
        task = _BlockWriter(writer, subjects, measure, structures, dict(space, meta=meta), kinds, computed, keep,
                            summary)
        stream = _stream(model, coefficients, covariates, computed, population, Q, WRITE_BLOCK if block is None
                         else block, n_jobs, progress, harmonize_without, task)
    for rows, _, (paths, block_maps, table) in stream:
        for kind in kinds:
            written[kind] += paths[kind]
        for kind in keep:
            kept[kind][rows] = block_maps[kind]
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
               block: int | None = None, meta: dict | None = None, metadata: dict | None = None,
               source_datasets: Sequence | None = None) -> list:
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
    meta : dict, optional
        GIFTI file metadata of every map (e.g. :func:`z_metadata`).
    metadata, source_datasets : optional
        See :func:`score_and_write`.

    Returns
    -------
    list of pathlib.Path
        Map files (kind by kind, subjects in order), then the summary table.
    """
    check_writable(structures)
    block = check_positive_int(WRITE_BLOCK if block is None else block, "block", WRITE_BLOCK)
    writer = DerivativesWriter(root, source_datasets=source_datasets,
                               metadata={**z_sidecar(meta), **dict(metadata or {})})
    n = next(iter(maps.values())).shape[0] if maps else len(subjects)
    subjects = _check_subjects(subjects, n)
    written: dict[str, list[Path]] = {kind: [] for kind in maps}
    bounds = block_slices(n, block)
    tasks = ((writer, {kind: values[rows] for kind, values in maps.items()}, subjects[rows], measure,
              tuple(structures), dict(space, meta=meta)) for rows in bounds)
    for paths in run_tasks(_write_block, tasks, n_jobs, total=n, progress=progress, desc="writing maps",
                           unit="subject", weights=(b.stop - b.start for b in bounds)):
        for kind in maps:
            written[kind] += paths[kind]
    out = [path for kind in maps for path in written[kind]]
    if summary and "zscore" in maps:
        out.append(writer.write_summary(maps["zscore"], subjects, measure))
    return out
