"""Migration step of the workflow: files saved by the reference package SpectraNorm 0.1.4.

:func:`convert_upstream` is :func:`spectranorm_neuro.snm.convert_upstream`: a reference basis file
or model directory (joblib) is read by a restricted unpickler (arrays, containers and the
reference's data classes only; nothing executed) and written in this package's checksummed
format, atomically (a failure leaves nothing behind; an existing output only with ``overwrite``).
"""

from __future__ import annotations

from ..snm._upstream import convert_upstream

__all__ = ["convert_upstream"]
