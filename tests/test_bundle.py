"""Model bundles: round trips (folder and .zip), checksums, format versions, no unpickling, compatibility."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.exceptions import (
    ChecksumError,
    FileFormatError,
    FormatVersionError,
    IncompatibleModelError,
    OutputExistsError,
    UnsafeFormatError,
)
from spectranorm_neuro.graphs import Structure, lattice_graph
from spectranorm_neuro.snm import SpectralNormativeModel
from spectranorm_neuro.workflow import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    basis_space,
    build_model_card,
    check_compatible,
    format_card,
    load_bundle,
    record_adaptation,
    save_bundle,
    space_label,
)


@pytest.fixture(scope="module")
def fitted():
    """A model on a 12 x 10 lattice whose 8 modes' coefficients depend on age and site."""
    basis = EigenmodeBasis.from_graph(lattice_graph((12, 10)), 8, laplacian="normalized")
    basis.provenance.update({"space": "MNI152NLin2009cAsym", "res": "2"})
    rng = np.random.default_rng(0)
    n = 120
    cov = pd.DataFrame({"age": rng.uniform(20, 80, n), "sex": rng.choice(["F", "M"], n),
                        "site": rng.choice(["A", "B"], n)})
    C = 0.02 * cov["age"].to_numpy()[:, None] + (cov["site"] == "B").to_numpy()[:, None] + rng.normal(size=(n, 8))
    model = SpectralNormativeModel.build_from_dataframe(
        basis, "HBR", cov, numerical_covariates=["age"], categorical_covariates=["sex", "site"],
        batch_covariates=["site"], influencing_mean=["age", "sex", "site"], influencing_variance=["age", "site"])
    model.fit(C, cov, n_jobs=1)
    card = build_model_card(model, cov, measure="GMV", space=basis_space(basis), seed=0)
    return model, card, cov, C


def _predictions(model, cov):
    Q = model.eigenmode_basis.encode_queries(np.eye(model.eigenmode_basis.n_features))
    pred = model.predict(Q, cov)
    return pred.predictions["mu_estimate"], pred.predictions["std_estimate"]


