"""Scale: streaming prediction in bounded memory, joblib everywhere, and the same results on dask.

* ``SpectralNormativeModel.iter_predict`` yields blocks that tile ``predict``/``evaluate`` exactly,
  never larger than asked, with a traced memory peak far below one (subjects x queries) array;
  its joblib path gives bitwise the blocks of the serial path.
* The command line's scoring (``score``, ``write_maps``, ``score_and_write``) writes the same files
  for any ``n_jobs``, and the streaming writer the same files as score-then-write.
* ``--scheduler``: errors name the option and the fix (dask missing, bad or unreachable address).
* On a ``dask.distributed.LocalCluster`` (2 worker processes): fit (several mode blocks),
  ``iter_predict`` and the ``fit``/``apply`` commands give results identical to the local run.
"""

from __future__ import annotations

import importlib
import socket
import sys
import tracemalloc

import joblib
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from joblib import parallel_config

from spectranorm_neuro import io
from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.engine import spectral
from spectranorm_neuro.engine.spectral import SpectralNormativeModel
from spectranorm_neuro.exceptions import InvalidInputError, ShapeMismatchError
from spectranorm_neuro.workflow import scoring as _scoring

from ._cli_data import FIT_ARGS, make_study, run_cli
from ._synth import lattice_basis, lattice_cohort

cli_main = importlib.import_module("spectranorm_neuro.cli.main")  # the package exports main() under that name
N_SIDE = 20
KEYS = ("mu_estimate", "std_estimate", "z-score", "centiles", "log-likelihood")


# ---------------------------------------------------------------------------------------------- fixtures
def _lattice_model(n_train: int = 800, n_modes: int = 30):
    basis = lattice_basis(N_SIDE, n_modes)
    train, _, _, obs, _ = lattice_cohort(n_train, 0, N_SIDE)
    model = SpectralNormativeModel.build_from_dataframe(
        eigenmode_basis=basis, model_type="HBR", covariates_dataframe=train, numerical_covariates=["age"],
        nonlinear_covariates=["age"], categorical_covariates=["site"], batch_covariates=["site"],
        influencing_mean=["age", "site"], influencing_variance=["age", "site"])
    return basis, model, train, basis.encode(obs)


@pytest.fixture(scope="module")
def lattice():
    basis, model, train, C = _lattice_model()
    model.fit(C, train, n_jobs=1)
    test, _, _, obs_te, eps = lattice_cohort(300, 1, N_SIDE)
    Q = basis.encode_queries(np.eye(basis.n_features))  # every pixel
    return dict(basis=basis, model=model, train=train, C=C, test=test, Cte=basis.encode(obs_te), Q=Q, eps=eps)


def _surface_basis(n_vertices: int = 120, modes_per_hemi: int = 8, seed: int = 0) -> EigenmodeBasis:
    """A block-diagonal orthonormal basis over two small 'hemispheres' (GIFTI needs surface structures)."""
    r = np.random.default_rng(seed)
    mask = np.ones(n_vertices, bool)
    mask[:7] = False  # a 'medial wall', written as NaN
    structs = (io.surface_structure("L", n_vertices, mask), io.surface_structure("R", n_vertices, mask))
    n = mask.sum()
    evecs = np.zeros((2 * n, 2 * modes_per_hemi))
    for h in range(2):
        evecs[h * n:(h + 1) * n, h * modes_per_hemi:(h + 1) * modes_per_hemi] = np.linalg.qr(
            r.normal(size=(n, modes_per_hemi)))[0]
    return EigenmodeBasis(np.arange(2 * modes_per_hemi, dtype=float), evecs, structures=structs)


