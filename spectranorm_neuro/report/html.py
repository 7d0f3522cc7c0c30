"""HTML rendering of the report: jinja2 templates from package data, images embedded as base64.

The pages are self-contained: the stylesheet is inlined in a ``<style>`` element, every image is
a ``data:image/png;base64`` URI, and there is no script, font or other external resource. The
only links are relative ones between the index and the per-subject pages.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2

__all__ = ["EmbeddedFigure", "data_uri", "format_number", "render_page", "stylesheet"]

_PACKAGE = "spectranorm_neuro.report"


@dataclass(frozen=True)
class EmbeddedFigure:
    """A figure as the templates see it.

    Parameters
    ----------
    key : str
        Stable identifier (``data-figure`` attribute), e.g. ``calibration`` or ``sub-01-zmap-surface``.
    file : str
        Path of the PNG relative to the report folder (``figures/....png``).
    uri : str
        ``data:image/png;base64,...`` URI of the same bytes.
    caption : str
        Text under the image; also the ``alt`` text.
    """

    key: str
    file: str
    uri: str
    caption: str


def data_uri(png: bytes) -> str:
    """``data:`` URI embedding PNG bytes (base64)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def format_number(value: Any, digits: int = 3) -> str:
    """Format a number for a table cell: fixed ``digits`` decimals, integers as is, NaN as "n/a"."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return f"{int(value):,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "n/a"
    return f"{number:.{digits}f}"


def exact_number(value: Any) -> str:
    """Full-precision text of a number for ``data-value`` attributes (``repr`` of the float)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "nan" if math.isnan(number) else repr(number)


def significant(value: Any, digits: int = 4) -> str:
    """Format a number with ``digits`` significant digits (``"n/a"`` for NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if math.isnan(number) else f"{number:.{digits}g}"


def percent(value: Any, digits: int = 1) -> str:
    """Format a fraction as a percentage."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if math.isnan(number) else f"{100 * number:.{digits}f} %"


def stylesheet() -> str:
    """The report's CSS, read from package data."""
    return resources.files(_PACKAGE).joinpath("templates", "report.css").read_text(encoding="utf-8")


_ENV: jinja2.Environment | None = None


def _environment() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader(_PACKAGE, "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["num"] = format_number
        env.filters["exact"] = exact_number
        env.filters["pct"] = percent
        env.filters["sig"] = significant
        _ENV = env
    return _ENV


def render_page(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with the stylesheet inlined.

    Parameters
    ----------
    template : str
        Template file name (``index.html`` or ``subject.html``).
    **context
        Template variables.

    Returns
    -------
    str
        The HTML document.
    """
    return _environment().get_template(template).render(css=stylesheet(), **context)
