# %% [markdown]
# # Univariate Model
#
# Provenance: the SpectraNorm tutorial "Univariate Model"
# (`tutorials/univariate_model/univariate_model.ipynb` of github.com/sina-mansour/spectranorm,
# commit 13295f5), ported cell by cell; only the import and the data source changed. Here the
# data source is unchanged too: the notebook generates its synthetic cohort itself.
#
# Each `# %%` section below is one code cell of the notebook (its number in the notebook is
# given), with the notebook's calls and arguments. Departures, each marked `# port:` where it is:
# - the import line: `from spectranorm_neuro import snm` (the notebook: `from spectranorm import snm`);
# - figures are written to PNG files (`05_NN_name.png`) where the notebook shows them;
# - a value the notebook displays as a cell's last expression is printed;
# - one section added at the end (not in the notebook) checks the fit against the known
#   generating process.
#
# Because the cells use only the reference's API, this script also runs on the reference itself
# with the import switched back: `data/upstream/reference_tutorials.py` does so and records what
# it prints, and `tests/test_tutorials.py` compares this package's numbers with it.

# %%
# port: not a notebook cell. Figures go to files.
import matplotlib

matplotlib.use("Agg")

figure_count = 0


def save_figure(name):
    """Write the current figure to ``05_NN_name.png`` (where the notebook shows it)."""
    global figure_count
    figure_count += 1
    plt.savefig(f"05_{figure_count:02d}_{name}.png", dpi=60, bbox_inches="tight")
    plt.close("all")


# %% [markdown]
# ## Importing Libraries (notebook cell 3)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

# Import the SpectraNorm package
from spectranorm_neuro import snm  # port: the notebook imports `from spectranorm import snm`

# %% [markdown]
# ## Data Preparation (notebook cell 5)
#
# Here, we will generate synthetic data to illustrate the process of fitting a univariate
# normative model.

# %%
# Fix the random seed for reproducibility
np.random.seed(42)

sample_size = 5000
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

# %% [markdown]
# (notebook cell 6)

# %%
print(data.head())  # port: the notebook displays `data.head()`

# %% [markdown]
# The phenotype against age, one colour per site (notebook cell 8).

# %%
plt.figure(figsize=(10, 6))
for site in sorted(data["site"].unique()):
    subset = data[data["site"] == site]
    plt.scatter(subset["age"], subset["phenotype"], alpha=0.5, label=f"{site}", s=7)
plt.xlabel("Age")
plt.ylabel("Phenotype")
plt.title("Phenotype vs Age by Site")
plt.legend(title="Site")
save_figure("data")  # port: the notebook: plt.show()

# %% [markdown]
# ## Minimal model fitting example
# ### Defining the model (notebook cell 10)

# %%
# Define the normative model:
normative_model = snm.DirectNormativeModel.from_dataframe(
    # Hierarchical Bayesian Regression (use a hierarchical prior on batch effects)
    model_type="HBR",
    # Pass the dataframe containing all covariates and the target variable of interest
    dataframe=data,
    # Specify the name of the target variable (the variable we want to model)
    variable_of_interest="phenotype",
    # Specify the numerical covariates to include in the model
    numerical_covariates=["age"],
    # Specify which numerical covariates are modeled as nonlinear effects (B-splines)
    nonlinear_covariates=["age"],
    # Specify the categorical covariates included in the model (including batch effects)
    categorical_covariates=["site"],
    # Specify whether any categorical covariates should be treated as batch effects
    batch_covariates=["site"],
    # Specify which covariates influence the mean of the target variable
    influencing_mean=["age", "site"],
    # Specify which covariates influence the variance of the target variable
    influencing_variance=["age", "site"],
)

print(normative_model)  # port: the notebook displays `normative_model`

# %% [markdown]
# ### Fitting the model (notebook cell 12)

# %%
# Fit the normative model to the training data
normative_model.fit(train_data=data)

# %% [markdown]
# ### Examining the fitted model
# #### Visualizing the model fit (notebook cell 14): the normative range across age, without site

# %%
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
plt.xlabel("Age")
plt.ylabel("Phenotype")
plt.title("Phenotype vs Age")  # port: the notebook ends this line with ";" (hides the text output)
save_figure("model_fit")  # port: the notebook shows the figure

# %% [markdown]
# The fitted normative range next to the true one of the synthetic data (notebook cell 16).

# %%
# A figure with two subplots:
# one showing the fitted normative model with shaded quantile ranges, and
# another showing the true underlying distribution of the synthetic data for comparison

fig, axes = plt.subplots(1, 2, figsize=(18, 8))

# First axis: Fitted normative model with shaded quantile ranges
ax = axes[0]

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
ax.set_xlabel("Age")
ax.set_ylabel("Phenotype")
ax.set_title("Phenotype vs Age (Fitted Normative Model)")

# Second axis: True underlying distribution of the synthetic data
# (after disregarding site effects)
ax = axes[1]
synthetic_mean = 0.01 * (
    400 + 1.5 * xi -
    0.01 * (xi - 50)**3)
synthetic_std = 0.01 * (10 + 0.8 * xi)

# Compute true quantiles of the synthetic distribution
synthetic_quantiles = {
    q: (synthetic_mean + stats.norm.ppf(q=q) * synthetic_std)
    for q in quantiles
}

# Some colors for the plot
c1 = "#609c44"  # brighter shade
c2 = "#0ea603"  # darker shade

