"""Migration of files saved by the reference package (SpectraNorm 0.1.4) and prediction from them.

* :func:`read_upstream` reads a reference basis file (``EigenmodeBasis.save``) or model directory
  (``DirectNormativeModel.save_model``: ``saved_model/model_dict.joblib``;
  ``SpectralNormativeModel.save_model``: ``spectral_normative_model/`` with
  ``spectral_model_dict.joblib`` and ``eigenmode_basis.joblib``) with the restricted unpickler of
  :mod:`._unpickle` into plain data (nothing of the file is executed).
* :func:`convert_upstream` writes that plain data in this package's own safe format: a basis as
  :meth:`EigenmodeBasis.save` writes it; a model as a directory of ``upstream_model.json`` (the
  specification, defaults and scalars), ``arrays.npz`` (every array) and ``manifest.json``
  (SHA-256 of both); :func:`load_converted` reads it back, never unpickling.
* :class:`UpstreamParameters` predicts from the reference's parameters exactly as the reference
  does: posterior means plugged in, ``mu = intercept + sum of effects`` on the standardized scale,
  ``log sd`` likewise, correlations ``tanh`` of a linear predictor; B-spline bases with the
  reference's knots and bounds (cubic, intercept included).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.interpolate import BSpline

from .._manifest import read_manifest, verify_manifest
from .._util import MappedNpz, json_default, write_npz
from ..basis import EigenmodeBasis as NativeBasis
from ..exceptions import FileFormatError, UnseenCategoryError, bad_value
from ._store import save_folder
from ._unpickle import read_upstream_joblib, to_plain

__all__ = ["CONVERTED_FORMAT", "UpstreamParameters", "convert_upstream", "is_upstream_path", "load_converted",
           "read_upstream", "upstream_basis_arrays"]

CONVERTED_FORMAT = "spectranorm_neuro.upstream_model"
CONVERTED_VERSION = 1
_DIRECT = ("saved_model", "model_dict.joblib")
_SPECTRAL = ("spectral_normative_model", "spectral_model_dict.joblib")


# ---------------------------------------------------------------------------------------------- reading
def _is_pickle(path: Path) -> bool:
    head = path.read_bytes()[:6] if path.is_file() else b""
    return head[:1] == b"\x80" or head[:2] in (b"\x1f\x8b", b"BZ", b"\x5d\x00") or head[:1] == b"\x78" \
        or head.startswith(b"\xfd7zXZ")


def is_upstream_path(path) -> bool:
    """Whether ``path`` is a reference joblib file or a reference model directory."""
    path = Path(path)
    if path.is_dir():
        return any((path / a / b).is_file() or (path.name == a and (path / b).is_file())
                   for a, b in (_DIRECT, _SPECTRAL))
    return _is_pickle(path)


def upstream_basis_arrays(path) -> dict[str, Any]:
    """Eigenvalues (n_modes,), eigenvectors (n_features, n_modes) and mass matrix of a reference basis file."""
    data = read_upstream_joblib(path)
    if not isinstance(data, dict) or "eigenvalues" not in data or "eigenvectors" not in data:
        raise bad_value("path", str(path), "is not a SpectraNorm eigenmode basis file",
                        "pass a file written by EigenmodeBasis.save()", FileFormatError)
    return {"eigenvalues": np.asarray(data["eigenvalues"], dtype=np.float64),
            "eigenvectors": np.asarray(data["eigenvectors"], dtype=np.float64),
            "mass_matrix": data.get("mass_matrix")}


def _model_file(path: Path) -> tuple[str, Path]:
    for kind, (sub, name) in (("direct", _DIRECT), ("spectral", _SPECTRAL)):
        for base in (path / sub, path):
            if (base / name).is_file() and (base.name == sub):
                return kind, base
    raise bad_value("path", str(path), "holds no SpectraNorm model (saved_model/model_dict.joblib or "
                    "spectral_normative_model/spectral_model_dict.joblib)",
                    "pass the directory given to the reference's save_model()", FileFormatError)


def read_upstream(path) -> dict[str, Any]:
    """Read a reference basis file or model directory into plain data.

    Returns
    -------
    dict
        ``{"kind": "basis", "eigenvalues", "eigenvectors", "mass_matrix"}`` or
        ``{"kind": "direct" | "spectral", "spec": dict, "defaults": dict, "model_params": dict}``
        (spectral models add ``"basis"``); records of the reference's data classes are dicts with
        a ``"__class__"`` key.
    """
    path = Path(path)
    if path.is_file():
        return {"kind": "basis", **upstream_basis_arrays(path)}
    kind, base = _model_file(path)
    data = to_plain(read_upstream_joblib(base / (_DIRECT if kind == "direct" else _SPECTRAL)[1]))
    if not isinstance(data, dict) or "spec" not in data:
        raise bad_value("path", str(path), "holds a model file without a specification",
                        "pass a directory written by the reference's save_model()", FileFormatError)
    out = {"kind": kind, "spec": data["spec"], "defaults": data.get("defaults", {}),
           "model_params": data.get("model_params")}
    if kind == "spectral":
        basis_file = base / "eigenmode_basis.joblib"
        if not basis_file.is_file():
            raise bad_value("path", str(path), "lacks eigenmode_basis.joblib next to the model",
                            "restore the complete directory written by save_model()", FileFormatError)
        out["basis"] = upstream_basis_arrays(basis_file)
    return out


# ------------------------------------------------------------------------------------- own safe format
def _split_arrays(obj: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """Replace arrays in a plain tree by ``{"__array__": key}`` references (arrays kept in ``arrays``)."""
    if isinstance(obj, np.ndarray) or (hasattr(obj, "tocsr") and hasattr(obj, "shape")):
        if hasattr(obj, "tocsr"):
            obj = obj.toarray()
        obj = np.asarray(obj)
        if obj.dtype.hasobject:  # e.g. categories: strings (or numbers) in an object array
            values = obj.ravel().tolist()
            obj = np.array(values if not all(isinstance(v, str) for v in values) else [str(v) for v in values]
                           ).reshape(obj.shape)
            if obj.dtype.hasobject:
                raise bad_value(where, "object array", "holds values that are neither strings nor numbers",
                                "report this file to the developers", FileFormatError)
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _split_arrays(v, arrays, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return {"__tuple__": [_split_arrays(v, arrays, where) for v in obj]} if isinstance(obj, tuple) \
            else [_split_arrays(v, arrays, where) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise bad_value(where, type(obj).__name__, "is not plain data", "report this file to the developers",
                    FileFormatError)


def _join_arrays(obj: Any, arrays) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return np.asarray(arrays[obj["__array__"]])
        if set(obj) == {"__tuple__"}:
            return tuple(_join_arrays(v, arrays) for v in obj["__tuple__"])
        return {k: _join_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays) for v in obj]
    return obj


def save_converted(data: dict, directory, overwrite: bool = False) -> Path:
    """Write plain model data (from :func:`read_upstream`) as ``upstream_model.json`` + ``arrays.npz``."""
    arrays: dict[str, np.ndarray] = {}
    tree = _split_arrays(data, arrays, "model")

    def write_npz_file(path):
        with open(path, "wb") as fh:
            write_npz(fh, arrays)

    return save_folder(directory, overwrite, {
        "upstream_model.json": lambda path: path.write_text(json.dumps(tree, indent=1, default=json_default)),
        "arrays.npz": write_npz_file}, CONVERTED_FORMAT, CONVERTED_VERSION,
        {"converted_from": "spectranorm 0.1.4", "kind": data["kind"]})


def load_converted(directory, mmap: bool = False) -> dict:
    """Read a converted model written by :func:`save_converted` (checksums verified; no pickle).

    ``mmap=True`` memory-maps its arrays read-only from ``arrays.npz`` instead of reading them.
    """
    directory = Path(directory)
    manifest = read_manifest(directory, CONVERTED_FORMAT, CONVERTED_VERSION)
    verify_manifest(directory, manifest)
    tree = json.loads((directory / "upstream_model.json").read_text())
    if mmap:
        npz = MappedNpz(directory / "arrays.npz")
        arrays = {k: npz[k] for k in npz.files}
    else:
        with np.load(directory / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    return _join_arrays(tree, arrays)


def is_converted(directory) -> bool:
    """Whether ``directory`` holds a converted reference model."""
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == CONVERTED_FORMAT
    except json.JSONDecodeError:
        return False


def convert_upstream(path, out, overwrite: bool = False) -> Path:
    """Convert a reference basis file or model directory to this package's safe format.

    Parameters
    ----------
    path : str or os.PathLike
        ``eigenmode_basis.joblib``-style file, or the directory given to the reference's
        ``save_model`` (or its ``saved_model`` / ``spectral_normative_model`` subdirectory).
    out : str or os.PathLike
        Destination: a basis file (``.npz``) for a basis, a new directory for a model.
    overwrite : bool, optional
        Replace an existing ``out``.

    Returns
    -------
    pathlib.Path
        ``out``. Load it with ``snm.utils.gsp.EigenmodeBasis.load`` or the model's ``load_model``.
    """
    data = read_upstream(path)
    if data["kind"] == "basis":
        basis = NativeBasis(data["eigenvalues"], data["eigenvectors"], data["mass_matrix"],
                            provenance={"converted_from": "spectranorm 0.1.4", "source": Path(path).name})
        return basis.save(out, overwrite=overwrite)
    return save_converted(data, out, overwrite=overwrite)


# ------------------------------------------------------------------------------------------ prediction
def _bspline_columns(values: np.ndarray, spline: dict) -> np.ndarray:
    """B-spline basis (n, df) with the reference's knots and bounds, intercept column included."""
    degree, df = int(spline.get("degree", 3)), int(spline.get("df", 5))
    lo, hi = float(spline["lower_bound"]), float(spline["upper_bound"])
    knots = spline.get("knots")
    if knots is None:
        knots = np.linspace(lo, hi, df - degree + 1)[1:-1]
    t = np.concatenate([[lo] * (degree + 1), np.asarray(knots, dtype=float), [hi] * (degree + 1)])
    n_basis = len(t) - degree - 1
    return BSpline(t, np.eye(n_basis), degree, extrapolate=True)(np.asarray(values, dtype=float))


