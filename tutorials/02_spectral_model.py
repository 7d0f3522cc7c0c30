# %% [markdown]
# # Spectral normative model on a 2-D lattice
#
# This is the SpectraNorm "Spectral Model" tutorial, run with `spectranorm_neuro`: every step of the
# reference, with only its import line changed to `from spectranorm_neuro import snm`. A hypothetical
# phenotype lives on a 50 x 50 lattice (a tiny "image"). Its normative mean moves, rotates and grows
# with age, its spread grows with the mean and with age, and each of six sites shifts every pixel.
# We project each map on 100 graph eigenmodes, fit one heteroscedastic regression per mode plus
# models of the strongest cross-mode correlations, and then ask the model about any pixel or smooth
# kernel: its normative mean, sd, z-score and centile.
#
# Figures are written to files (the working directory). Set `SPECTRANORM_TUTORIAL_FAST=1` to run the
# whole tutorial on a reduced cohort in a few seconds (the test suite does).

# %%
import os

import matplotlib

matplotlib.use("Agg")

# Several imports used in this notebook
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import sparse, stats

# Import the SpectraNorm package
from spectranorm_neuro import snm

FAST = os.environ.get("SPECTRANORM_TUTORIAL_FAST") == "1"
figure_count = 0


def save_figure(name):
    """Save the current figure next to the tutorial's outputs (the reference calls plt.show())."""
    global figure_count
    figure_count += 1
    plt.savefig(f"{figure_count:02d}_{name}.png", dpi=80, bbox_inches="tight")
    plt.close("all")


# %% [markdown]
# ## 2-D lattice graph
# A 50 x 50 grid of nodes, each connected to its four neighbours.

# %%
# Define the number of nodes along each dimension
num_nodes = 50
# Create a grid of points
x = np.linspace(0, 1, num_nodes)
y = np.linspace(0, 1, num_nodes)
X, Y = np.meshgrid(x, y)
# Flatten the grid to create a list of node coordinates
nodes = np.column_stack((X.flatten(), Y.flatten()))
# Let's create a sparse adjacency matrix to represent the connections between the nodes
adjacency_matrix = sparse.lil_matrix((num_nodes**2, num_nodes**2))
# Connect each node to its immediate neighbors (up, down, left, right)
for i in range(num_nodes):
    for j in range(num_nodes):
        node_index = i * num_nodes + j
        if i > 0:  # Connect to the node above
            adjacency_matrix[node_index, (i - 1) * num_nodes + j] = 1
        if i < num_nodes - 1:  # Connect to the node below
            adjacency_matrix[node_index, (i + 1) * num_nodes + j] = 1
        if j > 0:  # Connect to the node to the left
            adjacency_matrix[node_index, i * num_nodes + (j - 1)] = 1
        if j < num_nodes - 1:  # Connect to the node to the right
            adjacency_matrix[node_index, i * num_nodes + (j + 1)] = 1
# Let's convert the adjacency matrix to a more efficient format for computations
adjacency_matrix = adjacency_matrix.tocsr()

# %% [markdown]
# ## The eigenmode basis
# The reference loads the basis saved by its previous tutorial. We make and save it here, the way
# that tutorial does: the first 100 eigenmodes of the symmetric normalized Laplacian. The file keeps
# the reference's name, but `spectranorm_neuro` writes a safe `.npz` + JSON format (never a pickle),
# detected by content when loading.

# %%
eigenvalues, eigenvectors = snm.utils.gsp.compute_symmetric_normalized_laplacian_eigenmodes(
    adjacency_matrix, num_eigenvalues=100)
snm.utils.gsp.EigenmodeBasis(eigenvalues[:100], eigenvectors.T[:, :100]).save(
    "eigenmode_basis.joblib", overwrite=True)

# %%
eigenmode_basis = snm.utils.gsp.EigenmodeBasis.load("eigenmode_basis.joblib")

