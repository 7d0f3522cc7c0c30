# %% [markdown]
# # Univariate (direct) normative model
#
# The SpectraNorm "Univariate Model" tutorial's workflow with `from spectranorm_neuro import snm`:
# the same synthetic cohort (a phenotype depending non-linearly on age, with age-dependent spread
# and six site offsets), a `DirectNormativeModel` built with `from_dataframe`, fitted, asked for
# predictions with z-scores and centiles (`predict(..., extended=True)`), evaluated
# (`evaluate(new_data)`), harmonized across sites, saved and loaded, and adapted to a new site
# (`adapt_fit`, in place as in the reference). The data-generation cell is the reference's; the
# later cells use the reference's documented API (the notebook itself holds large embedded
# figures; its text is not reproduced here).
#
# Figures are written to files. `SPECTRANORM_TUTORIAL_FAST=1` runs a reduced cohort.

# %%
import os
import tempfile

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

# Import the SpectraNorm package
from spectranorm_neuro import snm

FAST = os.environ.get("SPECTRANORM_TUTORIAL_FAST") == "1"

# %% [markdown]
# ## Data preparation (the reference's synthetic cohort)

# %%
# Fix the random seed for reproducibility
np.random.seed(42)

sample_size = 1500 if FAST else 5000
data = pd.DataFrame({
    "age": np.random.uniform(20, 80, size=sample_size),
    "site": np.random.choice(["A", "B", "C", "D", "E", "F"], size=sample_size),
})

# Generate a synthetic phenotype
# Let's assume the phenotype is nonlinearly related to age,
# and site effect comes from a normal distribution with mean depending
# on the site and some random noise
site_effects_prior = np.random.normal(0, 5, size=data["site"].nunique())
site_effects = data["site"].map(dict(zip(data["site"].unique(), site_effects_prior)))
phenotype_mean = 0.01 * (
    400 + 1.5 * data["age"] -
    0.01 * (data["age"] - 50)**3 +
    10 * site_effects)
# Heteroscedasticity: variance increases with age
phenotype_std = 0.01 * (10 + 0.8 * data["age"])
data["phenotype"] = np.random.normal(phenotype_mean, phenotype_std)

train = data.iloc[: int(0.8 * sample_size)].reset_index(drop=True)
test = data.iloc[int(0.8 * sample_size):].reset_index(drop=True)
print(data.head())

# %% [markdown]
# ## Model specification and fitting

# %%
model = snm.DirectNormativeModel.from_dataframe(
    model_type="HBR",
    dataframe=train,
    variable_of_interest="phenotype",
    numerical_covariates=["age"],
    categorical_covariates=["site"],
    batch_covariates=["site"],
    nonlinear_covariates=["age"],
    influencing_mean=["age", "site"],
    influencing_variance=["age", "site"],
)
print(model)
model.fit(train)
print("fitted parameters:", sorted(model.model_params))

# %% [markdown]
# ## Predictions, z-scores and centiles

# %%
predictions = model.predict(test, extended=True)
table = predictions.to_dataframe()
print(table.head())
true_z = (test["phenotype"] - phenotype_mean.iloc[len(train):].to_numpy()) / phenotype_std.iloc[len(train):].to_numpy()
print(f"RMSE of z-scores against the true z: {np.sqrt(np.mean((table['z-score'] - true_z) ** 2)):.3f}")

evaluation = model.evaluate(new_data=test)
for key in ("MAE", "RMSE", "R-squared", "Explained Variance", "MSLL"):
    print(f"{key}: {float(evaluation.evaluations[key]):.3f}")

# %% [markdown]
# ## Normative centile chart (population level: without the site effect)

# %%
ages = np.linspace(20, 80, 61)
grid = pd.DataFrame({"age": ages, "site": "A"})
chart = model.predict(grid, predict_without=["site"]).predictions
true_sd = 0.01 * (10 + 0.8 * ages)
print(f"RMSE of the chart sd against the true within-site sd: {np.sqrt(np.mean((chart['std_estimate'] - true_sd) ** 2)):.4f}")
plt.figure(figsize=(6, 4))
harmonized = model.harmonize(test, ["site"])
plt.scatter(test["age"], harmonized, s=3, alpha=0.4, label="harmonized test data")
for z, style in ((0, "-"), (-1.96, "--"), (1.96, "--")):
    plt.plot(ages, chart["mu_estimate"] + z * chart["std_estimate"], "k" + style)
plt.xlabel("age")
plt.ylabel("phenotype")
plt.legend()
plt.savefig("05_centile_chart.png", dpi=80, bbox_inches="tight")
plt.close("all")
within = np.mean(np.abs((harmonized - np.interp(test["age"], ages, chart["mu_estimate"]))
                        / np.interp(test["age"], ages, chart["std_estimate"])) < 1.96)
print(f"fraction of harmonized test data inside the 95% band: {within:.3f}")

# %% [markdown]
# ## Saving, loading and adapting to a new site

# %%
with tempfile.TemporaryDirectory() as folder:
    model.save_model(folder)
    loaded = snm.DirectNormativeModel.load_model(folder)
assert np.allclose(loaded.predict(test).predictions["mu_estimate"], model.predict(test).predictions["mu_estimate"])

new_site = pd.DataFrame({"age": np.random.uniform(20, 80, size=60), "site": "G"})
new_site["phenotype"] = np.random.normal(
    0.01 * (400 + 1.5 * new_site["age"] - 0.01 * (new_site["age"] - 50) ** 3 + 10 * 4.0),
    0.01 * (10 + 0.8 * new_site["age"]))
model.adapt_fit("site", np.array(["G"]), new_site)
adapted = model.predict(new_site, extended=True).predictions["z-score"]
print(f"new site G after adapt_fit: mean z {np.mean(adapted):.2f}, sd of z {np.std(adapted):.2f}")
