"""Make the reference-saved fixtures in data/upstream/ (run with the REFERENCE's interpreter).

Run from the repository root, in a separate virtualenv holding the reference package::

    python3 -m venv /work/refenv
    /work/refenv/bin/pip install "spectranorm==0.1.4" "numpy<2" "pandas<3" "cachetools<6"
    OMP_NUM_THREADS=1 /work/refenv/bin/python data/upstream/make_fixtures.py

It writes, with the reference's own save functions:

* ``eigenmode_basis.joblib``: ``EigenmodeBasis.save`` of 6 modes of an 8x8 lattice;
* ``spectral/spectral_normative_model/``: ``SpectralNormativeModel.save_model`` of a model fitted
  on 80 subjects (age spline, hierarchical site on mean and variance, 3 mode pairs);
* ``direct/saved_model/model_dict.joblib``: ``DirectNormativeModel.save_model`` of the model of
  the reference's own test (tests/snm/test_direct.py data, 100 ADVI iterations);
* ``reference_predictions.npz`` + ``*_test.csv``: what the reference predicts with these models.
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from spectranorm import snm

OUT = Path(__file__).resolve().parent
rng = np.random.default_rng(0)

# ---- basis: 6 modes of an 8x8 lattice
n = 8
A = sparse.lil_matrix((n * n, n * n))
for i in range(n):
    for j in range(n):
        k = i * n + j
        if i + 1 < n:
            A[k, k + n] = A[k + n, k] = 1
        if j + 1 < n:
            A[k, k + 1] = A[k + 1, k] = 1
A = A.tocsr()
evals, evecs = snm.utils.gsp.compute_symmetric_normalized_laplacian_eigenmodes(A, num_eigenvalues=8)
basis = snm.utils.gsp.EigenmodeBasis(evals[:6], evecs.T[:, :6])
for p in ("eigenmode_basis.joblib", "spectral", "direct"):
    if (OUT / p).is_dir():
        shutil.rmtree(OUT / p)
    elif (OUT / p).exists():
        (OUT / p).unlink()
basis.save(str(OUT / "eigenmode_basis.joblib"))

# ---- spectral model: maps = smooth age trend + site offset + noise
def cohort(n_subj):
    """Covariates and (n_subj, 64) maps of a cohort."""
    age = rng.uniform(10, 80, n_subj)
    site = rng.choice(["s1", "s2", "s3"], n_subj)
    off = pd.Series(site).map({"s1": 0.0, "s2": 0.3, "s3": -0.2}).to_numpy()
    x = np.linspace(0, 1, n * n)
    maps = (np.sin(age / 20)[:, None] * x[None] + off[:, None]
            + rng.normal(0, 0.2 + 0.002 * age[:, None], (n_subj, n * n)))
    return pd.DataFrame({"age": age, "site": site}), maps

train, train_maps = cohort(80)
test, test_maps = cohort(20)
model = snm.SpectralNormativeModel.build_from_dataframe(
    eigenmode_basis=basis, model_type="HBR", covariates_dataframe=train,
    numerical_covariates=["age"], nonlinear_covariates=["age"], categorical_covariates=["site"],
    batch_covariates=["site"], influencing_mean=["age", "site"], influencing_variance=["age", "site"])
model.base_model.defaults["advi_iterations"] = 300
model.fit(basis.encode(train_maps), train, n_jobs=1, covariance_structure=0.5)
(OUT / "spectral").mkdir()
model.save_model(OUT / "spectral")

queries = basis.encode(np.eye(n * n)).T  # (n_modes, n_queries): every node
sp = model.compute_spectral_predictions(test, n_jobs=1)
pred = model.predict(queries, spectral_predictions=sp)
sp_wo = model.compute_spectral_predictions(test, n_jobs=1, predict_without=["site"])
pred_wo = model.predict(queries, spectral_predictions=sp_wo)
ev = model.evaluate(queries, basis.encode(test_maps), test_covariates=test)

# ---- direct model: the reference's own test
drng = np.random.default_rng(42)
df = pd.DataFrame({f"cat_col_{i}": drng.choice([f"cat_{j}" for j in range(drng.integers(2, 5))], 100)
                   for i in range(2)})
for i in range(2):
    df[f"num_col_{i}"] = drng.random(100)
df["voi"] = df["num_col_0"] * 2 + df["num_col_1"] * 3 + (df["cat_col_0"] == "cat_0").astype(float) * 0.5
direct = snm.DirectNormativeModel.from_dataframe(
    model_type="HBR", dataframe=df, variable_of_interest="voi",
    numerical_covariates=["num_col_0", "num_col_1"], categorical_covariates=["cat_col_0", "cat_col_1"],
    batch_covariates=["cat_col_1"], nonlinear_covariates=["num_col_0"],
    influencing_mean=["num_col_0", "num_col_1", "cat_col_0", "cat_col_1"], influencing_variance=["num_col_1"])
direct.defaults["advi_iterations"] = 100
direct.fit(df, progress_bar=False)
(OUT / "direct").mkdir()
direct.save_model(OUT / "direct")
dpred = direct.predict(df, extended=True)
dpred_wo = direct.predict(df, predict_without=["cat_col_1"])
dharm = direct.harmonize(df, ["cat_col_1"])

train.to_csv(OUT / "spectral_train.csv", index=False)
test.to_csv(OUT / "spectral_test.csv", index=False)
df.to_csv(OUT / "direct_data.csv", index=False)
np.savez(OUT / "reference_predictions.npz",
         test_maps=test_maps, queries=queries,
         eigenmode_mu_estimates=sp["eigenmode_mu_estimates"],
         eigenmode_std_estimates=sp["eigenmode_std_estimates"], rho_estimates=sp["rho_estimates"],
         mu=pred.predictions["mu_estimate"], sd=pred.predictions["std_estimate"],
         mu_without_site=pred_wo.predictions["mu_estimate"], sd_without_site=pred_wo.predictions["std_estimate"],
         z=ev.predictions["z-score"], msll=ev.evaluations["MSLL"],
         direct_mu=dpred.predictions["mu_estimate"], direct_sd=dpred.predictions["std_estimate"],
         direct_z=dpred.predictions["z-score"], direct_mu_without=dpred_wo.predictions["mu_estimate"],
         direct_sd_without=dpred_wo.predictions["std_estimate"], direct_harmonized=dharm)
print("fixtures written to", OUT)