@pytest.fixture(scope="module")
def surface():
    """A fitted model on the small surface basis, and 23 new subjects (site C unseen by nobody)."""
    basis = _surface_basis()
    r = np.random.default_rng(1)
    k = basis.n_modes
    loadings = r.normal(size=k) / np.sqrt(1 + np.arange(k))

    def cohort(n, seed):
        g = np.random.default_rng(seed)
        cov = pd.DataFrame({"age": g.uniform(20, 80, n), "sex": g.choice(["F", "M"], n),
                            "site": g.choice(["A", "B", "C"], n)})
        shift = cov["site"].map({"A": 0.0, "B": 0.5, "C": -0.3}).to_numpy()
        scale = 1 + 0.01 * (cov["age"].to_numpy() - 50)
        C = (0.02 * cov["age"].to_numpy() + shift)[:, None] * loadings + scale[:, None] * g.normal(size=(n, k))
        return cov, C

    train, C = cohort(300, 2)
    test, Cte = cohort(23, 3)
    model = SpectralNormativeModel.build_from_dataframe(
        basis, "HBR", train, numerical_covariates=["age"], nonlinear_covariates=["age"],
        categorical_covariates=["sex", "site"], batch_covariates=["site"], influencing_mean=["age", "sex", "site"],
        influencing_variance=["age", "site"])
    model.fit(C, train, n_jobs=1)
    subjects = [f"sub-{i:03d}" for i in range(len(test))]
    return dict(basis=basis, model=model, test=test, Cte=Cte, subjects=subjects)


def _assemble(blocks, n_subj: int, n_q: int, keys=KEYS) -> dict[str, np.ndarray]:
    out = {k: np.full((n_subj, n_q), np.nan) for k in keys}
    hits = np.zeros((n_subj, n_q), dtype=int)
    for rows, cols, pred in blocks:
        for k in keys:
            out[k][rows, cols] = pred.predictions[k]
        hits[rows, cols] += 1
    assert (hits == 1).all()  # the blocks tile the (subjects x queries) grid exactly once
    return out


def _gifti_tree(root) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): np.asarray(nib.load(p).darrays[0].data)
            for p in sorted(root.rglob("*.shape.gii"))}


# ---------------------------------------------------------------------------------------------- iter_predict
def test_iter_predict_blocks_tile_predict_and_evaluate(lattice):
    m, test, Cte, Q = lattice["model"], lattice["test"], lattice["Cte"], lattice["Q"]
    whole = m.evaluate(Q, Cte, test, query_train_moments=np.stack([np.zeros(Q.shape[1]), np.ones(Q.shape[1])]))
    shapes = []

    def record(blocks):
        for rows, cols, pred in blocks:
            shapes.append(pred.predictions["mu_estimate"].shape)
            assert list(pred.index) == list(test.index[rows])
            yield rows, cols, pred

    got = _assemble(record(m.iter_predict(Q, test, observed=Cte, subject_block=70, query_block=150)),
                    len(test), Q.shape[1])
    for key in KEYS:
        np.testing.assert_allclose(got[key], whole.predictions[key], rtol=1e-12, atol=1e-12)
    # 300 subjects in blocks of 70 (4 x 70 + 20), 400 queries in blocks of 150 (2 x 150 + 100)
    assert len(shapes) == 5 * 3 and max(s[0] for s in shapes) == 70 and max(s[1] for s in shapes) == 150
    assert {s[0] for s in shapes} == {70, 20} and {s[1] for s in shapes} == {150, 100}
    # without observations: only the moments, equal to predict()
    pred = m.predict(Q, test)
    blocks = list(m.iter_predict(Q, test, subject_block=128))
    assert set(blocks[0][2].predictions) == {"mu_estimate", "std_estimate"}
    got = _assemble(blocks, len(test), Q.shape[1], keys=("mu_estimate", "std_estimate"))
    np.testing.assert_allclose(got["std_estimate"], pred.predictions["std_estimate"], rtol=1e-12)
    # the z-scores of the synthetic process are known: every linear query has true z = eps
    z = _assemble(m.iter_predict(Q, test, observed=Cte), len(test), Q.shape[1])["z-score"]
    assert np.sqrt(np.mean((z - lattice["eps"][:, None]) ** 2)) < 0.25


