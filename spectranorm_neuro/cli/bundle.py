"""Model bundles: one folder (or one ``.zip``) that holds everything needed to apply a fitted model.

Layout (bundle format version 1)::

    manifest.json        bundle manifest: format "spectranorm_neuro.model_bundle", format_version,
                         package version, SHA-256 of every other file of the bundle
    model_card.json      the model card (see :mod:`spectranorm_neuro.cli.card`)
    model/               the fitted model exactly as ``SpectralNormativeModel.save_model`` writes it
        manifest.json    (its own format name/version and checksums, see engine.persistence)
        spec.json, model.json, params.npz, basis.npz

A ``.zip`` bundle is the same tree zipped (fixed timestamps, so the same model gives the same
bytes). Loading never unpickles: JSON, and ``.npz`` read with ``allow_pickle=False``. It checks,
in order: the bundle format name and version (a newer version is refused with
:class:`~spectranorm_neuro.exceptions.FormatVersionError` naming both versions), the SHA-256 of
every file (:class:`~spectranorm_neuro.exceptions.ChecksumError` naming the file), then the
model's own manifest. :func:`check_compatible` refuses data on another mesh, mask or space
(:class:`~spectranorm_neuro.exceptions.IncompatibleModelError`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .._util import atomic_path, json_default
from ..engine.persistence import FORMAT_NAME as MODEL_FORMAT_NAME
from ..engine.persistence import FORMAT_VERSION as MODEL_FORMAT_VERSION
from ..engine.persistence import read_manifest, verify_manifest, write_manifest
from ..engine.spectral import SpectralNormativeModel
from ..exceptions import (
    FileFormatError,
    IncompatibleModelError,
    OutputExistsError,
    UnsafeFormatError,
    bad_value,
)
from ._output import relative_files

__all__ = ["BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "ModelBundle", "save_bundle", "load_bundle",
           "read_bundle_manifest", "check_compatible", "space_label"]

BUNDLE_FORMAT = "spectranorm_neuro.model_bundle"
BUNDLE_FORMAT_VERSION = 1
CARD_FILE = "model_card.json"
MODEL_DIR = "model"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SPACE_KEYS = ("space", "res", "den")  # BIDS entity order


@dataclass
class ModelBundle:
    """A loaded bundle.

    Attributes
    ----------
    model : SpectralNormativeModel
        The fitted model (its ``eigenmode_basis`` is the basis).
    card : dict
        The model card.
    manifest : dict
        The bundle manifest (format, versions, checksums).
    path : pathlib.Path
        Where the bundle was read from (folder or ``.zip``).
    """

    model: SpectralNormativeModel
    card: dict
    manifest: dict
    path: Path

    @property
    def basis(self):
        """The model's :class:`~spectranorm_neuro.basis.EigenmodeBasis`."""
        return self.model.eigenmode_basis

    @property
    def space(self) -> dict[str, str]:
        """BIDS template entities of the training maps (``{"space": ..., "den": ...}``; may be empty)."""
        return {k: str(v) for k, v in (self.card.get("basis", {}).get("space") or {}).items() if v}

    @property
    def measure(self) -> str | None:
        """Name of the modelled measure (BIDS suffix), e.g. ``"thickness"``."""
        return self.card.get("measure")




def _is_bundle_dir(path: Path) -> bool:
    try:
        return json.loads((path / "manifest.json").read_text()).get("format") == BUNDLE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_target(path: Path, overwrite: bool) -> None:
    if not path.exists():
        return
    if not overwrite:
        raise bad_value("--out", str(path), "already exists", "choose another bundle path or pass --overwrite",
                        OutputExistsError)
    if path.is_dir() and any(path.iterdir()) and not _is_bundle_dir(path):
        raise bad_value("--out", str(path), "is a non-empty folder that is not a model bundle, so it is not "
                        "replaced even with --overwrite", "choose another bundle path", OutputExistsError)
    if path.is_file() and path.suffix.lower() != ".zip":
        raise bad_value("--out", str(path), "is an existing file that is not a .zip bundle",
                        "choose another bundle path", OutputExistsError)


