"""``load_model(..., mmap_mode="r")``: the per-feature arrays are memory-mapped read-only from the saved files."""

import numpy as np
import pytest

from spectranorm_neuro import snm
from spectranorm_neuro.datasets import lattice_basis, seed_lattice_cohort


def _mapped(arr) -> bool:
    """Whether ``arr`` is (a view of) a read-only memory map of a file."""
    while arr is not None:
        if isinstance(arr, np.memmap):
            return arr.filename is not None and arr.mode == "r"
        arr = getattr(arr, "base", None)
    return False


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    native = lattice_basis(n_side=16, n_modes=12)
    basis = snm.utils.gsp.EigenmodeBasis(native.eigenvalues, native.eigenvectors)
    train, _, _, maps, _ = seed_lattice_cohort(200, seed=0, n_side=16)
    test, _, _, test_maps, _ = seed_lattice_cohort(20, seed=1, n_side=16)
    model = snm.SpectralNormativeModel.build_from_dataframe(
        basis, "HBR", train, numerical_covariates=["age"], categorical_covariates=["site"],
        batch_covariates=["site"], influencing_mean=["age", "site"], influencing_variance=["age"])
    model.fit(basis.encode(maps), train, n_jobs=1)
    model.fit_residual(maps, train)
    folder = tmp_path_factory.mktemp("mmap") / "model"
    model.save_model(folder)
    return {"folder": folder, "model": model, "test": test, "maps": test_maps, "Q": basis.encode(np.eye(256)).T}


def test_load_model_memory_maps_and_predicts_identically(saved):
    mapped = snm.SpectralNormativeModel.load_model(saved["folder"], mmap_mode="r")
    plain = snm.SpectralNormativeModel.load_model(saved["folder"], mmap_mode=None)
    evecs = mapped.eigenmode_basis.eigenvectors
    assert isinstance(evecs, np.memmap) and evecs.mode == "r" and evecs.shape == (256, 12)
    assert str(saved["folder"]) in str(evecs.filename)
    assert not isinstance(plain.eigenmode_basis.eigenvectors, np.memmap)
    residual = mapped.residual_params.direct
    per_feature = [v for v in vars(residual).values() if isinstance(v, np.ndarray) and v.ndim and len(v) == 256]
    assert per_feature and all(_mapped(v) for v in per_feature)  # the residual part's per-vertex arrays too
    assert not any(_mapped(v) for v in vars(plain.residual_params.direct).values() if isinstance(v, np.ndarray))
    with pytest.raises(ValueError):
        evecs[0, 0] = 1.0  # read-only: the checksummed file cannot be changed through the model
    q, test = saved["Q"], saved["test"]
    for m in (mapped, plain):
        np.testing.assert_array_equal(m.predict(q, test_covariates=test).predictions["std_estimate"],
                                      saved["model"].predict(q, test_covariates=test).predictions["std_estimate"])
        np.testing.assert_array_equal(m.evaluate_maps(saved["maps"], test).predictions["z-score"],
                                      saved["model"].evaluate_maps(saved["maps"], test).predictions["z-score"])


def test_writable_mmap_modes_are_refused(saved):
    for mode in ("r+", "w+", "c"):
        with pytest.raises(ValueError, match="mmap_mode"):
            snm.SpectralNormativeModel.load_model(saved["folder"], mmap_mode=mode)


def test_native_load_model_mmap(saved):
    from spectranorm_neuro.engine.spectral import SpectralNormativeModel

    model = SpectralNormativeModel.load_model(saved["folder"], mmap=True)
    assert isinstance(model.eigenmode_basis.eigenvectors, np.memmap)
    assert not isinstance(SpectralNormativeModel.load_model(saved["folder"]).eigenmode_basis.eigenvectors, np.memmap)