@pytest.mark.parametrize("name", ["bundle", "bundle.zip"])
def test_round_trip_predicts_identically(fitted, tmp_path, name):
    model, card, cov, _ = fitted
    path = save_bundle(model, tmp_path / name, card)
    bundle = load_bundle(path)
    assert bundle.card == json.loads(json.dumps(card))
    assert bundle.space == {"space": "MNI152NLin2009cAsym", "res": "2"} and bundle.measure == "GMV"
    assert bundle.manifest["format"] == BUNDLE_FORMAT and bundle.manifest["format_version"] == BUNDLE_FORMAT_VERSION
    assert set(bundle.manifest["files"]) == {"model_card.json", "model/manifest.json", "model/spec.json",
                                             "model/model.json", "model/params.npz", "model/basis.npz"}
    for a, b in zip(_predictions(model, cov), _predictions(bundle.model, cov)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(bundle.basis.eigenvectors, model.eigenmode_basis.eigenvectors)
    assert [s.name for s in bundle.basis.structures] == ["Lattice"]


def test_card_contents(fitted):
    _, card, cov, _ = fitted
    tr = card["training"]
    assert tr["n_subjects"] == 120
    assert tr["sites"] == {"site": cov["site"].value_counts().sort_index().to_dict()}
    assert tr["covariates"]["age"]["min"] == cov["age"].min() and tr["covariates"]["age"]["max"] == cov["age"].max()
    assert tr["covariates"]["sex"]["counts"] == cov["sex"].value_counts().sort_index().to_dict()
    assert tr["covariates"]["site"]["batch"] is True and tr["covariates"]["sex"]["batch"] is False
    assert card["basis"]["space"] == {"space": "MNI152NLin2009cAsym", "res": "2"}
    assert card["basis"]["n_modes"] == 8 and card["basis"]["structures"][0]["shape"] == [12, 10]
    assert card["fitting"]["n_modes"] == 8 and card["fitting"]["influencing_variance"] == ["age", "site"]
    assert card["metrics"] == {"held_out": None}
    text = format_card(card)
    assert "Training: 120 subjects" in text and "space-MNI152NLin2009cAsym_res-2" in text
    assert "age: numerical (linear), range" in text and "none (fit with --holdout" in text
    new = record_adaptation(card, {"site": ["C"]}, 15, "x")
    assert new["adaptations"] == [{"levels": {"site": ["C"]}, "n_subjects": 15, "source": "x"}]
    assert card["adaptations"] == []  # the original is not modified


def test_zip_is_reproducible_and_safe(fitted, tmp_path):
    model, card, *_ = fitted
    a = save_bundle(model, tmp_path / "a.zip", card)
    with zipfile.ZipFile(a) as zf:
        names = zf.namelist()
        assert names[0] == "manifest.json" and all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.json", "{}")
    with pytest.raises(FileFormatError, match=r"unsafe member path '\.\./outside\.json'"):
        load_bundle(evil)
    assert not (tmp_path / "outside.json").exists()


def test_tampering_is_detected(fitted, tmp_path):
    model, card, *_ = fitted
    path = save_bundle(model, tmp_path / "b", card)
    spec = path / "model" / "spec.json"
    spec.write_text(spec.read_text().replace('"HBR"', '"BLR"'))
    with pytest.raises(ChecksumError, match=r"model/spec\.json=.*the manifest records.*Fix: restore"):
        load_bundle(path)
    path = save_bundle(model, tmp_path / "c", card)
    (path / "model" / "basis.npz").unlink()
    with pytest.raises(ChecksumError, match=r"model/basis\.npz=.*listed in manifest\.json but missing"):
        load_bundle(path)
    # a tampered .zip: the member's bytes change, the archive stays valid
    z = save_bundle(model, tmp_path / "d.zip", card)
    with zipfile.ZipFile(z) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["model_card.json"] = members["model_card.json"].replace(b'"GMV"', b'"CT"')
    with zipfile.ZipFile(z, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    with pytest.raises(ChecksumError, match=r"model_card\.json"):
        load_bundle(z)


def test_format_versions(fitted, tmp_path):
    model, card, *_ = fitted
    path = save_bundle(model, tmp_path / "b", card)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = BUNDLE_FORMAT_VERSION + 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatVersionError, match=rf"format_version={BUNDLE_FORMAT_VERSION + 1}: is newer than the "
                                                 rf"version {BUNDLE_FORMAT_VERSION}"):
        load_bundle(path)
    path = save_bundle(model, tmp_path / "c", card)
    inner = json.loads((path / "model" / "manifest.json").read_text())
    inner["format_version"] = 7
    (path / "model" / "manifest.json").write_text(json.dumps(inner))
    with pytest.raises(ChecksumError, match=r"model/manifest\.json"):  # the bundle manifest covers the inner one
        load_bundle(path)


def test_loading_never_unpickles(fitted, tmp_path, monkeypatch):
    model, card, *_ = fitted
    path = save_bundle(model, tmp_path / "b.zip", card)

    def boom(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    assert load_bundle(path).model.model_params["n_modes"] == 8
    monkeypatch.undo()
    pkl = tmp_path / "model.joblib"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UnsafeFormatError, match="never unpickles"):
        load_bundle(pkl)


def test_not_bundles(fitted, tmp_path):
    model = fitted[0]
    with pytest.raises(FileFormatError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileFormatError, match=r"holds no manifest\.json"):
        load_bundle(tmp_path / "empty")
    model.save_model(tmp_path / "plain")
    with pytest.raises(FileFormatError, match=r"saved model folder \(save_model\), not a bundle"):
        load_bundle(tmp_path / "plain")
    (tmp_path / "text.zip").write_text("hello")
    with pytest.raises(FileFormatError, match=r"neither a bundle folder nor a \.zip bundle"):
        load_bundle(tmp_path / "text.zip")


def test_overwrite_rules(fitted, tmp_path):
    model, card, *_ = fitted
    path = save_bundle(model, tmp_path / "b", card)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        save_bundle(model, path, card)
    card2 = dict(card, measure="CT")
    save_bundle(model, path, card2, overwrite=True)
    assert load_bundle(path).measure == "CT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary leftovers
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not a model bundle"):
        save_bundle(model, other, card, overwrite=True)
    assert (other / "precious.txt").read_text() == "keep"


def test_check_compatible(fitted, tmp_path):
    model, card, *_ = fitted
    bundle = load_bundle(save_bundle(model, tmp_path / "b", card))
    check_compatible(bundle, bundle.basis.structures, {"space": "MNI152NLin2009cAsym"})
    other = (Structure("Lattice", "lattice", 130, np.arange(130), shape=(13, 10)),)
    with pytest.raises(IncompatibleModelError, match=r"Lattice \(130 nodes, 130 kept\).*not on the bundle's "
                                                     r"mesh/mask \(Lattice \(120 nodes, 120 kept\)\)"):
        check_compatible(bundle, other)
    masked = (Structure("Lattice", "lattice", 120, np.arange(1, 120), shape=(12, 10)),)
    with pytest.raises(IncompatibleModelError, match="119 kept"):
        check_compatible(bundle, masked)
    with pytest.raises(IncompatibleModelError, match=r"space-MNI152NLin6Asym_res-2.*other template space.*"
                                                     r"space-MNI152NLin2009cAsym_res-2"):
        check_compatible(bundle, None, {"space": "MNI152NLin6Asym", "res": "2"})
    assert space_label({"den": "10k", "space": "fsaverage"}) == "space-fsaverage_den-10k"
    assert space_label({}) == "unspecified"


def test_bundle_survives_a_move(fitted, tmp_path):
    model, card, cov, _ = fitted
    path = save_bundle(model, tmp_path / "b", card)
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(str(path), str(moved))
    for a, b in zip(_predictions(model, cov), _predictions(load_bundle(moved).model, cov)):
        np.testing.assert_array_equal(a, b)


def test_card_records_no_local_absolute_path(fitted, tmp_path):
    import copy

    model, _, cov, _ = fitted
    model = copy.deepcopy(model)
    model.eigenmode_basis.provenance.update({"source": str(tmp_path / "masks" / "gm_mask.nii.gz"),
                                            "parts": [{"source": "/home/me/surf/lh.white"}]})
    card = build_model_card(model, cov, measure="GMV", space={}, seed=0,
                            source=str(tmp_path / "study" / "derivatives" / "participants.tsv"))
    text = json.dumps(card)
    assert str(tmp_path) not in text and "/home/me" not in text
    assert card["training"]["source"] == "derivatives"
    assert card["basis"]["provenance"]["source"] == "gm_mask.nii.gz"
    assert card["basis"]["provenance"]["parts"] == [{"source": "lh.white"}]
    relative = build_model_card(model, cov, measure="GMV", space={}, seed=0, source="data/reference")
    assert relative["training"]["source"] == "data/reference"
