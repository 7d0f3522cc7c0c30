"""Safe, documented on-disk format of fitted models (no pickle anywhere).

A saved :class:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel` is a directory::

    manifest.json   format name and version, package version, SHA-256 of every other file
    spec.json       the NormativeModelSpec with its fit-time state (levels, scalings, knots)
    model.json      model_params (n_modes, n_pairs, inference settings, adapted levels ...)
    params.npz      direct_*, covariance_* (and factor_*, the low-rank correlation) arrays
                    (numpy .npz, loaded with allow_pickle=False)
    basis.npz       the eigenmode basis, in the basis format (see ``spectranorm_neuro.basis``)
    residual.npz    (format 2, optional) residual_* arrays: the per-feature models of what the
                    modes miss (``engine.residual``)

Format 1 (releases before the low-rank correlation and the residual part) is still read: such a
model has neither, and scores maps by their projection onto the modes.

Writing happens in a temporary sibling directory renamed into place at the end, so a reader never
sees a half-written model (leftovers of a killed save are removed by the next save); an existing
folder is replaced (``overwrite=True``) only when it holds a saved model and nothing else.
Loading checks the format name, refuses format versions that are not known integers or newer
than this release understands (:class:`FormatVersionError`), verifies every checksum
(:class:`ChecksumError`), and reads arrays without unpickling (a damaged array file is a
:class:`FileFormatError`).
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .._manifest import read_json, read_manifest, verify_manifest, write_manifest
from .._util import MappedNpz, clean_leftovers, json_default, replace_folder, sibling_path, write_npz
from ..basis import EigenmodeBasis
from ..exceptions import FileFormatError, OutputExistsError, SpectraNormError, bad_value
from .covariance import CovarianceParams
from .direct import DirectNormativeModel, DirectParams
from .lowrank import FactorParams
from .residual import ResidualParams
from .specs import NormativeModelSpec

logger = logging.getLogger("spectranorm_neuro")

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "save_spectral_model", "load_spectral_model", "save_folder",
           "read_manifest", "write_manifest", "verify_manifest"]

FORMAT_NAME = "spectranorm_neuro.spectral_model"
FORMAT_VERSION = 2
_FILES = ("spec.json", "model.json", "params.npz", "basis.npz")


def _is_saved_model(directory: Path) -> bool:
    """Whether ``directory`` holds a model this package saved and nothing else (what ``overwrite=True`` replaces)."""
    try:
        manifest = read_json(directory / "manifest.json")
    except (OSError, FileFormatError):
        return False
    listed = set(manifest.get("files") or {}) | {"manifest.json"}
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if not p.is_dir()}
    return str(manifest.get("format", "")).startswith("spectranorm_neuro.") and present <= listed


def _prepare(directory, overwrite: bool) -> tuple[Path, Path]:
    directory = Path(directory)
    if directory.exists() or directory.is_symlink():
        if not directory.is_dir() or directory.is_symlink():
            raise bad_value("directory", str(directory), "exists and is not a folder",
                            "pass a new or empty directory", OutputExistsError)
        if any(directory.iterdir()):
            if not overwrite:
                raise bad_value("directory", str(directory), "is not empty",
                                "pass a new or empty directory, or overwrite=True", OutputExistsError)
            if not _is_saved_model(directory):
                raise bad_value("directory", str(directory), "holds files that are not a model saved by "
                                "spectranorm_neuro, so it is not replaced even with overwrite=True",
                                "pass a new or empty directory", OutputExistsError)
    directory.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(directory)
    tmp = sibling_path(directory, "staging")
    tmp.mkdir()
    return directory, tmp


def save_spectral_model(model, directory, overwrite: bool = False) -> Path:
    """Save a fitted spectral model (see the module docstring for the layout).

    Parameters
    ----------
    model : SpectralNormativeModel
        A fitted model.
    directory : path-like
        New or empty directory (an existing non-empty one only with ``overwrite=True``).
    overwrite : bool, optional
        Replace an existing non-empty directory.

    Returns
    -------
    pathlib.Path
        The directory.
    """
    direct, cov = model._fitted()

    def write(tmp: Path) -> list[str]:
        (tmp / "spec.json").write_text(json.dumps(model.spec.to_dict(), indent=2, default=json_default))
        (tmp / "model.json").write_text(json.dumps(model.model_params, indent=2, default=json_default))
        arrays = direct.to_arrays("direct_")
        arrays.update(cov.to_arrays("covariance_"))
        if model.factor_params is not None:
            arrays.update(model.factor_params.to_arrays("factor_"))
        with open(tmp / "params.npz", "wb") as fh:
            write_npz(fh, arrays)
        files = list(_FILES)
        if model.residual_params is not None:
            with open(tmp / "residual.npz", "wb") as fh:
                write_npz(fh, model.residual_params.to_arrays())
            files.append("residual.npz")
        model.eigenmode_basis.save(tmp / "basis.npz")
        return files

    return save_folder(directory, overwrite, write, FORMAT_NAME, FORMAT_VERSION)


def save_folder(directory, overwrite: bool, write, format_name: str, format_version: int,
                extra: dict | None = None) -> Path:
    """Write a saved-model folder atomically: stage, manifest last, swap the whole folder into place.

    Parameters
    ----------
    directory : path-like
        New or empty directory (an existing one only with ``overwrite=True`` and only when it holds
        a model this package saved and nothing else).
    overwrite : bool
    write : callable
        ``write(staging_folder) -> list of file names`` writes the model's files.
    format_name : str
    format_version : int
    extra : dict, optional
        More keys of the manifest.

    Returns
    -------
    pathlib.Path
        The directory.
    """
    directory, tmp = _prepare(directory, overwrite)
    try:
        files = write(tmp)
        write_manifest(tmp, files, format_name, format_version, extra)
        replace_folder(tmp, directory, sibling_path(directory, "previous"))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_spectral_model(directory, model_class, mmap: bool = False):
    """Load a model written by :func:`save_spectral_model`, verifying format and checksums.

    Parameters
    ----------
    directory : path-like
    model_class : type
        :class:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel` (passed in, so this
        module does not import the model's module, which imports it).
    mmap : bool
        Memory-map the arrays that grow with the number of features (the basis' eigenvectors,
        ``n_features x n_modes``, and the residual part's per-feature parameters) read-only from
        the saved files instead of reading them into memory; the files are checksummed first.

    Returns
    -------
    SpectralNormativeModel
    """
    manifest = read_manifest(directory, FORMAT_NAME, FORMAT_VERSION)
    verify_manifest(directory, manifest)
    directory = Path(directory)
    spec = NormativeModelSpec.from_dict(read_json(directory / "spec.json"))
    model_params = read_json(directory / "model.json")
    residual = None
    try:
        with np.load(directory / "params.npz", allow_pickle=False) as arrays:
            direct = DirectParams.from_arrays(arrays, "direct_")
            cov = CovarianceParams.from_arrays(arrays, "covariance_")
            factor = FactorParams.from_arrays(arrays, "factor_") if "factor_loadings" in arrays.files else None
        if "residual.npz" in manifest.get("files", {}) and mmap:
            residual = ResidualParams.from_arrays(MappedNpz(directory / "residual.npz"))
        elif "residual.npz" in manifest.get("files", {}):
            with np.load(directory / "residual.npz", allow_pickle=False) as arrays:
                residual = ResidualParams.from_arrays(arrays)
    except SpectraNormError:
        raise
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise bad_value("params.npz", str(directory), f"cannot be read ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:100]})", "restore the saved model from its source",
                        FileFormatError) from None
    basis = EigenmodeBasis.load(directory / "basis.npz", mmap=mmap)
    model = model_class(basis, DirectNormativeModel(spec))
    model.direct_params, model.covariance_params, model.model_params = direct, cov, model_params
    model.factor_params, model.residual_params = factor, residual
    if manifest.get("format_version", 1) < 2:
        logger.info("%s: a format-%s model (no low-rank correlation, no residual part): maps are scored by their "
                    "projection onto the modes; refit with maps for exact per-vertex z-scores",
                    directory, manifest.get("format_version"))
    return model
