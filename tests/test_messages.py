"""Error messages show the bad value itself (not a count) and name the argument."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.exceptions import InvalidInputError
from spectranorm_neuro.graphs import lattice_graph
from spectranorm_neuro.snm import SpectralNormativeModel


def test_missing_covariate_values_are_shown_with_their_rows():
    basis = EigenmodeBasis.from_graph(lattice_graph((5, 4)), 3, laplacian="normalized")
    cov = pd.DataFrame({"age": [20.0, 30.0, np.nan, 50.0, "abc", 60.0]}, index=[f"sub-{i}" for i in range(6)])
    with pytest.raises(InvalidInputError,
                       match=r"\['age'\]=\[None, 'abc'\]: 2 value\(s\) are missing.*rows \['sub-2', 'sub-4'\]"):
        SpectralNormativeModel.build_from_dataframe(basis, "BLR", cov, numerical_covariates=["age"],
                                                    influencing_mean=["age"], influencing_variance=["age"])