# %% [markdown]
# ## A hypothetical normative process
# Each image is a bivariate Gaussian whose centre, angle and axes depend on age, plus a bowl-shaped
# age effect shared by every pixel.


# %%
def generate_bivariate_gaussian_image(center_x, center_y, angle, sigma_major, sigma_minor):
    num_nodes = 50
    x = np.linspace(0, 1, num_nodes)
    y = np.linspace(0, 1, num_nodes)
    X, Y = np.meshgrid(x, y)
    # Create the covariance matrix for the bivariate Gaussian
    theta = np.radians(angle)
    R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    D = np.diag([sigma_major**2, sigma_minor**2])
    covariance_matrix = R @ D @ R.T
    mean = np.array([center_x, center_y])
    # Compute the bivariate Gaussian distribution
    pos = np.dstack((X, Y))
    inv_cov = np.linalg.inv(covariance_matrix)
    norm_const = 1.0 / (np.power(2 * np.pi, 2) * np.sqrt(np.linalg.det(covariance_matrix)))
    diff = pos - mean
    exponent = -0.5 * np.einsum('...i,ij,...j->...', diff, inv_cov, diff)
    return norm_const * np.exp(exponent)


# a function to generate hypothetical images based on a set of
# covariate values (e.g., age)
def generate_hypothetical_images(age, noise_level=1e-6):
    # Define the parameters of the bivariate Gaussian based on the covariates
    center_x = 0.5 + 0.1 * np.cos(age / 10) + np.random.normal(0, noise_level)
    center_y = 0.5 + 0.1 * np.sin(age / 10) + np.random.normal(0, noise_level)
    angle = age / 30 * 180 / np.pi  # Convert to degrees
    sigma_major = 0.25 + 0.02 * np.sin(age / 20) + np.random.normal(0, noise_level)
    sigma_minor = 0.15 - 0.02 * np.sin(age / 20) + np.random.normal(0, noise_level)
    # Generate the bivariate Gaussian image
    return generate_bivariate_gaussian_image(
        center_x, center_y, angle, sigma_major, sigma_minor) + 0.6 * ((age-40)/20)**2


# %%
candidate_ages = np.linspace(10, 80, 8)
hypothetical_images = np.array([
    generate_hypothetical_images(age) for age in candidate_ages])
