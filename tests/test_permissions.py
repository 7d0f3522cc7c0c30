"""Outputs get the modes the user's umask gives any file or folder (not mkdtemp's drwx------)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.graphs import lattice_graph
from spectranorm_neuro.snm import SpectralNormativeModel


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def assert_user_modes(root) -> None:
    """Every folder under ``root`` (included) is 0o777 - umask, every file 0o666 - umask."""
    mask = _umask()
    paths = [root, *root.rglob("*")]
    assert len(paths) > 1
    for path in paths:
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == want, (path, oct(path.stat().st_mode))


@pytest.fixture(scope="module")
def model():
    basis = EigenmodeBasis.from_graph(lattice_graph((6, 5)), 4, laplacian="normalized")
    rng = np.random.default_rng(0)
    cov = pd.DataFrame({"age": rng.uniform(20, 80, 40)})
    m = SpectralNormativeModel.build_from_dataframe(basis, "BLR", cov, numerical_covariates=["age"],
                                                    influencing_mean=["age"], influencing_variance=["age"])
    m.fit(rng.normal(size=(40, 4)), cov, n_jobs=1)
    return m


def test_saved_model_is_readable_like_any_user_file(model, tmp_path):
    model.save_model(tmp_path / "my_model")
    assert_user_modes(tmp_path / "my_model")
