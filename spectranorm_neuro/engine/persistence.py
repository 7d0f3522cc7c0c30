"""Safe, documented on-disk format of fitted models (no pickle anywhere).

A saved :class:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel` is a directory::

    manifest.json   format name and version, package version, SHA-256 of every other file
    spec.json       the NormativeModelSpec with its fit-time state (levels, scalings, knots)
    model.json      model_params (n_modes, n_pairs, inference settings, adapted levels ...)
    params.npz      direct_* and covariance_* arrays (numpy .npz, loaded with allow_pickle=False)
    basis.npz       the eigenmode basis, in the basis format (see ``spectranorm_neuro.basis``)

Writing happens in a temporary sibling directory renamed into place at the end, so a reader never
sees a half-written model. Loading checks the format name, refuses format versions newer than this
release understands (:class:`FormatVersionError`), verifies every checksum
(:class:`ChecksumError`), and reads arrays without unpickling.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .._util import json_default, sha256_file, staging_directory, write_npz
from .._version import __version__
from ..basis import EigenmodeBasis
from ..exceptions import (
    ChecksumError,
    FileFormatError,
    FormatVersionError,
    OutputExistsError,
    UnsafeFormatError,
    bad_value,
)
from .covariance import CovarianceParams
from .direct import DirectNormativeModel, DirectParams
from .specs import NormativeModelSpec

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "save_spectral_model", "load_spectral_model", "read_manifest",
           "write_manifest", "verify_manifest"]

FORMAT_NAME = "spectranorm_neuro.spectral_model"
FORMAT_VERSION = 1
_FILES = ("spec.json", "model.json", "params.npz", "basis.npz")




def write_manifest(directory: Path, files, format_name: str, format_version: int, extra=None) -> None:
    """Write ``manifest.json`` with the SHA-256 of ``files`` (names relative to ``directory``)."""
    manifest = {
        "format": format_name,
        "format_version": format_version,
        "package": "spectranorm_neuro",
        "package_version": __version__,
        "files": {name: sha256_file(directory / name) for name in files},
    }
    manifest.update(extra or {})
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, default=json_default))


def read_manifest(directory, format_name: str, supported_version: int) -> dict:
    """Read and check ``manifest.json`` of a saved object (format name and version)."""
    directory = Path(directory)
    if directory.is_file():
        head = directory.read_bytes()[:2]
        if head[:1] == b"\x80":
            raise UnsafeFormatError(
                f"path={str(directory)!r}: is a pickle/joblib file; spectranorm_neuro never unpickles "
                "(loading a pickle can run arbitrary code). Fix: re-save the model with save_model(), "
                "which writes a directory of JSON and .npz files.")
        raise bad_value("path", str(directory), "is a file, not a saved model directory",
                        "pass the directory given to save_model()", FileFormatError)
    path = directory / "manifest.json"
    if not path.exists():
        raise bad_value("path", str(directory), "holds no manifest.json, so it is not a saved model",
                        "pass the directory given to save_model()", FileFormatError)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise bad_value("manifest.json", str(path), f"is not valid JSON ({exc})",
                        "restore the model directory from its source", FileFormatError) from None
    if manifest.get("format") != format_name:
        raise bad_value("manifest.json", manifest.get("format"), f"is not a {format_name!r} manifest",
                        "load it with the matching loader", FileFormatError)
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > supported_version:
        raise bad_value("format_version", version,
                        f"is newer than the version {supported_version} this release "
                        f"(spectranorm_neuro {__version__}) reads; it was written by "
                        f"spectranorm_neuro {manifest.get('package_version')}",
                        "upgrade spectranorm_neuro", FormatVersionError)
    return manifest


def verify_manifest(directory, manifest: dict) -> None:
    """Check the SHA-256 of every file listed in the manifest."""
    directory = Path(directory)
    for name, digest in manifest.get("files", {}).items():
        path = directory / name
        if not path.exists():
            raise bad_value(name, str(path), "is listed in manifest.json but missing",
                            "restore the complete model directory", ChecksumError)
        actual = sha256_file(path)
        if actual != digest:
            raise bad_value(name, str(path), f"has SHA-256 {actual[:12]}... but the manifest records "
                            f"{digest[:12]}...: the file was modified or corrupted",
                            "restore the original file (never edit a saved model by hand)", ChecksumError)


def _prepare(directory, overwrite: bool) -> tuple[Path, Path]:
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise bad_value("directory", str(directory), "exists and is a file",
                            "pass a new or empty directory", OutputExistsError)
        if any(directory.iterdir()) and not overwrite:
            raise bad_value("directory", str(directory), "is not empty",
                            "pass a new or empty directory, or overwrite=True", OutputExistsError)
    return directory, staging_directory(directory)


def _commit(tmp: Path, directory: Path) -> None:
    if directory.exists():
        backup = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, backup)
        os.replace(tmp, directory)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(tmp, directory)


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
    directory, tmp = _prepare(directory, overwrite)
    try:
        (tmp / "spec.json").write_text(json.dumps(model.spec.to_dict(), indent=2, default=json_default))
        (tmp / "model.json").write_text(json.dumps(model.model_params, indent=2, default=json_default))
        arrays = direct.to_arrays("direct_")
        arrays.update(cov.to_arrays("covariance_"))
        with open(tmp / "params.npz", "wb") as fh:
            write_npz(fh, arrays)
        model.eigenmode_basis.save(tmp / "basis.npz")
        write_manifest(tmp, _FILES, FORMAT_NAME, FORMAT_VERSION)
        _commit(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_spectral_model(directory):
    """Load a model written by :func:`save_spectral_model`, verifying format and checksums.

    Returns
    -------
    SpectralNormativeModel
    """
    from .spectral import SpectralNormativeModel

    manifest = read_manifest(directory, FORMAT_NAME, FORMAT_VERSION)
    verify_manifest(directory, manifest)
    directory = Path(directory)
    spec = NormativeModelSpec.from_dict(json.loads((directory / "spec.json").read_text()))
    model_params = json.loads((directory / "model.json").read_text())
    with np.load(directory / "params.npz", allow_pickle=False) as arrays:
        direct = DirectParams.from_arrays(arrays, "direct_")
        cov = CovarianceParams.from_arrays(arrays, "covariance_")
    basis = EigenmodeBasis.load(directory / "basis.npz")
    model = SpectralNormativeModel(basis, DirectNormativeModel(spec))
    model.direct_params, model.covariance_params, model.model_params = direct, cov, model_params
    return model
