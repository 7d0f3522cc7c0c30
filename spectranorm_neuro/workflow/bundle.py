"""Model bundles: one folder (or one ``.zip``) that holds everything needed to apply a fitted model.

Layout (bundle format version 1)::

    manifest.json        bundle manifest: format "spectranorm_neuro.model_bundle", format_version,
                         package version, SHA-256 of every other file of the bundle
    model_card.json      the model card (see :mod:`spectranorm_neuro.workflow.card`)
    model/               the fitted model exactly as its ``save_model`` writes it
        manifest.json    (its own format name/version and checksums, see engine.persistence)
        spec.json, model.json, params.npz, basis.npz

The manifest's ``kind`` says which model the bundle holds: ``"spectral"`` (maps:
``SpectralNormativeModel``, the default of bundles that do not say) or ``"regional"`` (a table of
regional measures: ``RegionalNormativeModel``, whose ``model/`` holds no basis); its
``model_format``/``model_format_version`` are those of that model's saved format.

A ``.zip`` bundle is the same tree zipped (fixed timestamps, so the same model gives the same
bytes). Loading never unpickles: JSON (bounded in size and depth), and ``.npz`` read with
``allow_pickle=False``. It checks, in order: the bundle format name and version (a known integer;
a newer version is refused with :class:`~spectranorm_neuro.exceptions.FormatVersionError` naming
both versions), the SHA-256 of every file (:class:`~spectranorm_neuro.exceptions.ChecksumError`
naming the file), then the model's own manifest. From a ``.zip`` only the members the manifest
lists are extracted, within :data:`MAX_BUNDLE_BYTES` and :data:`MAX_BUNDLE_MEMBERS`.
:func:`check_compatible` refuses data on another mesh, mask or space
(:class:`~spectranorm_neuro.exceptions.IncompatibleModelError`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .._manifest import MAX_JSON_BYTES, check_format_version, read_json, read_manifest, verify_manifest, write_manifest
from .._util import atomic_path, clean_leftovers, json_default, replace_folder, sibling_path
from ..engine.persistence import FORMAT_NAME as MODEL_FORMAT_NAME
from ..engine.persistence import FORMAT_VERSION as MODEL_FORMAT_VERSION
from ..engine.regional import DIRECT_FORMAT_NAME, DIRECT_FORMAT_VERSION, RegionalNormativeModel
from ..engine.spectral import SpectralNormativeModel
from ..exceptions import FileFormatError, IncompatibleModelError, OutputExistsError, UnsafeFormatError, bad_value
from .card import format_card
from .output import made_parents, os_errors, relative_files

__all__ = ["BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "KINDS", "bundle_kind", "MAX_BUNDLE_BYTES", "MAX_BUNDLE_MEMBERS",
           "ModelBundle", "save_bundle", "load_bundle", "read_bundle_manifest", "check_compatible",
           "check_bundle_target", "space_label"]

BUNDLE_FORMAT = "spectranorm_neuro.model_bundle"
BUNDLE_FORMAT_VERSION = 1
#: Largest total size of the members extracted from a ``.zip`` bundle, in bytes.
MAX_BUNDLE_BYTES = 8 * 1024**3
#: Most members a ``.zip`` bundle may hold.
MAX_BUNDLE_MEMBERS = 1000
CARD_FILE = "model_card.json"
MODEL_DIR = "model"
#: Bundle kinds (manifest ``kind``): the model class and its saved format (name, newest version).
KINDS = {"spectral": (SpectralNormativeModel, MODEL_FORMAT_NAME, MODEL_FORMAT_VERSION),
         "regional": (RegionalNormativeModel, DIRECT_FORMAT_NAME, DIRECT_FORMAT_VERSION)}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SPACE_KEYS = ("space", "res", "den")  # BIDS entity order
_FIX = "pass the folder or .zip written by `spectranorm-neuro fit` (or `adapt`)"


@dataclass
class ModelBundle:
    """A fitted model with its model card, as shared between labs.

    Build one from a fitted model (``ModelBundle(model, card)``), or read one with
    :meth:`ModelBundle.load`; write it with :meth:`save`.

    Attributes
    ----------
    model : SpectralNormativeModel or RegionalNormativeModel
        The fitted model (a spectral model's ``eigenmode_basis`` is the basis).
    card : dict
        The model card (see :mod:`spectranorm_neuro.workflow.card`).
    manifest : dict
        The bundle manifest (format, versions, checksums); empty for a bundle not read from disk.
    path : pathlib.Path or None
        Where the bundle was read from or last saved to (folder or ``.zip``).
    """

    model: SpectralNormativeModel | RegionalNormativeModel
    card: dict
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelBundle:
        """Load and verify a bundle (folder or ``.zip``); see :func:`load_bundle`."""
        return load_bundle(path)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the bundle atomically (folder, or a file ending in ``.zip``); see :func:`save_bundle`."""
        self.path = save_bundle(self.model, path, self.card, overwrite=overwrite)
        return self.path

    def verify(self) -> dict:
        """Re-read the bundle from :attr:`path` and check its format and every checksum.

        Returns
        -------
        dict
            The manifest.
        """
        if self.path is None:
            raise bad_value("bundle", None, "was never saved, so there is nothing to verify",
                            "save it first with bundle.save(path)")
        self.manifest = load_bundle(self.path).manifest
        return self.manifest

    def describe(self) -> str:
        """Human-readable text of the model card (what ``spectranorm-neuro info`` prints)."""
        return format_card(self.card, self.manifest or None, None if self.path is None else str(self.path))

    @property
    def kind(self) -> str:
        """``"spectral"`` (a model of maps) or ``"regional"`` (a model of a table of regional measures)."""
        return bundle_kind(self.model)

    @property
    def basis(self):
        """The model's :class:`~spectranorm_neuro.basis.EigenmodeBasis` (None for a regional bundle)."""
        return getattr(self.model, "eigenmode_basis", None)

    @property
    def space(self) -> dict[str, str]:
        """BIDS template entities of the training maps (``{"space": ..., "den": ...}``; may be empty)."""
        return {k: str(v) for k, v in (self.card.get("basis", {}).get("space") or {}).items() if v}

    @property
    def measure(self) -> str | None:
        """Name of the modelled measure (BIDS suffix), e.g. ``"thickness"``."""
        return self.card.get("measure")


def bundle_kind(model) -> str:
    """The bundle kind of a fitted model (see :data:`KINDS`)."""
    for kind, (cls, _, _) in KINDS.items():
        if isinstance(model, cls):
            return kind
    raise bad_value("model", type(model).__name__, "is not a model a bundle can hold",
                    "pass a fitted SpectralNormativeModel or RegionalNormativeModel")


def _is_bundle_dir(path: Path) -> bool:
    try:
        return read_json(path / "manifest.json").get("format") == BUNDLE_FORMAT
    except (OSError, FileFormatError):
        return False


def _is_bundle_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("manifest.json")
            if info.file_size > MAX_JSON_BYTES:
                return False
            return b'"' + BUNDLE_FORMAT.encode() + b'"' in archive.read(info)
    except (OSError, KeyError, zipfile.BadZipFile, zlib.error):
        return False


def check_bundle_target(path: str | os.PathLike, overwrite: bool, argument: str = "--out") -> Path:
    """Check where a bundle will be written, before any computation.

    A new path or an empty folder is fine; an existing bundle (folder or ``.zip``) is replaced only
    with ``overwrite``; anything else is never replaced.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not path.exists():
        return path
    if path.is_dir() and not any(path.iterdir()):
        return path
    ours = _is_bundle_dir(path) if path.is_dir() else path.suffix.lower() == ".zip" and _is_bundle_zip(path)
    if not ours:
        what = "a non-empty folder" if path.is_dir() else "an existing file"
        raise bad_value(argument, str(path), f"is {what} that is not a model bundle, so it is not replaced even "
                        "with --overwrite", "choose another bundle path", OutputExistsError)
    if not overwrite:
        raise bad_value(argument, str(path), "already exists", "choose another bundle path or pass --overwrite",
                        OutputExistsError)
    return path


def _write_tree(model, card: dict, root: Path) -> None:
    import json

    kind = bundle_kind(model)
    _, name, version = KINDS[kind]
    model.save_model(root / MODEL_DIR)
    (root / CARD_FILE).write_text(json.dumps(card, indent=2, default=json_default) + "\n")
    extra = {"model_format": name, "model_format_version": version}
    if kind != "spectral":  # spectral bundles stay byte-identical to those of earlier releases
        extra["kind"] = kind
    write_manifest(root, relative_files(root), BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, extra=extra)


def _zip_tree(root: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in ["manifest.json", *[f for f in relative_files(root) if f != "manifest.json"]]:
            info = zipfile.ZipInfo(rel, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (root / rel).read_bytes())


def save_bundle(model, path: str | os.PathLike, card: dict, overwrite: bool = False,
                argument: str = "--out") -> Path:
    """Write a model bundle atomically.

    Parameters
    ----------
    model : SpectralNormativeModel or RegionalNormativeModel
        A fitted model.
    path : path-like
        Bundle folder, or a file ending in ``.zip``.
    card : dict
        JSON-serialisable model card.
    overwrite : bool, optional
        Replace an existing bundle (never anything that is not a bundle).
    argument : str, optional
        Option name used in messages.

    Returns
    -------
    pathlib.Path
    """
    path = check_bundle_target(path, overwrite, argument)
    with os_errors(path, argument), made_parents(path):
        clean_leftovers(path)
        tree = sibling_path(path, "staging")
        try:
            tree.mkdir()
            _write_tree(model, card, tree)
            if path.suffix.lower() == ".zip" and not path.is_dir():
                with atomic_path(path, overwrite=True) as part:
                    _zip_tree(tree, part)
            else:
                replace_folder(tree, path, sibling_path(path, "previous"))
        finally:
            shutil.rmtree(tree, ignore_errors=True)
    return path


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name and ":" not in name


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int, source: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(info) as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > min(info.file_size, limit):
                raise bad_value("bundle", str(source), f"member {info.filename!r} expands beyond its recorded size "
                                "or the size limit", "use a bundle written by spectranorm-neuro", FileFormatError)
            dst.write(chunk)
    return written


def _extract(path: Path, dest: Path) -> None:
    """Extract the manifest and the members it lists, within the size and count bounds."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_BUNDLE_MEMBERS:
            raise bad_value("bundle", str(path), f"holds {len(infos)} members, more than {MAX_BUNDLE_MEMBERS}",
                            "use a bundle written by spectranorm-neuro", FileFormatError)
        members = {}
        for info in infos:
            mode = (info.external_attr >> 16) & 0o170000
            if not _safe_name(info.filename) or mode == 0o120000:
                raise bad_value("bundle", str(path), f"holds an unsafe member path {info.filename!r}",
                                "use a bundle written by spectranorm-neuro", FileFormatError)
            members[info.filename] = info
        if "manifest.json" not in members:
            raise bad_value("bundle", str(path), "holds no manifest.json, so it is not a model bundle", _FIX,
                            FileFormatError)
        _copy_member(archive, members["manifest.json"], dest / "manifest.json", MAX_JSON_BYTES, path)
        listed = read_json(dest / "manifest.json", f"{path}:manifest.json").get("files")
        if not isinstance(listed, dict):
            return  # read_bundle_manifest explains
        budget = MAX_BUNDLE_BYTES
        for name in listed:
            if not isinstance(name, str) or not _safe_name(name) or name == "manifest.json":
                raise bad_value("bundle", str(path), f"lists an unsafe file name {name!r} in its manifest",
                                "use a bundle written by spectranorm-neuro", FileFormatError)
            if name not in members:
                continue  # reported as missing by verify_manifest
            budget -= _copy_member(archive, members[name], dest / name, budget, path)


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
        raise bad_value("bundle", shown, "holds no manifest.json, so it is not a model bundle", _FIX, FileFormatError)
    fmt = read_json(manifest_path, f"{shown} (manifest.json)", "rebuild the bundle with `spectranorm-neuro fit`"
                    ).get("format")
    if fmt in (MODEL_FORMAT_NAME, DIRECT_FORMAT_NAME):
        raise bad_value("bundle", shown, "is a saved model folder (save_model), not a bundle",
                        "pass the bundle folder that contains it, or build a bundle with `spectranorm-neuro fit`",
                        FileFormatError)
    if fmt != BUNDLE_FORMAT:
        raise bad_value("bundle", shown, f"has a manifest of format {fmt!r}, not a model bundle", _FIX,
                        FileFormatError)
    manifest = read_manifest(folder, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, "model bundle", _FIX)
    kind = manifest.get("kind", "spectral")
    if kind not in KINDS:
        raise bad_value("bundle", shown, f"holds a model of kind {kind!r}, which this version does not know "
                        f"(known: {list(KINDS)})", "upgrade spectranorm_neuro", FileFormatError)
    if "model_format_version" in manifest:
        check_format_version(manifest["model_format_version"], KINDS[kind][2], shown,
                             manifest.get("package_version"))
    for name in manifest["files"]:
        if not _safe_name(name):
            raise bad_value("bundle", shown, f"lists an unsafe file name {name!r} in its manifest",
                            "use a bundle written by spectranorm-neuro", FileFormatError)
    verify_manifest(folder, manifest)
    missing = [f for f in (CARD_FILE, f"{MODEL_DIR}/manifest.json") if f not in manifest["files"]]
    if missing:
        raise bad_value("bundle", shown, f"does not list {missing} in its manifest",
                        "rebuild the bundle with `spectranorm-neuro fit`", FileFormatError)
    return manifest


def _load_folder(folder: Path, source: Path) -> ModelBundle:
    manifest = read_bundle_manifest(folder, source)
    card = read_json(folder / CARD_FILE, f"{source} ({CARD_FILE})", "rebuild the bundle")
    try:
        model = KINDS[manifest.get("kind", "spectral")][0].load_model(folder / MODEL_DIR)
    except FileFormatError:
        raise
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise bad_value("bundle", str(source), f"holds a model that cannot be read ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:120]})", "rebuild the bundle with `spectranorm-neuro fit`",
                        FileFormatError) from None
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
        Not a bundle (or unreadable, corrupt, over the size bounds).
    UnsafeFormatError
        A pickle/joblib file (never unpickled).
    ChecksumError
        A file differs from its recorded SHA-256.
    FormatVersionError
        Written by a newer bundle (or model) format, or an unknown version.
    """
    path = Path(path)
    if not path.exists():
        raise bad_value("bundle", str(path), "does not exist", _FIX, FileFormatError)
    if path.is_dir():
        return _load_folder(path, path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:1] == b"\x80":
        raise UnsafeFormatError(
            f"bundle={str(path)!r}: is a pickle/joblib file; spectranorm_neuro never unpickles (it can run "
            "arbitrary code). Fix: pass a bundle written by `spectranorm-neuro fit`.")
    if not zipfile.is_zipfile(path):
        raise bad_value("bundle", str(path), "is neither a bundle folder nor a .zip bundle", _FIX, FileFormatError)
    with tempfile.TemporaryDirectory(prefix="spectranorm-bundle-") as tmp:
        try:
            _extract(path, Path(tmp))
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise bad_value("bundle", str(path), f"is a corrupt zip file ({' '.join(str(exc).split())})",
                            "restore the bundle from its source", FileFormatError) from None
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
    if bundle.basis is None:
        raise bad_value("bundle", str(bundle.path or "bundle"), "holds a regional model (a table of regional "
                        "measures), not a model of maps", "pass a table of regional measures (CSV/TSV or a FreeSurfer "
                        "stats table) as the cohort, or use a bundle fitted on maps", IncompatibleModelError)
    mine = tuple(bundle.basis.structures)
    if structures is not None:
        theirs = tuple(structures)
        if not (len(mine) == len(theirs) and all(a.matches(b) for a, b in zip(mine, theirs))):
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
