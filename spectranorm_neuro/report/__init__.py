"""Self-contained HTML deviation reports.

:func:`generate_report` writes ``index.html`` (header with the model card and the scored cohort,
calibration of the z-scores, group maps, per-subject deviation maps and centile charts; images
embedded as base64 PNG, no scripts) plus a ``figures/`` folder with the PNGs.

Modules: ``calibration`` (numbers), ``centiles`` (model-based centile curves), ``brainviews``
(surface/volume/lattice figures), ``figures`` (calibration and centile figures), ``html``
(jinja2 rendering), ``pages`` (template rows), ``interactive`` (optional nilearn viewers).

The report of a cohort scored with a model bundle is :func:`bundle_report` (what
``spectranorm-neuro report`` does); :class:`BundleReport` adds it to ``workflow.apply_bundle``.
"""

from ._bundle import BundleReport, bundle_report
from ._generate import generate_report

__all__ = ["generate_report", "bundle_report", "BundleReport"]
