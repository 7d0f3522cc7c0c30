# %% [markdown]
# # Univariate Model
#
# The SpectraNorm "Univariate Model" tutorial (tutorials/univariate_model/univariate_model.ipynb of
# the reference, 0.1.4) with its import line changed to `from spectranorm_neuro import snm`. Its
# first cells (imports, the synthetic cohort, `data.head()`) and its last cell (the population
# centile chart with the harmonized test data) are the reference's, cell for cell; the cells in
# between follow the reference notebook's sections (defining, fitting and examining the model,
# extending it to unseen data, evaluating and harmonizing out-of-sample predictions) with the
# reference's API only (the notebook stores them among large embedded figures). Because only the
# reference's API is used, the same script runs on the reference itself with the import switched
# back (`data/upstream/reference_tutorials.py` does so and records its numbers, which
# `tests/test_tutorials.py` compares with this package's). Checks against the known generating
# process (true z, true sd) are printed along the way; a last section adapts the model to a new site.
#
# Figures are written to files (the reference calls `plt.show()`). `SPECTRANORM_TUTORIAL_FAST=1`
# runs a reduced cohort.

# %%
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

# Import the SpectraNorm package
from spectranorm_neuro import snm

FAST = os.environ.get("SPECTRANORM_TUTORIAL_FAST") == "1"
figure_count = 0


def save_figure(name):
    """Save the current figure (where the reference calls plt.show())."""
    global figure_count
    figure_count += 1
    plt.savefig(f"05_{figure_count:02d}_{name}.png", dpi=80, bbox_inches="tight")
    plt.close("all")


# %% [markdown]
# ## Data Preparation
#
# Synthetic data: a phenotype depending non-linearly on age, with a spread growing with age and an
# offset per site (the reference's cell; `sample_size` is reduced in the fast run).

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

# %%
print(data.head())

# %% [markdown]
# The phenotype against age, one colour per site.

# %%
plt.figure(figsize=(12, 8))
for site in sorted(data["site"].unique()):
    subset = data[data["site"] == site]
    plt.scatter(subset["age"], subset["phenotype"], alpha=0.5, label=f"{site}", s=7)
plt.xlabel("Age")
plt.ylabel("Phenotype")
plt.title("Phenotype vs Age by Site")
plt.legend(title="Site")
save_figure("data")

# %% [markdown]
# ## Minimal model fitting example
#
# ### Defining the model
# A hierarchical Bayesian regression: a spline of age and a hierarchical site effect, on the mean
# and on the spread. The first 80% of the cohort trains the model; the rest is unseen data.

# %%
train_data = data.iloc[: int(0.8 * sample_size)].reset_index(drop=True)
test_data = data.iloc[int(0.8 * sample_size):].reset_index(drop=True)

normative_model = snm.DirectNormativeModel.from_dataframe(
    model_type="HBR",
    dataframe=train_data,
    variable_of_interest="phenotype",
    numerical_covariates=["age"],
    categorical_covariates=["site"],
    batch_covariates=["site"],
    nonlinear_covariates=["age"],
    influencing_mean=["age", "site"],
    influencing_variance=["age", "site"],
)
print(normative_model)

# %% [markdown]
# ### Fitting the model

# %%
normative_model.fit(train_data, progress_bar=False)
print("fitted parameters:", sorted(normative_model.model_params))

# %% [markdown]
# ### Examining the fitted model
# #### Visualizing the model fit: the normative range across age (population level, without site)

# %%
xi = np.linspace(20, 80, 100)
moments = normative_model.predict(pd.DataFrame({"age": xi}), predict_without=["site"]).predictions
plt.figure(figsize=(12, 8))
for q1, q2, alpha in [(0.01, 0.99, 0.1), (0.05, 0.95, 0.2), (0.25, 0.75, 0.3)]:
    plt.fill_between(xi, moments["mu_estimate"] + stats.norm.ppf(q1) * moments["std_estimate"],
                     moments["mu_estimate"] + stats.norm.ppf(q2) * moments["std_estimate"], alpha=alpha,
                     color="#448e9c")
plt.plot(xi, moments["mu_estimate"], c="#038da6", lw=4)
plt.xlabel("Age")
plt.ylabel("Phenotype")
save_figure("model_fit")
true_sd = 0.01 * (10 + 0.8 * xi)
print(f"RMSE of the chart sd against the true within-site sd: "
      f"{np.sqrt(np.mean((moments['std_estimate'] - true_sd) ** 2)):.4f}")

# %% [markdown]
# #### Quantitative evaluation of model fit (in sample)

# %%
train_evaluation = normative_model.evaluate(train_data)
for key in ("MAE", "RMSE", "R-squared", "Explained Variance", "MSLL"):
    print(f"train {key}: {float(train_evaluation.evaluations[key]):.3f}")

# %% [markdown]
# ## Extending the model to unseen data

