"""Test helpers re-exporting the package's synthetic cohorts at test sizes."""

from __future__ import annotations

from spectranorm_neuro.datasets import SITES, blob_images, lattice_basis
from spectranorm_neuro.datasets import seed_lattice_cohort as lattice_cohort

__all__ = ["SITES", "blob_images", "lattice_basis", "lattice_cohort"]
