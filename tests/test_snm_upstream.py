"""Migration of files saved by the reference (SpectraNorm 0.1.4): restricted reading, conversion, predictions.

The fixtures in data/upstream/ were written by the reference itself (see data/upstream/README.md),
with the reference's own predictions saved next to them.
"""

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro import snm
from spectranorm_neuro.exceptions import FileFormatError, UnsafeFormatError
from spectranorm_neuro.snm._unpickle import read_upstream_joblib

DATA = Path(__file__).resolve().parents[1] / "data" / "upstream"
REF = np.load(DATA / "reference_predictions.npz")


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - b) / np.maximum(np.abs(b), 1e-300)))


def test_reference_basis_loads_and_converts(tmp_path):
    basis = snm.utils.gsp.EigenmodeBasis.load(DATA / "eigenmode_basis.joblib")
    assert (basis.n_modes, basis.n_features) == (6, 64)
    np.testing.assert_allclose(basis.eigenvectors.T @ basis.eigenvectors, np.eye(6), atol=1e-8)
    out = snm.convert_upstream(DATA / "eigenmode_basis.joblib", tmp_path / "basis.npz")
    again = snm.utils.gsp.EigenmodeBasis.load(out)
    np.testing.assert_array_equal(again.eigenvectors, basis.eigenvectors)
    np.testing.assert_allclose(REF["queries"], basis.encode(np.eye(64)).T)


def test_converted_spectral_model_predicts_what_the_reference_predicts(tmp_path):
    test = pd.read_csv(DATA / "spectral_test.csv")
    direct = snm.SpectralNormativeModel.load_model(DATA / "spectral")  # the reference's directory, read safely
    out = snm.convert_upstream(DATA / "spectral", tmp_path / "converted")
    assert not any(p.suffix == ".joblib" for p in out.rglob("*"))
    model = snm.SpectralNormativeModel.load_model(out)
    for m in (direct, model):
        sp = m.compute_spectral_predictions(test)
        assert set(sp) == {"eigenmode_mu_estimates", "eigenmode_std_estimates", "rho_estimates"}
        for key in sp:
            assert rel_err(sp[key], REF[key]) < 1e-6, key
        pred = m.predict(REF["queries"], spectral_predictions=sp)
        assert rel_err(pred.predictions["mu_estimate"], REF["mu"]) < 1e-6
        assert rel_err(pred.predictions["std_estimate"], REF["sd"]) < 1e-6
        wo = m.predict(REF["queries"], test_covariates=test, predict_without=["site"])
        assert rel_err(wo.predictions["std_estimate"], REF["sd_without_site"]) < 1e-6
        ev = m.evaluate(REF["queries"], m.eigenmode_basis.encode(REF["test_maps"]), test_covariates=test)
        assert rel_err(ev.predictions["z-score"], REF["z"]) < 1e-6
        np.testing.assert_allclose(ev.evaluations["MSLL"], REF["msll"], rtol=1e-6)  # censored, as the reference
    model.save_model(tmp_path / "resaved")  # a converted model re-saves in the safe format
    assert snm.SpectralNormativeModel.load_model(tmp_path / "resaved").model_params["n_modes"] == 6


def test_converted_direct_model_predicts_what_the_reference_predicts(tmp_path):
    df = pd.read_csv(DATA / "direct_data.csv")
    snm.convert_upstream(DATA / "direct", tmp_path / "direct" / "saved_model")
    for source in (DATA / "direct", tmp_path / "direct"):
        model = snm.DirectNormativeModel.load_model(source)
        pred = model.predict(df, extended=True)
        assert rel_err(pred.predictions["mu_estimate"], REF["direct_mu"]) < 1e-6
        assert rel_err(pred.predictions["std_estimate"], REF["direct_sd"]) < 1e-6
        assert rel_err(pred.predictions["z-score"], REF["direct_z"]) < 1e-6
        wo = model.predict(df, predict_without=["cat_col_1"])
        assert rel_err(wo.predictions["mu_estimate"], REF["direct_mu_without"]) < 1e-6
        assert rel_err(model.harmonize(df, ["cat_col_1"]), REF["direct_harmonized"]) < 1e-6


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("payload", ["os.system", "eval", "nested"])
def test_a_file_with_any_other_global_is_refused_without_running_it(tmp_path, payload):
    marker = tmp_path / "was_run"
    exploit = _Exploit(marker) if payload != "eval" else None
    if payload == "eval":
        class _Eval:
            def __reduce__(self):
                return (eval, (f"open({str(marker)!r}, 'w')",))
        exploit = _Eval()
    data = {"eigenvalues": np.arange(3.0), "eigenvectors": np.eye(3)}
    data["mass_matrix"] = exploit if payload != "nested" else {"spec": [1, {"x": exploit}]}
    path = tmp_path / "evil.joblib"
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(UnsafeFormatError, match=r"(system|eval).*nothing was executed"):
        snm.utils.gsp.EigenmodeBasis.load(path)
    with pytest.raises(UnsafeFormatError):
        snm.convert_upstream(path, tmp_path / "out.npz")
    assert not marker.exists()
    assert not (tmp_path / "out.npz").exists()


def test_reference_classes_are_rebuilt_as_plain_records_and_garbage_is_a_format_error(tmp_path):
    data = snm.read_upstream(DATA / "spectral")
    cov = data["spec"]["covariates"][0]
    assert cov["__class__"] == "CovariateSpec" and cov["name"] == "site"
    bad = tmp_path / "bad.joblib"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(FileFormatError):
        read_upstream_joblib(bad)
    truncated = tmp_path / "trunc.joblib"
    truncated.write_bytes((DATA / "eigenmode_basis.joblib").read_bytes()[:300])
    with pytest.raises(FileFormatError):
        read_upstream_joblib(truncated)
    assert isinstance(pickle.loads(pickle.dumps(io.BytesIO)), type)  # the test's own pickling works


def test_cli_convert_upstream_converts_and_refuses_unsafe_files(tmp_path, capsys):
    from spectranorm_neuro.cli import main

    assert main(["convert-upstream", str(DATA / "direct"), "--out", str(tmp_path / "m" / "saved_model")]) == 0
    model = snm.DirectNormativeModel.load_model(tmp_path / "m")
    df = pd.read_csv(DATA / "direct_data.csv")
    assert rel_err(model.predict(df).predictions["mu_estimate"], REF["direct_mu"]) < 1e-6
    evil = tmp_path / "evil.joblib"
    evil.write_bytes(pickle.dumps({"eigenvalues": _Exploit(tmp_path / "was_run")}, protocol=2))
    assert main(["convert-upstream", str(evil), "--out", str(tmp_path / "evil.npz")]) == 1
    err = capsys.readouterr().err
    assert "posix.system" in err or "os.system" in err
    assert "nothing was executed" in err
    assert not (tmp_path / "was_run").exists() and not (tmp_path / "evil.npz").exists()


def test_array_classes_cannot_be_used_to_touch_files(tmp_path):
    target = tmp_path / "created.bin"

    class _Memmap:
        def __reduce__(self):
            return (np.memmap, (str(target), np.uint8, "w+", 0, (16,)))

    path = tmp_path / "memmap.joblib"
    path.write_bytes(pickle.dumps({"eigenvalues": _Memmap()}, protocol=2))
    with pytest.raises(UnsafeFormatError):
        read_upstream_joblib(path)
    assert not target.exists()