# %%
test_predictions = normative_model.predict(test_data, extended=True)
test_z = test_predictions.predictions["z-score"]
true_z = ((test_data["phenotype"] - phenotype_mean.iloc[len(train_data):].to_numpy())
          / phenotype_std.iloc[len(train_data):].to_numpy())
print(f"RMSE of z-scores against the true z: {np.sqrt(np.mean((test_z - true_z) ** 2)):.3f}")
print(f"test centiles (first 5): {np.round(test_predictions.predictions['centiles'][:5], 3)}")

# %% [markdown]
# ## Quantitative evaluation of out-of-sample predictions

# %%
test_evaluation = normative_model.evaluate(test_data)
for key in ("MAE", "RMSE", "R-squared", "Explained Variance", "MSLL"):
    print(f"test {key}: {float(test_evaluation.evaluations[key]):.3f}")

# %% [markdown]
# ## Visualizing out-of-sample predictions (with harmonization)
# The site effects are removed from the test data (each value keeps its centile), which are then
# drawn over the population normative range.

# %%
test_data["harmonized_phenotype"] = normative_model.harmonize(test_data, ["site"])

# %%
# The first part of the script is copied from the previous visualization section
# this part visualizes the normative range of the phenotype values across age.

fig, ax = plt.subplots(1, 1, figsize=(12, 8))

# 100 evenly spaced age values for prediction
xi = np.linspace(20, 80, 100)

# create dummy dataframe for prediction
dummy_df = pd.DataFrame({
    "age": xi,
})

# Predict moments (mean and std) of the normative distribution
moments = normative_model.predict(dummy_df, predict_without=['site']).predictions

# Let's compute charts along different quantiles
quantiles = [0.001, 0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99, 0.999]

# Predict the phenotype values corresponding to different quantiles
phenotype_quantiles = {
    q: (moments["mu_estimate"] + stats.norm.ppf(q=q) * moments["std_estimate"])
    for q in quantiles
}

# Some colors for the plot
c1 = "#448e9c"  # brighter shade
c2 = "#038da6"  # darker shade

# Plotting shaded ranges for different quantiles
for q1, q2, alpha in [
    (0.001, 0.999, 0.05),
    (0.01, 0.99, 0.1),
    (0.05, 0.95, 0.2),
    (0.25, 0.75, 0.3)]:
    ax.fill_between(
        xi,
        phenotype_quantiles[q1],
        phenotype_quantiles[q2],
        alpha=alpha,
        color=c1,
    )

    # Now add boundary lines with different colors
    ax.plot(xi, phenotype_quantiles[q1], color=c1, lw=0.5, linestyle=":")
    ax.plot(xi, phenotype_quantiles[q2], color=c1, lw=0.5, linestyle=":")

# Finally, add the median line with a different color and higher line width
ax.plot(
    xi,
    phenotype_quantiles[0.5],
    c=c2,
    lw=4,
)

# In addition to the part above, the following add the harmonized phenotype values
# as scatter points along the estimated normative range:
for site in sorted(test_data["site"].unique()):
    subset = test_data[test_data["site"] == site]
    plt.scatter(
        subset["age"], subset["harmonized_phenotype"], alpha=0.5, label=f"{site}", s=7)
plt.xlabel("Age")
plt.ylabel("Phenotype")
plt.title("Phenotype vs Age by Site")
plt.legend(title="Site")
save_figure("harmonized_test_data")  # the reference: plt.show()

# %%
band = np.abs((test_data["harmonized_phenotype"] - np.interp(test_data["age"], xi, moments["mu_estimate"]))
              / np.interp(test_data["age"], xi, moments["std_estimate"])) < stats.norm.ppf(0.975)
print(f"fraction of harmonized test data inside the 95% band: {np.mean(band):.3f}")

# %% [markdown]
# ## Beyond the reference notebook: saving, loading and adapting to a new site

# %%
os.makedirs("univariate_model", exist_ok=True)  # the reference saves into an existing folder
normative_model.save_model("univariate_model")
loaded = snm.DirectNormativeModel.load_model("univariate_model")
assert np.allclose(loaded.predict(test_data).predictions["mu_estimate"],
                   normative_model.predict(test_data).predictions["mu_estimate"])

new_site = pd.DataFrame({"age": np.random.uniform(20, 80, size=60), "site": "G"})
new_site["phenotype"] = np.random.normal(
    0.01 * (400 + 1.5 * new_site["age"] - 0.01 * (new_site["age"] - 50) ** 3 + 10 * 4.0),
    0.01 * (10 + 0.8 * new_site["age"]))
normative_model.adapt_fit("site", np.array(["G"]), new_site, progress_bar=False)
adapted = normative_model.predict(new_site, extended=True).predictions["z-score"]
print(f"new site G after adapt_fit: mean z {np.mean(adapted):.2f}, sd of z {np.std(adapted):.2f}")