def test_iter_predict_reuses_spectral_predictions_and_fewer_modes(lattice):
    m, test, Cte, Q = lattice["model"], lattice["test"], lattice["Cte"], lattice["Q"]
    sp = m.compute_spectral_predictions(test)
    a = _assemble(m.iter_predict(Q, test, observed=Cte, n_modes=12, spectral_predictions=sp, subject_block=64),
                  len(test), Q.shape[1])
    b = m.evaluate(Q, Cte, test, n_modes=12, query_train_moments=np.ones((2, Q.shape[1]))).predictions
    np.testing.assert_allclose(a["z-score"], b["z-score"], rtol=1e-12, atol=1e-12)
    # SpectralPredictions on their own: a subset of subjects, all queries
    part = sp.subset(slice(10, 20)).query_predictions(Q, Cte[10:20], index=test.index[10:20])
    whole = m.evaluate(Q, Cte, test, query_train_moments=np.ones((2, Q.shape[1]))).predictions
    for key in KEYS:
        np.testing.assert_allclose(part.predictions[key], whole[key][10:20], rtol=1e-12, atol=1e-12)
    assert list(part.index) == list(test.index[10:20])


def test_iter_predict_joblib_path_is_bitwise_serial(lattice, monkeypatch):
    m, test, Cte, Q = lattice["model"], lattice["test"], lattice["Cte"], lattice["Q"]
    runs = []

    class Recording(joblib.Parallel):
        def __init__(self, *args, **kwargs):
            runs.append(kwargs.get("n_jobs"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(joblib, "Parallel", Recording)  # what the package's one runner (_util.run_tasks) uses
    serial = list(m.iter_predict(Q, test, observed=Cte, subject_block=100, query_block=128))
    assert runs == []  # n_jobs=1: in this process
    parallel = list(m.iter_predict(Q, test, observed=Cte, subject_block=100, query_block=128, n_jobs=2))
    assert runs == [2]
    assert [(r, c) for r, c, _ in parallel] == [(r, c) for r, c, _ in serial]
    for (_, _, a), (_, _, b) in zip(serial, parallel):
        for key in KEYS:
            np.testing.assert_array_equal(a.predictions[key], b.predictions[key])
    # n_jobs=None follows joblib.parallel_config
    with parallel_config(n_jobs=2):
        configured = list(m.iter_predict(Q, test, observed=Cte, subject_block=100, query_block=128, n_jobs=None))
    assert runs == [2, None]  # joblib resolves None to the configured 2 workers
    np.testing.assert_array_equal(configured[-1][2].predictions["z-score"], serial[-1][2].predictions["z-score"])


def test_iter_predict_memory_stays_bounded(lattice):
    """Streaming 2000 subjects x 400 queries: the traced peak stays far below one full array."""
    m, Q = lattice["model"], lattice["Q"]
    test, _, _, obs, _ = lattice_cohort(2000, 5, N_SIDE)
    C = lattice["basis"].encode(obs)
    full = 2000 * Q.shape[1] * 8  # one (subjects x queries) float64 array: 6.4 MB
    sp = m.compute_spectral_predictions(test)
    tracemalloc.start()
    try:
        n_blocks = 0
        for _, _, pred in m.iter_predict(Q, test, observed=C, spectral_predictions=sp, subject_block=100,
                                         query_block=100):
            assert pred.predictions["z-score"].shape == (100, 100)
            n_blocks += 1
            del pred
        streamed = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        whole = m.predict(Q, test, spectral_predictions=sp)
        materialized = tracemalloc.get_traced_memory()[1]
        del whole
    finally:
        tracemalloc.stop()
    assert n_blocks == 20 * 4
    assert streamed < 0.25 * full  # a handful of 100 x 100 blocks (80 kB each) and the inputs
    assert materialized > 2 * full  # the non-streaming path holds mean and sd of everyone: the test can fail


def test_iter_predict_bad_input_names_the_argument(lattice):
    m, test, Cte, Q = lattice["model"], lattice["test"], lattice["Cte"], lattice["Q"]
    with pytest.raises(InvalidInputError, match=r"subject_block=0.*positive integer.*Fix: pass e\.g\. subject_block"):
        m.iter_predict(Q, test, subject_block=0)
    with pytest.raises(InvalidInputError, match=r"query_block=2\.5.*Fix"):
        m.iter_predict(Q, test, query_block=2.5)
    with pytest.raises(InvalidInputError, match=r"n_jobs=0.*Fix: pass 1"):
        m.iter_predict(Q, test, n_jobs=0)
    with pytest.raises(ShapeMismatchError, match=r"observed.*299 subjects.*300 rows.*Fix"):
        m.iter_predict(Q, test, observed=Cte[:299])
    sp = m.compute_spectral_predictions(test.iloc[:10])
    with pytest.raises(ShapeMismatchError, match=r"spectral_predictions.*10 subjects.*300 rows.*Fix"):
        m.iter_predict(Q, test, spectral_predictions=sp)
    sp = m.compute_spectral_predictions(test, n_modes=5)
    with pytest.raises(ShapeMismatchError, match=r"spectral_predictions.*fewer than the 30 modes.*Fix"):
        m.iter_predict(Q, test, spectral_predictions=sp)


# ---------------------------------------------------------------------------------------------- CLI scoring
def test_score_in_parallel_equals_serial_and_the_engine(surface):
    m, test, Cte = surface["model"], surface["test"], surface["Cte"]
    kinds = ["zscore", "centile", "mu", "sd", "harmonized"]
    serial = _scoring.score(m, Cte, test, kinds, block=5, n_jobs=1)
    parallel = _scoring.score(m, Cte, test, kinds, block=5, n_jobs=2)
    for kind in kinds:
        np.testing.assert_array_equal(parallel[kind], serial[kind])
    Q = _scoring.encoded_queries(m)
    ev = m.evaluate(Q, Cte, test, query_train_moments=np.ones((2, Q.shape[1]))).predictions
    np.testing.assert_allclose(serial["zscore"], ev["z-score"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(serial["sd"], ev["std_estimate"], rtol=1e-12)
    harmonized = m.harmonize(Q, test, Cte, ["site"])
    np.testing.assert_allclose(serial["harmonized"], harmonized, rtol=1e-10, atol=1e-12)
    with pytest.raises(InvalidInputError, match=r"kinds=\['zmap'\].*Fix: pass some of"):
        _scoring.score(m, Cte, test, ["zmap"])


def test_score_and_write_streams_the_same_files_as_score_then_write(surface, tmp_path):
    m, test, Cte, subjects = surface["model"], surface["test"], surface["Cte"], surface["subjects"]
    structures, space = m.eigenmode_basis.structures, {"space": "fsaverage5"}
    maps = _scoring.score(m, Cte, test, ["zscore", "centile"])
    ref = _scoring.write_maps(tmp_path / "ref", maps, subjects, "thickness", structures, space)
    par = _scoring.write_maps(tmp_path / "par", maps, subjects, "thickness", structures, space, n_jobs=2, block=4)
    written, kept = _scoring.score_and_write(tmp_path / "stream", m, Cte, test, subjects, "thickness", structures,
                                             space, keep=["zscore"], block=4, n_jobs=2)
    rel = [[str(p.relative_to(root)) for p in paths]
           for root, paths in ((tmp_path / "ref", ref), (tmp_path / "par", par), (tmp_path / "stream", written))]
    assert rel[0] == rel[1] == rel[2]  # same files, same order (kind by kind, subjects in order, summary)
    assert len(ref) == 2 * 2 * len(subjects) + 1 and rel[0][-1].startswith("group/")
    trees = [_gifti_tree(tmp_path / d) for d in ("ref", "par", "stream")]
    assert trees[0].keys() == trees[1].keys() == trees[2].keys()
    for name, values in trees[0].items():
        np.testing.assert_array_equal(trees[1][name], values)
        np.testing.assert_array_equal(trees[2][name], values)
    assert np.isnan(next(iter(trees[0].values()))[:7]).all()  # the 'medial wall'
    summary = (tmp_path / "ref" / "group" / "desc-zscoresummary_thickness.tsv").read_text()
    assert (tmp_path / "stream" / "group" / "desc-zscoresummary_thickness.tsv").read_text() == summary
    # bitwise equal for the same blocks of subjects; equal to rounding for other blocks
    np.testing.assert_array_equal(kept["zscore"], _scoring.score(m, Cte, test, ["zscore"], block=4)["zscore"])
    np.testing.assert_allclose(kept["zscore"], maps["zscore"], rtol=1e-12, atol=1e-12)
    with pytest.raises(InvalidInputError, match=r"subjects=\['sub-001'\].*more than once.*Fix"):
        _scoring.score_and_write(tmp_path / "dup", m, Cte[:3], test.iloc[:3], ["sub-000", "sub-001", "001"],
                                 "thickness", structures, space)


# ---------------------------------------------------------------------------------------------- --scheduler
def test_scheduler_errors_name_the_option_and_the_fix(monkeypatch):
    code, _, err = run_cli(["apply", "nowhere", "nowhere", "--out", "nowhere_out", "--scheduler", "nonsense"])
    assert code == 1
    assert "--scheduler='nonsense'" in err and "is not a scheduler address" in err and "Fix: pass the address" in err
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(cli_main, "SCHEDULER_TIMEOUT", 0.5)
    code, _, err = run_cli(["apply", "nowhere", "nowhere", "--out", "nowhere_out", "--scheduler", f"tcp://127.0.0.1:{port}"])
    assert code == 1
    assert f"--scheduler='tcp://127.0.0.1:{port}': cannot be reached" in err and "dask scheduler" in err
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if the dask extra were not installed
    code, _, err = run_cli(["apply", "nowhere", "nowhere", "--out", "nowhere_out", "--scheduler", "tcp://127.0.0.1:8786"])
    assert code == 1 and err.count("\n") == 1
    assert "needs dask.distributed, which is not installed" in err
    assert 'pip install "spectranorm-neuro[dask]"' in err


def test_n_jobs_defaults_to_the_whole_cluster_only_with_a_scheduler():
    parser = cli_main.build_parser()
    apply = ["apply", "b", "c", "--out", "o"]  # a computing command (info and sys-info take no --n-jobs)
    for argv, expected in ((apply, 1), ([*apply, "--scheduler", "tcp://h:1"], -1),
                           ([*apply, "--scheduler", "tcp://h:1", "--n-jobs", "3"], 3), ([*apply, "--n-jobs", "2"], 2),
                           (["info", "b"], 1)):
        args = parser.parse_args(argv)
        cli_main._resolve_n_jobs(args)
        assert args.n_jobs == expected, argv


# ---------------------------------------------------------------------------------------------- dask
@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    # tcp on loopback (the default setup looks up its address through 8.8.8.8); worker processes
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None) as lc:
        yield lc


@pytest.fixture
def client(cluster):
    import distributed

    with distributed.Client(cluster) as c:
        yield c


def get_task_stream(client):
    """Record every task the cluster runs inside the block, whichever client sent it (``stream.data``)."""
    import distributed

    return distributed.get_task_stream(client)


@pytest.mark.dask
@pytest.mark.slow
def test_fit_and_predict_on_dask_equal_the_local_run(lattice, client, monkeypatch):
    monkeypatch.setattr(spectral, "MODE_BLOCK", 8)  # 30 modes -> 4 blocks, 15 pairs -> 2 blocks
    _, local, train, C = _lattice_model(n_train=500)
    local.fit(C, train, n_jobs=1)
    _, remote, _, _ = _lattice_model(n_train=500)
    with get_task_stream(client) as stream, parallel_config(backend="dask"):
        remote.fit(C, train, n_jobs=-1)
    assert len(stream.data) >= 2  # the blocks of modes and of pairs ran on the cluster (joblib may batch them)
    assert {t["worker"] for t in stream.data} == set(client.scheduler_info()["workers"])  # on both workers
    assert remote.model_params == local.model_params
    for name in ("direct_params", "covariance_params"):
        a, b = getattr(local, name), getattr(remote, name)
        for field in vars(a):
            np.testing.assert_array_equal(np.asarray(getattr(b, field)), np.asarray(getattr(a, field)), err_msg=field)
    test, Cte, Q = lattice["test"], lattice["Cte"], lattice["Q"]
    serial = list(local.iter_predict(Q, test, observed=Cte, subject_block=100, query_block=128))
    with get_task_stream(client) as stream, parallel_config(backend="dask"):
        on_dask = list(remote.iter_predict(Q, test, observed=Cte, subject_block=100, query_block=128, n_jobs=-1))
    assert len(stream.data) >= 3  # 12 blocks in waves of 4
    assert len(on_dask) == len(serial) == 12
    for (r1, c1, a), (r2, c2, b) in zip(serial, on_dask):
        assert (r1, c1) == (r2, c2)
        for key in KEYS:
            np.testing.assert_array_equal(b.predictions[key], a.predictions[key])
    ev_local = local.evaluate(Q, Cte, test, query_train_moments=np.ones((2, 400)))
    ev_remote = remote.evaluate(Q, Cte, test, query_train_moments=np.ones((2, 400)))
    for key in KEYS:
        np.testing.assert_array_equal(ev_remote.predictions[key], ev_local.predictions[key])


@pytest.mark.dask
@pytest.mark.slow
def test_cli_fit_and_apply_with_scheduler_equal_the_local_run(cluster, client, tmp_path, monkeypatch):
    monkeypatch.setattr(spectral, "MODE_BLOCK", 8)  # 20 modes -> 3 blocks of direct models
    monkeypatch.setattr(_scoring, "SUBJECT_BLOCK", 5)
    monkeypatch.setattr(_scoring, "WRITE_BLOCK", 5)  # apply predicts and writes 12 subjects in 3 tasks
    study = make_study(tmp_path / "study")
    address = cluster.scheduler_address
    bundles = {}
    for name, extra in (("local", []), ("dask", ["--scheduler", address])):
        bundles[name] = tmp_path / f"bundle_{name}"
        with get_task_stream(client) as stream:
            code, _, err = run_cli(["fit", study.root / "reference", "--basis", study.root / "basis.npz",
                                    *FIT_ARGS, "--out", bundles[name], "-q", *extra])
        assert code == 0, err
        assert (len(stream.data) >= 3) if extra else not stream.data
    for part in ("model/params.npz", "model/model.json"):  # written byte-reproducibly
        assert (bundles["dask"] / part).read_bytes() == (bundles["local"] / part).read_bytes(), part
    outs = {}
    for name, extra in (("local", []), ("dask", ["--scheduler", address, "--n-jobs", "2"])):
        outs[name] = tmp_path / f"apply_{name}"
        with get_task_stream(client) as stream:
            code, stdout, err = run_cli(["apply", bundles["local"], study.root / "clinic", "--out", outs[name],
                                         "--maps", "zscore", "centile", "harmonized", *extra])
        assert code == 0, err
        assert "Wrote" in stdout
        # encoding, scoring (12 subjects in blocks of 5) and writing ran on the cluster, or nothing did
        assert ((len(stream.data) >= 3) if extra else not stream.data), (name, len(stream.data))
    local, remote = _gifti_tree(outs["local"]), _gifti_tree(outs["dask"])
    assert len(local) == 3 * 12 and local.keys() == remote.keys()
    for name, values in local.items():
        np.testing.assert_array_equal(remote[name], values, err_msg=name)
    summary = "group/desc-zscoresummary_thickness.tsv"
    assert (outs["dask"] / summary).read_text() == (outs["local"] / summary).read_text()


def _block_shape(rows, cols, pred):
    return rows, cols, pred.predictions["harmonized"].shape


def test_iter_predict_harmonized_blocks_and_worker_transform(lattice):
    m, test, Cte, Q = lattice["model"], lattice["test"], lattice["Cte"], lattice["Q"]
    got = np.empty((len(test), Q.shape[1]))
    for rows, cols, block in m.iter_predict(Q, test, observed=Cte, harmonize_without=["site"], subject_block=7,
                                            query_block=50):
        got[rows, cols] = block.predictions["harmonized"]
    np.testing.assert_allclose(got, m.harmonize(Q, test, Cte, ["site"]), rtol=1e-10, atol=1e-12)
    # a transform runs where the block is computed (here two workers) and its result is what comes back
    shapes = list(m.iter_predict(Q, test, observed=Cte, harmonize_without=["site"], subject_block=7,
                                 query_block=Q.shape[1], n_jobs=2, transform=_block_shape))
    assert all(res == (r, c, (r.stop - r.start, Q.shape[1])) for r, c, res in shapes)
    assert [r for r, _, _ in shapes] == [slice(a, min(a + 7, len(test))) for a in range(0, len(test), 7)]
    with pytest.raises(InvalidInputError, match=r"harmonize_without.*observed"):
        next(m.iter_predict(Q, test, harmonize_without=["site"]))
