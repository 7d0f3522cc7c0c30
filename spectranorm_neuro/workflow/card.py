"""The model card: what a bundle's model was trained on, with what basis and settings, and how well it does.

Keys of ``model_card.json`` (card version 1)
--------------------------------------------
``card_version``, ``package``, ``package_version``, ``measure``
    The card format, the package that wrote it, the modelled measure (BIDS suffix).
``training``
    ``n_subjects``; ``sites`` (``{batch covariate: {level: N}}``); ``covariates`` (per covariate:
    type, effect, and for numerical ones the training ``min``/``max``/``mean``/``sd``, for
    categorical ones the ``categories`` and their ``counts``); ``source`` (where the cohort came
    from).
``basis``
    ``n_modes`` of the basis, ``n_features``, ``structures`` (name, kind, vertices/voxels in total
    and kept), ``space`` (BIDS template entities such as ``{"space": "fsaverage", "den": "10k"}``),
    ``laplacian`` and the basis' full ``provenance``.
``fitting``
    Model type, modes and pairs modelled, inference, covariance structure, where each covariate
    acts, spline settings, ``seed``, ``holdout`` fraction, fraction of converged fits.
``metrics``
    ``held_out`` calibration and accuracy over held-out training-site subjects (``null`` when no
    subject was held out).
``adaptations``
    One entry per ``adapt`` run: the new levels and the number of subjects they were learned from
    (regional bundles: also ``report``, the controls and effective number of controls per level).

A regional bundle's card (:func:`build_regional_card`) has ``kind: "regional"``, ``basis: null``
and ``regions``: ``n_regions``, ``names``, ``source`` (the table), and ``likelihood``, per region
the likelihood the fit uses (``Normal`` where the likelihood-ratio test of the SHASHb fit does not
reject it) with the test's ``p_value`` and the fitted ``epsilon`` (skew) and ``delta`` (tails).
Its ``fitting`` holds ``likelihood`` and ``n_regions`` instead of modes and pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._version import __version__

__all__ = ["CARD_VERSION", "build_model_card", "build_regional_card", "held_out_metrics", "record_adaptation",
           "format_card", "basis_space", "portable_source"]

CARD_VERSION = 1


def _structures(basis) -> list[dict]:
    return [{"name": s.name, "kind": s.kind, "n_total": int(s.n_total), "n_features": int(s.n_features),
             **({"shape": [int(x) for x in s.shape]} if s.shape is not None else {})}
            for s in basis.structures]


def basis_space(basis) -> dict[str, str]:
    """Template entities a basis records in its provenance (``space``/``den``/``res``); fsaverage5 is known."""
    prov = dict(basis.provenance or {})
    out = {k: str(prov[k]) for k in ("space", "den", "res") if prov.get(k)}
    if out:
        return out
    parts = prov.get("parts") if prov.get("adapter") == "merged" else [prov]
    if parts and all(isinstance(p, Mapping) and p.get("adapter") == "fsaverage5" for p in parts):
        return {"space": "fsaverage", "den": "10k"}
    return {}


def _covariates(spec, covariates: pd.DataFrame) -> dict:
    out = {}
    for cov in spec.covariates:
        if cov.cov_type == "numerical":
            out[cov.name] = {"type": "numerical", "effect": cov.effect, "min": cov.minimum, "max": cov.maximum,
                             "mean": cov.mean, "sd": cov.std}
        else:
            counts = covariates[cov.name].astype(str).value_counts()
            out[cov.name] = {"type": "categorical", "batch": cov.name in spec.batch_covariates,
                             "categories": list(cov.categories or []),
                             "counts": {str(k): int(counts.get(k, 0)) for k in cov.categories or []}}
    return out


def portable_source(source: str | None) -> str | None:
    """How a card names where a cohort came from: never a local absolute path (the folder's name instead).

    ``/home/me/study/derivatives`` -> ``derivatives``; ``.../participants.tsv`` -> the folder holding it;
    relative paths as given.
    """
    if not source:
        return source
    path = Path(str(source))
    if path.name.lower() in ("participants.tsv", "participants.csv") and path.parent.name:
        path = path.parent
    return path.name if path.is_absolute() else path.as_posix()


def _portable_provenance(value: Any) -> Any:
    """The basis provenance with every file path reduced by :func:`portable_source`."""
    if isinstance(value, Mapping):
        return {k: (portable_source(v) if k in ("source", "mask", "cortex_mask", "path") and isinstance(v, str)
                    else _portable_provenance(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable_provenance(v) for v in value]
    return value


def build_model_card(model, covariates: pd.DataFrame, *, measure: str | None, space: Mapping | None,
                     seed: int | None, holdout: float = 0.0, metrics: Mapping | None = None,
                     source: str | None = None) -> dict:
    """Describe a freshly fitted model.

    Parameters
    ----------
    model : SpectralNormativeModel
        The fitted model.
    covariates : pandas.DataFrame, shape (n_train, ...)
        The training covariates (exactly the rows the model was fitted on).
    measure : str or None
        The modelled measure (BIDS suffix).
    space : mapping or None
        Template entities of the training maps.
    seed : int or None
        The ``--seed`` of the run.
    holdout : float, optional
        Fraction of subjects held out of training for ``metrics``.
    metrics : mapping, optional
        From :func:`held_out_metrics`.
    source : str, optional
        Where the training cohort came from (recorded by :func:`portable_source`: no local path).

    Returns
    -------
    dict
        JSON-serialisable card (see the module docstring).
    """
    spec = model.spec
    basis = model.eigenmode_basis
    params = dict(model.model_params)
    prov = dict(basis.provenance or {})
    card = _card(spec, covariates, measure, source, seed, holdout, metrics, params)
    card["basis"] = {
        "n_modes": int(basis.n_modes),
        "n_features": int(basis.n_features),
        "structures": _structures(basis),
        "space": {k: str(space[k]) for k in ("space", "res", "den") if (space or {}).get(k)},
        "laplacian": prov.get("laplacian"),
        "provenance": _portable_provenance(prov),
    }
    card["fitting"] = {"model_type": spec.model_type, "n_modes": int(params.get("n_modes", basis.n_modes)),
                       "n_pairs": int(params.get("n_pairs", 0)), "inference": params.get("inference"),
                       "covariance_structure": params.get("covariance_structure"), **card["fitting"]}
    return card


def _card(spec, covariates: pd.DataFrame, measure, source, seed, holdout, metrics, params: dict) -> dict:
    """What every card holds (the model-specific keys are added by the builders)."""
    sites = {b: {str(k): int(v) for k, v in covariates[b].astype(str).value_counts().sort_index().items()}
             for b in spec.batch_covariates}
    return {
        "card_version": CARD_VERSION,
        "package": "spectranorm_neuro",
        "package_version": __version__,
        "measure": measure,
        "training": {
            "n_subjects": len(covariates),
            "sites": sites,
            "covariates": _covariates(spec, covariates),
            "source": portable_source(source),
        },
        "basis": None,
        "fitting": {
            "numerical_covariates": spec.numerical_covariates,
            "nonlinear_covariates": [c.name for c in spec.covariates if c.effect in ("spline", "pspline")],
            "categorical_covariates": spec.categorical_covariates,
            "batch_covariates": list(spec.batch_covariates),
            "influencing_mean": list(spec.influencing_mean),
            "influencing_variance": list(spec.influencing_variance),
            "spline_kwargs": dict(spec.spline_kwargs),
            "seed": seed,
            "holdout": float(holdout),
            "converged_fraction": params.get("converged_fraction"),
        },
        "metrics": {"held_out": dict(metrics) if metrics else None},
        "adaptations": [],
    }


def build_regional_card(model, covariates: pd.DataFrame, *, measure: str | None, seed: int | None,
                        holdout: float = 0.0, metrics: Mapping | None = None, source: str | None = None) -> dict:
    """Describe a freshly fitted regional model (see the module notes).

    Parameters
    ----------
    model : RegionalNormativeModel
        The fitted model.
    covariates : pandas.DataFrame, shape (n_train, ...)
        The training covariates (exactly the rows the model was fitted on).
    measure, seed, holdout, metrics, source :
        As in :func:`build_model_card`.

    Returns
    -------
    dict
    """
    spec = model.spec
    params = dict(model.model_params)
    card = _card(spec, covariates, measure, source, seed, holdout, metrics, params)
    card["kind"] = "regional"
    test = model.likelihood_comparison()
    card["regions"] = {
        "n_regions": len(model.regions), "names": list(model.regions), "source": portable_source(source),
        "likelihood": {str(r): {"used": str(row["likelihood_used"]), "p_value": float(row["p_value"]),
                                "epsilon": float(row["epsilon"]), "delta": float(row["delta"])}
                       for r, row in test.iterrows()},
    }
    card["fitting"] = {"model_type": spec.model_type, "likelihood": spec.likelihood,
                       "n_regions": len(model.regions), "inference": params.get("inference"), **card["fitting"]}
    return card


def held_out_metrics(z: np.ndarray, evaluations: Mapping[str, np.ndarray], n_subjects: int) -> dict:
    """Summarise the scores of held-out subjects.

    Parameters
    ----------
    z : numpy.ndarray, shape (n_subjects, n_queries)
        Their z-scores.
    evaluations : mapping of str to numpy.ndarray, each (n_queries,)
        Per-query metrics from ``NormativePredictions.evaluate``.
    n_subjects : int

    Returns
    -------
    dict
        ``n_subjects``; ``z_mean``, ``z_sd``, ``fraction_abs_z_gt_1.96`` over every value; the
        median over queries of ``MSLL``, ``SMSE``, ``Explained Variance`` and ``R-squared``.
    """
    out = {"n_subjects": int(n_subjects), "z_mean": float(np.mean(z)), "z_sd": float(np.std(z)),
           "fraction_abs_z_gt_1.96": float(np.mean(np.abs(z) > 1.96))}
    for key in ("MSLL", "SMSE", "Explained Variance", "R-squared"):
        if key in evaluations:
            out[f"median_{key.lower().replace(' ', '_').replace('-', '_')}"] = float(
                np.median(np.asarray(evaluations[key])))
    return out


def record_adaptation(card: dict, added: Mapping[str, list], n_subjects: int,
                      source: str | None = None, report: Mapping | None = None) -> dict:
    """A copy of ``card`` updated after ``adapt_fit``: new levels, their N, the adapted spec.

    Parameters
    ----------
    card : dict
    added : mapping of str to list of str
        New levels per batch covariate.
    n_subjects : int
        Subjects the new levels were learned from.
    source : str, optional
    report : mapping, optional
        The engine's adaptation report (controls and effective controls per new level).

    Returns
    -------
    dict
    """
    import copy

    new = copy.deepcopy(card)
    new["package_version"] = __version__
    new.setdefault("adaptations", []).append(
        {"levels": {k: list(v) for k, v in added.items()}, "n_subjects": int(n_subjects),
         "source": portable_source(source), **({"report": dict(report)} if report else {})})
    return new


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) if value else "none"
    if value is None:
        return "-"
    return str(value)


def _region_lines(regions: Mapping) -> list[str]:
    """The regions of a regional card and the likelihood each uses."""
    lik = regions.get("likelihood") or {}
    skewed = [r for r, v in lik.items() if v.get("used") != "Normal"]
    names = regions.get("names") or []
    lines = [f"Regions: {regions.get('n_regions')} ({', '.join(names[:6])}{' ...' if len(names) > 6 else ''})"]
    if lik:
        lines.append(f"  likelihood: Normal in {len(lik) - len(skewed)}, SHASHb (skewed or heavy-tailed, the "
                     f"Normal rejected) in {len(skewed)}" + (f": {', '.join(skewed[:8])}" if skewed else "")
                     + (" ..." if len(skewed) > 8 else ""))
    return lines


def format_card(card: Mapping, manifest: Mapping | None = None, path: str | None = None) -> str:
    """Human-readable text of a model card (what ``spectranorm-neuro info`` prints)."""
    lines = []
    if path:
        lines.append(f"Model bundle: {path}")
    if manifest:
        lines.append(f"  bundle format {manifest.get('format_version')}, written by spectranorm_neuro "
                     f"{manifest.get('package_version')}; {len(manifest.get('files', {}))} files, "
                     "SHA-256 verified")
    tr, ba, fi = card.get("training", {}), card.get("basis") or {}, card.get("fitting", {})
    lines.append(f"Measure: {card.get('measure') or '-'}")
    lines.append(f"Training: {tr.get('n_subjects')} subjects" + (f" from {tr['source']}" if tr.get("source") else ""))
    for name, levels in (tr.get("sites") or {}).items():
        lines.append(f"  {name}: " + ", ".join(f"{k} (N={v})" for k, v in levels.items()))
    lines.append("Covariates:")
    for name, c in (tr.get("covariates") or {}).items():
        if c.get("type") == "numerical":
            lines.append(f"  {name}: numerical ({c.get('effect')}), range {_fmt(c.get('min'))} .. "
                         f"{_fmt(c.get('max'))}, mean {_fmt(c.get('mean'))}")
        else:
            kind = "batch" if c.get("batch") else "categorical"
            lines.append(f"  {name}: {kind}, categories " + ", ".join(
                f"{k} (N={v})" for k, v in (c.get("counts") or {}).items()))
    if card.get("kind") == "regional":
        lines += _region_lines(card.get("regions") or {})
        lines.append(f"Fitting: {fi.get('model_type')}, {fi.get('n_regions')} regions, likelihood "
                     f"{fi.get('likelihood')}, inference {fi.get('inference')}, seed {fi.get('seed')}")
    else:
        space = ba.get("space") or {}
        lines.append(f"Basis: {ba.get('n_modes')} modes ({ba.get('laplacian') or '-'}), {ba.get('n_features')} "
                     f"features, {'_'.join(f'{k}-{v}' for k, v in space.items()) or 'space unspecified'}")
        for s in ba.get("structures", []):
            lines.append(f"  {s['name']} ({s['kind']}): {s['n_features']} of {s['n_total']} nodes")
        lines.append(f"Fitting: {fi.get('model_type')}, {fi.get('n_modes')} modes, {fi.get('n_pairs')} mode pairs, "
                     f"inference {fi.get('inference')}, seed {fi.get('seed')}")
    lines.append(f"  mean ~ {_fmt(fi.get('influencing_mean'))}; log sd ~ {_fmt(fi.get('influencing_variance'))}")
    held = (card.get("metrics") or {}).get("held_out")
    if held:
        lines.append(f"Held-out metrics ({held.get('n_subjects')} subjects): " + ", ".join(
            f"{k} {_fmt(v)}" for k, v in held.items() if k != "n_subjects"))
    else:
        lines.append("Held-out metrics: none (fit with --holdout to compute them)")
    for a in card.get("adaptations") or []:
        levels = "; ".join(f"{k}: {', '.join(v)}" for k, v in a.get("levels", {}).items())
        lines.append(f"Adapted to {levels} from {a.get('n_subjects')} subjects")
    lines.append(f"Package version: {card.get('package_version')}")
    return "\n".join(lines)