# Visualize the hypothetical images
fig, axes = plt.subplots(2, len(candidate_ages)//2, figsize=(10, 5))
for i, age in enumerate(candidate_ages):
    row = i // (len(candidate_ages)//2)
    col = i % (len(candidate_ages)//2)
    axes[row, col].imshow(
        hypothetical_images[i].reshape(50, 50),
        cmap="gnuplot2", vmin=0, vmax=3)
    axes[row, col].set_title(f"Age: {age:.1f}")
    axes[row, col].axis("off")
save_figure("normative_process")

# %% [markdown]
# ## Training and test data
# The normative mean is the image above plus half a site effect; the sd is 10% of the mean plus
# 0.01 x age; and one standard-normal draw per subject scales the sd at every pixel. So the true
# z-score of any linear query of a subject's map is that subject's draw: we check our z-scores
# against it at the end.

# %%
# Fix the random seed for reproducibility
np.random.seed(42)
sample_size = 600 if FAST else 3000
data = pd.DataFrame({
    "age": np.random.uniform(10, 80, size=sample_size),
    "site": np.random.choice(["A", "B", "C", "D", "E", "F"], size=sample_size),
})
site_effects_prior = np.random.normal(0, 1, size=data["site"].nunique())
site_effects = data["site"].map(dict(zip(data["site"].unique(), site_effects_prior)))
age_dependent_images = np.array([
    generate_hypothetical_images(age, noise_level=1e-3).flatten()
    for i, age in enumerate(data["age"])
])
phenotype_mean = age_dependent_images + 0.5 * np.array(site_effects)[:, np.newaxis]
phenotype_std = 0.1 * phenotype_mean + np.array([
    0.01 * age for age in data["age"]
])[:, np.newaxis]
train_noise = np.random.normal(0, 1, size=sample_size)
observed_phenotypes = (
    phenotype_mean +
    train_noise[:, np.newaxis] * phenotype_std)
print(phenotype_mean.shape, phenotype_std.shape, observed_phenotypes.shape)

# %%
plt.figure(figsize=(10, 6))
for site in sorted(data["site"].unique()):
    subset = data[data["site"] == site]
    pixel_index = 1000  # Example pixel index to visualize
    plt.scatter(
        subset["age"], observed_phenotypes[subset.index, pixel_index],
        alpha=0.5, label=f"{site}", s=7)
plt.xlabel("Age")
plt.ylabel(f"Phenotype at Pixel {pixel_index}")
plt.title("Phenotype vs Age by Site")
plt.legend(title="Site")
save_figure("pixel_1000_by_site")

# %%
# Fix the random seed for reproducibility
np.random.seed(43)
test_sample_size = 200 if FAST else 1000
test_data = pd.DataFrame({
    "age": np.random.uniform(10, 80, size=test_sample_size),
    "site": np.random.choice(["A", "B", "C", "D", "E", "F"], size=test_sample_size),
})
site_effects = test_data["site"].map(
    dict(zip(data["site"].unique(), site_effects_prior)))
test_age_dependent_images = np.array([
    generate_hypothetical_images(age, noise_level=1e-3).flatten()
    for i, age in enumerate(test_data["age"])
])
test_phenotype_mean = (
    test_age_dependent_images + 0.5 * np.array(site_effects)[:, np.newaxis])
test_phenotype_std = 0.1 * test_phenotype_mean + np.array([
    0.01 * age for age in test_data["age"]
])[:, np.newaxis]
test_noise = np.random.normal(0, 1, size=test_sample_size)
observed_test_phenotypes = (
    test_phenotype_mean +
    test_noise[:, np.newaxis] * test_phenotype_std)

# %% [markdown]
# ## Defining and fitting the spectral model
# The same specification as the reference: an age spline and a hierarchical (partially pooled) site
# effect, both acting on the mean and on the log standard deviation.

# %%
spectral_normative_model = snm.SpectralNormativeModel.build_from_dataframe(
    eigenmode_basis=eigenmode_basis,
    model_type="HBR",
    covariates_dataframe=data,
    numerical_covariates=["age"],
    nonlinear_covariates=["age"],
    categorical_covariates=["site"],
    batch_covariates=["site"],
    influencing_mean=["age", "site"],
    influencing_variance=["age", "site"],
)
print(spectral_normative_model)

# %%
spectral_coefficients_train = np.array([
    observed_phenotypes[i] @ eigenmode_basis.eigenvectors
    for i in range(observed_phenotypes.shape[0])
])
spectral_coefficients_test = np.array([
    observed_test_phenotypes[i] @ eigenmode_basis.eigenvectors
    for i in range(observed_test_phenotypes.shape[0])
])
print(spectral_coefficients_train.shape)

# %%
spectral_normative_model.fit(
    spectral_coeff_train_data=spectral_coefficients_train,
    covariates_dataframe=data,
)


# %% [markdown]
# ## Centile charts for mode 1, before and after harmonization


# %%
def centile_chart(moments, ages, points=None, covariates=None, name="chart"):
    _, ax = plt.subplots(1, 1, figsize=(12, 8))
    quantiles = [0.001, 0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99, 0.999]
    phenotype_quantiles = {
        q: (moments["mu_estimate"][:, 0] + stats.norm.ppf(q=q) * moments["std_estimate"][:, 0])
        for q in quantiles
    }
    c1 = "#448e9c"  # brighter shade
    c2 = "#038da6"  # darker shade
    for q1, q2, alpha in [(0.001, 0.999, 0.05), (0.01, 0.99, 0.1), (0.05, 0.95, 0.2), (0.25, 0.75, 0.3)]:
        ax.fill_between(ages, phenotype_quantiles[q1], phenotype_quantiles[q2], alpha=alpha, color=c1)
        ax.plot(ages, phenotype_quantiles[q1], color=c1, lw=0.5, linestyle=":")
        ax.plot(ages, phenotype_quantiles[q2], color=c1, lw=0.5, linestyle=":")
    ax.plot(ages, phenotype_quantiles[0.5], c=c2, lw=4)
    if points is not None:
        for site in sorted(covariates["site"].unique()):
            subset = covariates[covariates["site"] == site]
            plt.scatter(subset["age"], points[subset.index][:, 0], alpha=0.5, label=f"{site}", s=7)
    plt.xlabel("Age")
    plt.ylabel("Phenotype on Mode 1")
    plt.title("Phenotype vs Age")
    save_figure(name)


# let's define queries for the first modes
n_queries = 100
encoded_queries = np.zeros((spectral_normative_model.model_params["n_modes"], n_queries))
np.fill_diagonal(encoded_queries, 1)
ages = np.linspace(10, 80, 200)
dummy_df = pd.DataFrame({"age": ages})
predicted_spectral_moments = spectral_normative_model.predict(
    encoded_query=encoded_queries[:n_queries],
    test_covariates=dummy_df, predict_without=['site'],
    n_modes=n_queries,  # to simplify the inference
).predictions
centile_chart(predicted_spectral_moments, ages, name="mode1_chart")
centile_chart(predicted_spectral_moments, ages, spectral_coefficients_train, data, name="mode1_chart_raw")

# %%
harmonized_spectral_coefficients_train = spectral_normative_model.harmonize(
    encoded_query=encoded_queries[:n_queries],
    covariates_dataframe=data,
    spectral_coeff_data=spectral_coefficients_train[:, :n_queries],
    covariates_to_harmonize=["site"],
    n_modes=n_queries,  # to simplify the inference
)
centile_chart(predicted_spectral_moments, ages, harmonized_spectral_coefficients_train, data,
              name="mode1_chart_harmonized_train")

# %% [markdown]
# ## Pixel-level queries: normative images vs the truth
# A Gaussian kernel centred on each pixel is a smooth spatial query; its encoding in the basis lets
# the spectral model answer for every pixel at once.

# %%
from sklearn.preprocessing import normalize  # noqa: F401  (imported by the reference tutorial)

gaussian_sigma = 0.05  # Adjust the sigma for the Gaussian kernel
pixel_queries = []
for i in range(2500):
    query = np.exp(
        -(
            (X - x[i % num_nodes])**2 +
            (Y - y[i // num_nodes])**2
        ) / (2 * gaussian_sigma**2)).flatten()
    pixel_queries.append(query / np.sum(query))  # Normalize the query to sum to 1
pixel_queries = np.array(pixel_queries)
pixel_queries_encoded = eigenmode_basis.encode(pixel_queries).T
candidate_dummy_df = pd.DataFrame({"age": candidate_ages})
candidate_predictions = spectral_normative_model.predict(
    encoded_query=pixel_queries_encoded,
    test_covariates=candidate_dummy_df, predict_without=['site'],
).predictions
fig, axes = plt.subplots(len(candidate_ages), 2, figsize=(5, 20))
for i, age in enumerate(candidate_ages):
    axes[i, 0].imshow(candidate_predictions["mu_estimate"][i].reshape(50, 50), cmap="gnuplot2", vmin=0, vmax=3.5)
    axes[i, 0].set_title(f"Age: {age:.1f}")
    axes[i, 0].axis("off")
    axes[i, 1].imshow(
        eigenmode_basis.decode(eigenmode_basis.encode(hypothetical_images[i].flatten() @ pixel_queries.T)).reshape(50, 50),
        cmap="gnuplot2", vmin=0, vmax=3.5)
    axes[i, 1].set_title(f"Age: {age:.1f}")
    axes[i, 1].axis("off")
plt.suptitle("Predicted (left) vs Ground Truth (right) Images", fontsize=16, y=0.99)
save_figure("pixel_means_vs_truth")

# %% [markdown]
# ## Goodness of fit: MSLL on training and test data
# Negative MSLL means the model predicts better than a trivial Gaussian that ignores covariates. For
# test data we pass the training moments of each query, as the reference recommends.

# %%
training_performance = spectral_normative_model.evaluate(
    encoded_query=pixel_queries_encoded,
    spectral_coeff_test_data=spectral_coefficients_train,
    test_covariates=data,
)
test_performance = spectral_normative_model.evaluate(
    encoded_query=pixel_queries_encoded,
    spectral_coeff_test_data=spectral_coefficients_test,
    test_covariates=test_data,
    query_train_moments=np.array([
        np.mean(spectral_coefficients_train @ pixel_queries_encoded, axis=0),
        np.std(spectral_coefficients_train @ pixel_queries_encoded, axis=0, ddof=1),
    ]),
)
for label, perf in (("train", training_performance), ("test", test_performance)):
    plt.figure(figsize=(10, 6))
    plt.hist(perf.evaluations["MSLL"], bins=50, color="skyblue", edgecolor="black")
    plt.xlabel("MSLL")
    plt.ylabel("Frequency")
    plt.title(f"Histogram of MSLL across Queried Pixels ({label})")
    plt.axvline(0, color="red", linestyle="--", label="MSLL = 0")
    plt.legend()
    save_figure(f"msll_{label}")
print("median test MSLL:", np.median(test_performance.evaluations["MSLL"]))

# %%
harmonized_spectral_coefficients_test = spectral_normative_model.harmonize(
    encoded_query=encoded_queries[:n_queries],
    covariates_dataframe=test_data,
    spectral_coeff_data=spectral_coefficients_test[:, :n_queries],
    covariates_to_harmonize=["site"],
)
centile_chart(predicted_spectral_moments, ages, harmonized_spectral_coefficients_test, test_data,
              name="mode1_chart_harmonized_test")

# %% [markdown]
# ## Saving and loading the model
# `save_model` writes a directory of JSON and `.npz` files with a checksummed manifest; `load_model`
# verifies it and gives back a model that predicts identically.

# %%
from pathlib import Path

model_save_path = Path("./tmp_directory")
model_save_path.mkdir(exist_ok=True)
if any(model_save_path.iterdir()):
    msg = (
        f"The directory {model_save_path} is not empty. "
        f"Please provide an empty directory for saving the model."
    )
    raise ValueError(msg)
spectral_normative_model.save_model(model_save_path)
loaded_spectral_normative_model = snm.SpectralNormativeModel.load_model(model_save_path)

# %% [markdown]
# ## Beyond the reference: z-scores against the known truth
# Because the generative process is known, every test subject's true z-score is its noise draw,
# identical for every query. We compare the model's pixel-query z-scores with it.

# %%
z_scores = test_performance.predictions["z-score"]
z_rmse = float(np.sqrt(np.mean((z_scores - test_noise[:, None]) ** 2)))
print(f"RMSE of z-scores against the true z: {z_rmse:.3f}")
plt.figure(figsize=(6, 6))
plt.scatter(np.repeat(test_noise, 25), z_scores[:, ::100].ravel(), s=2, alpha=0.3)
plt.plot([-3, 3], [-3, 3], color="red")
plt.xlabel("true z")
plt.ylabel("model z (every 100th pixel)")
plt.title(f"z-scores vs truth (RMSE {z_rmse:.3f})")
save_figure("z_vs_truth")
reloaded_z = loaded_spectral_normative_model.evaluate(
    pixel_queries_encoded, spectral_coefficients_test, test_covariates=test_data).predictions["z-score"]
assert np.array_equal(reloaded_z, z_scores)