# Plotting shaded ranges for different quantiles
for q1, q2, alpha in [
    (0.001, 0.999, 0.05),
    (0.01, 0.99, 0.1),
    (0.05, 0.95, 0.2),
    (0.25, 0.75, 0.3)]:
    ax.fill_between(
        xi,
        synthetic_quantiles[q1],
        synthetic_quantiles[q2],
        alpha=alpha,
        color=c1,
    )

    # Now add boundary lines with different colors
    ax.plot(xi, synthetic_quantiles[q1], color=c1, lw=0.5, linestyle=":")
    ax.plot(xi, synthetic_quantiles[q2], color=c1, lw=0.5, linestyle=":")

# Finally, add the median line with a different color and higher line width
ax.plot(
    xi,
    synthetic_quantiles[0.5],
    c=c2,
    lw=4,
)
ax.set_xlabel("Age")
ax.set_ylabel("Phenotype")
ax.set_title("Phenotype vs Age (ground truth)")

plt.tight_layout()
save_figure("fit_vs_ground_truth")  # port: the notebook shows the figure

# %% [markdown]
# #### Quantitative evaluation of model fit (notebook cell 18): predict, then evaluate

# %%
# First, we'll predict the normative ranges for the training data:
# Note that the predict method will only require the covariates as input
train_predictions = normative_model.predict(data[["age", "site"]])

# Now we can evaluate how well the model captures the variability in the target variable
train_predictions.evaluate_predictions(  # noqa: B018 (the cell's displayed value)
    variable_of_interest=data["phenotype"].to_numpy(),
    train_mean=normative_model.model_params["mean_VOI"],
    train_std=normative_model.model_params["std_VOI"],
    n_params=normative_model.model_params["n_params"],
).evaluations
# port: the notebook displays the dict above (`evaluate_predictions` fills `train_predictions` in place)
print("train evaluations (predict + evaluate_predictions):", train_predictions.evaluations)

# %% [markdown]
# The same with `evaluate` (notebook cell 19).

# %%
# Alternatively, we can simply use the model's built-in method to evaluate
# goodness-of-fit with a one-liner (note that the target variable is passed to
# the evaluate method):
print("train evaluations (evaluate):", normative_model.evaluate(data).evaluations)  # port: displayed there

# %% [markdown]
# ### Extending the model to unseen data (notebook cell 21)
#
# New synthetic data from the same distribution.

# %%
# Fix the random seed for reproducibility
np.random.seed(42)

test_sample_size = 5000
test_data = pd.DataFrame({
    "age": np.random.uniform(20, 80, size=test_sample_size),
    "site": np.random.choice(["A", "B", "C", "D", "E", "F"], size=test_sample_size),
})

# Generate the synthetic phenotype
# We'll use the same underlying distribution as before
test_site_effects = test_data["site"].map(
    dict(zip(data["site"].unique(), site_effects_prior)))
test_phenotype_mean = 0.01 * (
    400 + 1.5 * test_data["age"] -
    0.01 * (test_data["age"] - 50)**3
    + 10 * test_site_effects)
test_phenotype_std = 0.01 * (10 + 0.8 * test_data["age"])
test_data["phenotype"] = np.random.normal(test_phenotype_mean, test_phenotype_std)

# %% [markdown]
# ### Quantitative evaluation of out-of-sample predictions (notebook cell 23)

# %%
# We'll use the evaluate method for brevity here,
# but we can also break it down to prediction + evaluation
# similar to the training data if we want
test_predictions = normative_model.evaluate(test_data)

print("test evaluations:", test_predictions.evaluations)  # port: the notebook displays the dict

# %% [markdown]
# ### Visualizing out-of-sample predictions (with harmonization) (notebook cell 25)

# %%
# Let's first compute the harmonized phenotype values by removing the estimated
# site effects from the observed phenotype values
test_data["harmonized_phenotype"] = normative_model.harmonize(
    # The dataframe containing the covariates and the target variable
    data=test_data,
    # The list of covariates to harmonize (partial out)
    covariates_to_harmonize=["site"],
)

# %% [markdown]
# The harmonized test data over the normative range (notebook cell 27).

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
save_figure("harmonized_test_data")  # port: the notebook: plt.show()

# %% [markdown]
# ## Added by this port (not in the notebook): the fit against the known generating process
#
# The notebook compares the fitted and the true centiles by eye (cell 16); here the same
# comparison in numbers, with the reference's API only, so that the reference's run records them
# too: the population chart's sd against the true within-site sd, the test z-scores against the
# true z, and the share of harmonized test values inside the chart's central 95% band.

# %%
print(f"RMSE of the chart sd against the true within-site sd: "
      f"{np.sqrt(np.mean((moments['std_estimate'] - synthetic_std) ** 2)):.4f}")
test_z = normative_model.predict(test_data, extended=True).predictions["z-score"]
true_z = (test_data["phenotype"] - test_phenotype_mean) / test_phenotype_std
print(f"RMSE of z-scores against the true z: {np.sqrt(np.mean((test_z - true_z) ** 2)):.4f}")
band_z = ((test_data["harmonized_phenotype"] - np.interp(test_data["age"], xi, moments["mu_estimate"]))
          / np.interp(test_data["age"], xi, moments["std_estimate"]))
print(f"fraction of harmonized test data inside the 95% band: {np.mean(np.abs(band_z) < stats.norm.ppf(0.975)):.4f}")