def _write_tree(model: SpectralNormativeModel, card: dict, root: Path) -> None:
    model.save_model(root / MODEL_DIR)
    (root / CARD_FILE).write_text(json.dumps(card, indent=2, default=json_default) + "\n")
    files = relative_files(root)
    write_manifest(root, files, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION,
                   extra={"model_format": MODEL_FORMAT_NAME, "model_format_version": MODEL_FORMAT_VERSION})


def _zip_tree(root: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in ["manifest.json", *[f for f in relative_files(root) if f != "manifest.json"]]:
            info = zipfile.ZipInfo(rel, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (root / rel).read_bytes())


def save_bundle(model: SpectralNormativeModel, path: str | os.PathLike, card: dict,
                overwrite: bool = False) -> Path:
    """Write a model bundle atomically.

    Parameters
    ----------
    model : SpectralNormativeModel
        A fitted model.
    path : path-like
        Bundle folder, or a file ending in ``.zip``.
    card : dict
        JSON-serialisable model card.
    overwrite : bool, optional
        Replace an existing bundle (never a non-empty folder that is not a bundle).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    _check_target(path, overwrite)
    parent = path.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        tree = tmp / "bundle"
        tree.mkdir()
        _write_tree(model, card, tree)
        if path.suffix.lower() == ".zip":
            with atomic_path(path, overwrite=overwrite) as part:
                _zip_tree(tree, part)
        elif path.exists():
            backup = tmp / "previous"
            os.replace(path, backup)
            os.replace(tree, path)
        else:
            os.replace(tree, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _safe_extract(archive: zipfile.ZipFile, dest: Path, source: Path) -> None:
    for info in archive.infolist():
        name = PurePosixPath(info.filename)
        mode = (info.external_attr >> 16) & 0o170000
        if name.is_absolute() or ".." in name.parts or mode == 0o120000 or "\\" in info.filename:
            raise bad_value("bundle", str(source), f"holds an unsafe member path {info.filename!r}",
                            "use a bundle written by spectranorm-neuro", FileFormatError)
    archive.extractall(dest)


def read_bundle_manifest(folder: str | os.PathLike, source: str | os.PathLike | None = None) -> dict:
    """Check a bundle folder's manifest (format, version) and every file's SHA-256.

    Parameters
    ----------
    folder : path-like
        An unpacked bundle folder.
    source : path-like, optional
        What to name in messages (the ``.zip`` it came from).

    Returns
    -------
    dict
        The manifest.
    """
    folder = Path(folder)
    shown = str(source or folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise bad_value("bundle", shown, "holds no manifest.json, so it is not a model bundle",
                        "pass the folder or .zip written by `spectranorm-neuro fit` (or `adapt`)",
                        FileFormatError)
    try:
        fmt = json.loads(manifest_path.read_text()).get("format")
    except (ValueError, AttributeError):
        fmt = None
    if fmt == MODEL_FORMAT_NAME:
        raise bad_value("bundle", shown, "is a saved model folder (save_model), not a bundle",
                        "pass the bundle folder that contains it, or build a bundle with `spectranorm-neuro fit`",
                        FileFormatError)
    manifest = read_manifest(folder, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION)
    verify_manifest(folder, manifest)
    missing = [f for f in (CARD_FILE, f"{MODEL_DIR}/manifest.json") if f not in manifest.get("files", {})]
    if missing:
        raise bad_value("bundle", shown, f"does not list {missing} in its manifest",
                        "rebuild the bundle with `spectranorm-neuro fit`", FileFormatError)
    return manifest


def _load_folder(folder: Path, source: Path) -> ModelBundle:
    manifest = read_bundle_manifest(folder, source)
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except ValueError as exc:
        raise bad_value(CARD_FILE, str(source), f"is not valid JSON ({exc})", "rebuild the bundle",
                        FileFormatError) from None
    model = SpectralNormativeModel.load_model(folder / MODEL_DIR)
    return ModelBundle(model, card, manifest, source)


def load_bundle(path: str | os.PathLike) -> ModelBundle:
    """Load and verify a bundle (folder or ``.zip``).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ModelBundle

    Raises
    ------
    FileFormatError
        Not a bundle (or unreadable).
    UnsafeFormatError
        A pickle/joblib file (never unpickled).
    ChecksumError
        A file differs from its recorded SHA-256.
    FormatVersionError
        Written by a newer bundle (or model) format.
    """
    path = Path(path)
    if not path.exists():
        raise bad_value("bundle", str(path), "does not exist",
                        "pass the folder or .zip written by `spectranorm-neuro fit`", FileFormatError)
    if path.is_dir():
        return _load_folder(path, path)
    head = path.read_bytes()[:4]
    if head[:1] == b"\x80":
        raise UnsafeFormatError(
            f"bundle={str(path)!r}: is a pickle/joblib file; spectranorm_neuro never unpickles (it can run "
            "arbitrary code). Fix: pass a bundle written by `spectranorm-neuro fit`.")
    if not zipfile.is_zipfile(path):
        raise bad_value("bundle", str(path), "is neither a bundle folder nor a .zip bundle",
                        "pass the folder or .zip written by `spectranorm-neuro fit`", FileFormatError)
    with tempfile.TemporaryDirectory(prefix="spectranorm-bundle-") as tmp:
        try:
            with zipfile.ZipFile(path) as archive:
                _safe_extract(archive, Path(tmp), path)
        except zipfile.BadZipFile as exc:
            raise bad_value("bundle", str(path), f"is a corrupt zip file ({exc})", "restore the bundle",
                            FileFormatError) from None
        return _load_folder(Path(tmp), path)


def space_label(space: dict | None) -> str:
    """BIDS-style label of template entities, e.g. ``"space-fsaverage_den-10k"`` (``"unspecified"``)."""
    space = dict(space or {})
    keys = [k for k in _SPACE_KEYS if space.get(k)] + sorted(k for k in space if k not in _SPACE_KEYS and space[k])
    return "_".join(f"{k}-{space[k]}" for k in keys) if keys else "unspecified"


def _describe(structures) -> str:
    return ", ".join(f"{s.name} ({s.n_total} nodes, {s.n_features} kept)" for s in structures)


def check_compatible(bundle: ModelBundle, structures=None, space: dict | None = None,
                     source: str = "data") -> None:
    """Refuse data on another mesh/mask/grid or template space than the bundle's basis.

    Parameters
    ----------
    bundle : ModelBundle
    structures : sequence of Structure, optional
        Layout of the data (e.g. ``cohort.structures``).
    space : dict, optional
        Template entities of the data (``{"space": ..., "den": ...}``), compared with the
        bundle's when both are known.
    source : str, optional
        Name of the data in messages.

    Raises
    ------
    IncompatibleModelError
    """
    mine = tuple(bundle.basis.structures)
    if structures is not None:
        theirs = tuple(structures)
        same = len(mine) == len(theirs) and all(
            a.name == b.name and a.n_total == b.n_total and np.array_equal(a.index, b.index)
            for a, b in zip(mine, theirs))
        if not same:
            raise bad_value(source, _describe(theirs),
                            f"is not on the bundle's mesh/mask ({_describe(mine)})",
                            "resample the maps onto the bundle's template (same mesh, hemispheres and mask) "
                            "or use a bundle fitted on your space", IncompatibleModelError)
    want = bundle.space
    if space and want:
        clash = {k: (v, want[k]) for k, v in space.items() if k in want and v and str(v) != want[k]}
        if clash:
            raise bad_value(source, space_label(space),
                            f"is in another template space than the bundle ({space_label(want)})",
                            f"resample the maps to {space_label(want)} or use a bundle fitted in "
                            f"{space_label(space)}", IncompatibleModelError)