def _category_index(cov: dict, values) -> np.ndarray:
    cats = [str(c) for c in np.asarray(cov["categories"]).tolist()]
    lookup = {c: i for i, c in enumerate(cats)}
    vals = [str(v) for v in np.asarray(values).tolist()]
    unseen = sorted(set(vals) - set(lookup))
    if unseen:
        raise bad_value(cov["name"], unseen, f"holds level(s) the reference model never saw (known: {cats})",
                        f"predict without it (predict_without=[{cov['name']!r}]) or adapt the model",
                        UnseenCategoryError)
    return np.array([lookup[v] for v in vals], dtype=int)


def linear_predictor(spec: dict, means: dict, covariates: pd.DataFrame, influencing, without=(),
                     target: str = "mean") -> np.ndarray:
    """Linear predictor (n,) of one reference model part on its standardized scale.

    ``target`` is ``"mean"``, ``"variance"`` (log sd) or ``"correlation"`` (Fisher z).
    """
    prefix = "variance_" if target == "variance" else ""
    intercept = {"mean": "global_intercept", "variance": "global_variance_baseline",
                 "correlation": "global_intercept_z"}[target]
    eta = np.full(len(covariates), float(np.asarray(means[intercept]).reshape(-1)[0]))
    for cov in spec["covariates"]:
        name = cov["name"]
        if name not in influencing or name in without:
            continue
        if name not in covariates.columns:
            raise bad_value("test_covariates", "table", f"lacks the column {name!r}",
                            f"add it, or pass predict_without=[{name!r}]")
        values = covariates[name].to_numpy()
        if cov["cov_type"] == "numerical" and cov.get("effect") == "linear":
            m, s = cov["moments"]
            beta = float(np.asarray(means[f"{prefix}linear_beta_{name}"]).reshape(-1)[0])
            eta += (values.astype(float) - m) / s * beta
        elif cov["cov_type"] == "numerical":
            eta += _bspline_columns(values, cov["spline_spec"]) @ np.asarray(means[f"{prefix}spline_betas_{name}"])
        else:
            idx = _category_index(cov, values)
            if cov.get("hierarchical"):
                effect = np.asarray(means[f"{prefix}intercept_offset_{name}"]) * np.asarray(
                    means[f"{prefix}sigma_intercept_{name}"])
            else:
                effect = np.asarray(means[f"{prefix}intercept_{name}"])
            eta += effect.reshape(-1)[idx]
    return eta


