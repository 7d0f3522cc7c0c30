"""Self-contained HTML deviation reports.

:func:`generate_report` writes ``index.html`` (results first: summary, calibration of the z-scores
of the control subjects, group maps and the cohort centile chart, the subject table sorted by
severity and the subjects; then the scored cohort and the collapsed model card; images embedded as
base64 PNG, one small inline script that sorts the subject table) plus a ``figures/`` folder with
the PNGs.

Modules: ``calibration`` (numbers), ``centiles`` (model-based centile curves), ``clusters``
(thresholded maps), ``brainviews`` (surface/volume/lattice figures), ``figures`` (calibration and
centile figures), ``html`` (jinja2 rendering), ``pages`` (template rows), ``interactive`` (optional
nilearn viewers).

The report of a cohort scored with a model bundle is :func:`bundle_report` (what
``spectranorm-neuro report`` does); :class:`BundleReport` adds it to ``workflow.apply_bundle``.
With a regional bundle (tables of regional measures) ``bundle_report`` writes
:func:`regional_report`: the same summary, calibration, subject table and model card, with a table
of regions (likelihood used, calibration, group means) in place of brain views.
"""

from ._bundle import BundleReport, bundle_report
from ._generate import generate_report
from ._regional import regional_report

__all__ = ["generate_report", "bundle_report", "BundleReport", "regional_report"]
