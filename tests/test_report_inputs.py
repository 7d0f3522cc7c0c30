"""Every bad input of generate_report fails before drawing, naming the argument, the value and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.exceptions import (
    InvalidInputError,
    MeshError,
    OutputExistsError,
    ShapeMismatchError,
    SpectraNormError,
)
from spectranorm_neuro.graphs import Structure
from spectranorm_neuro.report import _inputs as checks
from spectranorm_neuro.report import generate_report

from .test_report_numbers import LinearModel, random_basis

LATTICE = (Structure("Lattice", "lattice", 12, np.arange(12), shape=(3, 4)),)


def subjects_table(n=3):
    return pd.DataFrame({"age": np.linspace(20, 60, n), "site": ["A", "B", "A"][:n],
                         "group": ["x", "y", None][:n]}, index=[f"s{i}" for i in range(n)])


def run(tmp_path, z=None, subjects="default", **kwargs):
    z = np.zeros((3, 12)) if z is None else z
    subjects = subjects_table() if isinstance(subjects, str) else subjects
    kwargs.setdefault("structures", LATTICE)
    return generate_report(tmp_path / "rep", z, subjects, kwargs.pop("basis", None), progress=False, **kwargs)


@pytest.mark.parametrize(("kwargs", "cls", "pattern"), [
    ({"z": np.full((3, 12), np.nan)}, InvalidInputError, r"zscores=.*36 NaN/inf.*Fix: remove or impute"),
    ({"z": np.zeros((3, 11))}, ShapeMismatchError,
     r"zscores='array with 11 features': does not match the 12 kept nodes.*Fix: pass z-scores in the basis"),
    ({"z": np.zeros((0, 12))}, ShapeMismatchError, r"zscores=.*is empty.*Fix:"),
    ({"subjects": subjects_table(2)}, ShapeMismatchError, r"subjects='DataFrame with 2 rows'.*Fix: pass one"),
    ({"subjects": subjects_table().set_axis(["a", "a", "b"])}, InvalidInputError,
     r"subjects=.index with duplicate id 'a'.*Fix: index the DataFrame"),
    ({"subjects": np.zeros((3, 2))}, InvalidInputError,
     r"subjects='ndarray': is not a pandas DataFrame.*Fix:"),
    ({"controls": [True, False]}, ShapeMismatchError, r"controls=.*shape \(2,\).*Fix: pass a boolean array"),
    ({"controls": [0.5, 1, 0]}, InvalidInputError, r"controls=.*is not boolean.*Fix: pass True for"),
    ({"controls": [False, False, False]}, InvalidInputError, r"controls='all False'.*Fix: mark at least one"),
    ({"group_column": "diagnosis"}, InvalidInputError,
     r"group_column='diagnosis': is not a column of subjects.*Fix: pass one of \['age', 'site', 'group'\]"),
    ({"site_column": "scanner"}, InvalidInputError, r"site_column='scanner': is not a column.*Fix:"),
    ({"atlas_labels": np.arange(5)}, ShapeMismatchError,
     r"atlas_labels=.*one parcel per feature \(12\).*Fix:"),
    ({"atlas_labels": np.full(12, 0.5)}, InvalidInputError, r"atlas_labels='non-integer numbers'.*Fix:"),
    ({"atlas_labels": (np.arange(12) % 3, ["a", "b"])}, InvalidInputError,
     r"atlas_labels='label 2': has no entry among the 2 names.*Fix: pass one name per label"),
    ({"atlas_labels": np.full(12, -1)}, InvalidInputError, r"atlas_labels='all unlabelled'.*Fix:"),
    ({"centiles": [0.5, 1.5]}, InvalidInputError, r"centiles=\[0.5, 1.5\].*strictly between 0 and 1.*Fix:"),
    ({"coefficients": np.zeros((2, 4))}, ShapeMismatchError,
     r"coefficients=.*one row per subject \(3\).*Fix:"),
    ({"max_subjects": -1}, InvalidInputError, r"max_subjects=-1: is not a non-negative integer.*Fix:"),
    ({"inline_subjects": 2.5}, InvalidInputError, r"inline_subjects=2.5.*Fix: pass e.g. inline_subjects="),
    ({"model_card": ["seed", 1]}, InvalidInputError, r"model_card='list': is not a dict.*Fix:"),
    ({"structures": None}, InvalidInputError,
     r"basis=None: does not describe its geometry.*Fix: build the basis with a graphs adapter"),
    ({"structures": (Structure("V", "volume", 24, np.arange(12), shape=(2, 3, 4)),)}, InvalidInputError,
     r"structures\[0\]='V': is a volume without a \(4, 4\) affine.*Fix: set Structure.affine"),
    ({"structures": (Structure("V", "volume", 12, np.arange(12), shape=(3, 4)),)}, ShapeMismatchError,
     r"structures\[0\]=.*without a 3-D grid shape.*Fix:"),
    ({"structures": (Structure("L", "lattice", 12, np.arange(12), shape=(5, 4)),)}, ShapeMismatchError,
     r"structures\[0\]=.*lattice without a 2-D shape of 12 cells.*Fix:"),
    ({"structures": (Structure("L", "torus", 12, np.arange(12)),)}, InvalidInputError,
     r"structures\[0\]='torus': has an unknown kind.*Fix: use one of"),
    ({"structures": (Structure("L", "lattice", 10, np.arange(12)),)}, ShapeMismatchError,
     r"structures\[0\]='L': has indices outside 0..9.*Fix:"),
    ({"structures": ("CortexLeft",)}, InvalidInputError, r"structures\[0\]='str': is not a graphs.Structure"),
    ({"structures": (Structure("Sphere", "surface", 12, np.arange(12)),)}, InvalidInputError,
     r"meshes=\[\]: has no mesh for surface 'Sphere' \(12 vertices\).*Fix: pass meshes=\{'Sphere'"),
    ({"structures": (Structure("Sphere", "surface", 12, np.arange(12)),),
      "meshes": {"Sphere": (np.zeros((12, 3)), np.array([[0, 1, 12]]))}}, MeshError,
     r"meshes\['Sphere'\]=.*are not integer triangles over vertices 0..11.*Fix:"),
    ({"structures": (Structure("Sphere", "surface", 12, np.arange(12)),),
      "meshes": {"Sphere": (np.zeros((10, 3)), np.array([[0, 1, 2]]))}}, MeshError,
     r"meshes\['Sphere'\]='vertices of shape \(10, 3\)'.*Fix: pass \(12, 3\) vertex"),
    ({"structures": (Structure("Sphere", "surface", 12, np.arange(12)),),
      "meshes": {"Sphere": (np.zeros((12, 3)), np.array([[0, 1, 2]]), np.zeros(3))}}, ShapeMismatchError,
     r"meshes\['Sphere'\]='background of shape \(3,\)'.*Fix: pass a background map"),
    ({"structures": (Structure("Sphere", "surface", 12, np.arange(12)),), "meshes": {"Sphere": "mesh.gii"}},
     InvalidInputError, r"meshes\['Sphere'\]='str': is not a \(vertices, faces\[, background\]\) tuple"),
    ({"meshes": {"CortexLeft": (np.zeros((3, 3)), np.zeros((1, 3), int))}}, InvalidInputError,
     r"meshes=\['CortexLeft'\]: name no surface structure of the basis.*Fix: key meshes"),
])
def test_bad_inputs_are_named(tmp_path, kwargs, cls, pattern):
    with pytest.raises(cls, match=pattern):
        run(tmp_path, **kwargs)
    assert not (tmp_path / "rep").exists()  # nothing was written


def test_basis_features_must_match(tmp_path):
    basis = random_basis(n_features=13, n_modes=3)
    with pytest.raises(ShapeMismatchError, match=r"zscores=.*does not match the basis' 13 features.*Fix:"):
        run(tmp_path, basis=basis)


def test_model_covariates_must_be_in_subjects(tmp_path):
    basis = random_basis(n_features=12, n_modes=3)
    pattern = r"subjects=.*lacks the model covariate\(s\) \['sex'\].*Fix: add"
    with pytest.raises(InvalidInputError, match=pattern):
        run(tmp_path, model=LinearModel(basis))


def test_existing_outputs_are_refused_before_drawing(tmp_path):
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "index.html").write_text("old")
    with pytest.raises(OutputExistsError, match=r"out_dir=.*index.html exists.*Fix: .*overwrite=True"):
        run(tmp_path)
    assert (tmp_path / "rep" / "index.html").read_text() == "old"
    assert not (tmp_path / "rep" / "figures").exists()
    (tmp_path / "rep" / "index.html").unlink()
    (tmp_path / "rep" / "figures").mkdir()
    (tmp_path / "rep" / "figures" / "calibration.png").write_bytes(b"png")
    with pytest.raises(OutputExistsError, match=r"calibration.png exists"):
        run(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpectraNormError, match=r"out_dir=.*is an existing file.*Fix: pass a folder"):
        generate_report(tmp_path / "file", np.zeros((1, 12)), None, None, structures=LATTICE)


def test_structures_from_the_basis_and_feature_blocks():
    basis = random_basis(n_features=12, n_modes=3)
    blocks = checks.resolve_blocks(basis, None, 12)
    assert [(b.name, b.kind, b.start, b.stop) for b in blocks] == [("Features", "lattice", 0, 12)]
    two = (Structure("A", "lattice", 6, np.array([0, 2, 4]), shape=(2, 3)),
           Structure("B", "parcels", 9, np.arange(9)))
    blocks = checks.resolve_blocks(None, two, 12)
    assert [(b.start, b.stop) for b in blocks] == [(0, 3), (3, 12)]
    full = blocks[0].to_full(np.arange(12.0))
    np.testing.assert_array_equal(full, [0, np.nan, 1, np.nan, 2, np.nan])


def test_atlas_labels_forms():
    codes, names = checks.check_atlas(np.array([3, 3, -1, 7, 0]), 5)
    assert names == ["0", "3", "7"] and list(codes) == [1, 1, -1, 2, 0]
    codes, names = checks.check_atlas((np.array([2, 0, 2]), {0: "Unknown", 2: "insula"}), 3)
    assert names == ["Unknown", "insula"] and list(codes) == [1, 0, 1]
    codes, names = checks.check_atlas((np.array([1, 0]), [b"a", b"b"]), 2)
    assert names == ["a", "b"] and list(codes) == [1, 0]
    codes, names = checks.check_atlas(np.array(["V1", None, "", "MT", "V1"], dtype=object), 5)
    assert names == ["MT", "V1"] and list(codes) == [1, -1, -1, 0, 1]


def test_groups_sites_and_slugs():
    table = subjects_table()
    labels, levels = checks.check_groups(table, "group")
    assert list(labels) == ["x", "y", "(no group)"] and levels == ["x", "y", "(no group)"]
    table["cat"] = pd.Categorical(["b", "a", "b"], categories=["b", "a"])
    assert checks.check_groups(table, "cat")[1] == ["b", "a"]
    assert checks.check_site_column(table, None, None) == "site"
    assert checks.check_site_column(table.rename(columns={"site": "scanner"}), None, None) is None
    model = type("M", (), {"batch_covariates": ["group"]})()
    assert checks.check_site_column(table, None, model) == "group"
    assert checks.subject_slugs(["sub 01/a", "sub_01_a", "SUB_01_A", "..", 7]) == \
        ["sub_01_a", "sub_01_a-2", "SUB_01_A-3", "subject", "7"]
    assert checks.check_controls([1, 0, 1], 3).tolist() == [True, False, True]