class UpstreamParameters:
    """Predictions from a reference model's plain data (see :func:`read_upstream`).

    Parameters
    ----------
    data : dict
        ``{"kind", "spec", "defaults", "model_params"[, "basis"]}``.
    """

    def __init__(self, data: dict):
        if data.get("model_params") is None:
            raise bad_value("model", "reference model", "was saved before fitting (no model_params)",
                            "fit it with the reference, save it, then convert it")
        self.data = data
        self.spec = data["spec"]
        self.model_params = data["model_params"]

    @property
    def covariate_names(self) -> list[str]:
        """Covariates of the specification."""
        return [c["name"] for c in self.spec["covariates"]]

    def direct_moments(self, params: dict, covariates: pd.DataFrame, without=()) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd (n,) of one direct model (posterior means plugged in, as the reference)."""
        means = params["posterior_means"]
        eta_m = linear_predictor(self.spec, means, covariates, self.spec["influencing_mean"], without, "mean")
        eta_v = linear_predictor(self.spec, means, covariates, self.spec["influencing_variance"], without,
                                 "variance")
        m, s = float(params["mean_VOI"]), float(params["std_VOI"])
        return eta_m * s + m, np.exp(eta_v) * s

    def spectral_moments(self, covariates: pd.DataFrame, n_modes: int | None = None, without=()
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mode means and sds (n, k), pair correlations (n, n_pairs) and pairs (n_pairs, 2)."""
        mp = self.model_params
        k = int(mp["n_modes"]) if n_modes is None else int(n_modes)
        moments = [self.direct_moments(p, covariates, without) for p in mp["direct_model_params"][:k]]
        mu = np.column_stack([m for m, _ in moments])
        sd = np.column_stack([s for _, s in moments])
        pairs = np.asarray(mp["sparse_covariance_structure"], dtype=int).reshape(-1, 2)
        keep = np.all(pairs < k, axis=1)
        rho = np.empty((len(covariates), int(keep.sum())))
        for col, p in enumerate(np.flatnonzero(keep)):
            params = mp["covariance_model_params"][p]
            infl = self.spec.get("influencing_covariance", self.spec["influencing_mean"])
            rho[:, col] = np.tanh(linear_predictor(self.spec, params["posterior_means"], covariates,
                                                   params.get("influencing_covariance", infl), without,
                                                   "correlation"))
        return mu, sd, rho, pairs[keep]
