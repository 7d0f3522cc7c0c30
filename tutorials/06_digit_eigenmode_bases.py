# %% [markdown]
# # Eigenmode Bases
#
# The SpectraNorm "Eigenmode Bases" tutorial (tutorials/eigenmode_bases/eigenmode_bases.ipynb of the
# reference, 0.1.4) with its import line changed to `from spectranorm_neuro import snm`: a 50 x 50
# lattice graph, its symmetric-normalized Laplacian eigenmodes as an `EigenmodeBasis`, handwritten
# digits encoded in 20 and 100 modes and decoded back, and the basis saved for the spectral-model
# tutorial. The digits cell and the saving cell are the reference's, cell for cell, except that the
# reference downloads MNIST (`fetch_openml`) and upsamples it with scikit-image: this package runs
# offline, so the digits are scikit-learn's bundled 8 x 8 digits, upsampled to 50 x 50 by a small
# `resize` (scipy) defined below. The earlier cells build the lattice and the basis as the
# reference's spectral tutorial describes them (the notebook stores them among large embedded
# figures). Only the reference's API is used: `data/upstream/reference_tutorials.py` runs this
# script on the reference itself and records its numbers, which `tests/test_tutorials.py` compares.
#
# Figures are written to files (the reference calls `plt.show()`).

# %%
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from scipy import ndimage, sparse

# Import the SpectraNorm package
from spectranorm_neuro import snm

FAST = os.environ.get("SPECTRANORM_TUTORIAL_FAST") == "1"  # this tutorial is fast at full size
figure_count = 0


def save_figure(name):
    """Save the current figure (where the reference calls plt.show())."""
    global figure_count
    figure_count += 1
    plt.savefig(f"06_{figure_count:02d}_{name}.png", dpi=60, bbox_inches="tight")
    plt.close("all")


# %% [markdown]
# ## A simple lattice example
# A 50 x 50 lattice graph: every node is connected to its four neighbours.

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
print("nodes:", adjacency_matrix.shape[0], "edges:", adjacency_matrix.nnz // 2)

plt.figure(figsize=(6, 6))
rows, cols = adjacency_matrix.nonzero()
plt.plot(np.stack([nodes[rows, 0], nodes[cols, 0]]), np.stack([nodes[rows, 1], nodes[cols, 1]]), c="gray", lw=0.3)
plt.scatter(nodes[:, 0], nodes[:, 1], s=1, c="k")
plt.axis("off")
save_figure("lattice")

# %% [markdown]
# ## Computing eigenmode bases
# The eigenvectors of the symmetric normalized Laplacian with the smallest eigenvalues vary slowly
# over the graph. As the reference, `num_eigenvalues=100` returns 101 eigenpairs, one mode per row;
# the basis keeps the first 100 (as the spectral tutorial's basis, 100 modes of 2500 nodes).

# %%
eigenvalues, eigenvectors = snm.utils.gsp.compute_symmetric_normalized_laplacian_eigenmodes(
    adjacency_matrix, num_eigenvalues=100)
print("eigenvalues:", eigenvalues.shape, "eigenvectors:", eigenvectors.shape)
print("first eigenvalues:", np.round(eigenvalues[:8], 6))
eigenmode_basis = snm.utils.gsp.EigenmodeBasis(eigenvalues[:100], eigenvectors.T[:, :100])
print(eigenmode_basis)

fig, axes = plt.subplots(2, 6, figsize=(12, 4.5))
for k, ax in enumerate(axes.ravel()):
    ax.imshow(eigenmode_basis.eigenvectors[:, k].reshape(num_nodes, num_nodes), cmap="RdBu_r")
    ax.set_title(f"mode {k}")
    ax.axis("off")
plt.tight_layout()
save_figure("modes")

# %% [markdown]
# ## Using eigenmode bases: encoding and decoding
# Digits (the reference: MNIST; here scikit-learn's bundled digits, see the top), encoded with 20 or
# 100 eigenmodes and decoded back to the lattice.

# %%
from sklearn.datasets import load_digits  # the reference: from sklearn.datasets import fetch_openml


def resize(image, shape, anti_aliasing=True):
    """Linear upsampling of a 2-D image to ``shape`` (the reference uses skimage.transform.resize)."""
    image = ndimage.gaussian_filter(image, 0.5) if anti_aliasing else image
    return ndimage.zoom(image, (shape[0] / image.shape[0], shape[1] / image.shape[1]), order=1)


# 1. Load the digits (bundled with scikit-learn; the reference downloads MNIST here)
print("Loading digits...")
X, y = load_digits(return_X_y=True)

# 2. Extract one sample of each digit (0-9)
digits = []
for i in range(10):
    # Find the first index where the label matches the digit
    idx = np.where(y == i)[0][0]
    # Reshape from flat 64 to 8x8 (MNIST: 784 to 28x28)
    img_28 = X[idx].reshape(8, 8)

    # 3. Resize to 50x50
    # anti_aliasing prevents jagged edges during upscaling
    img_50 = resize(img_28, (50, 50), anti_aliasing=True)

    digits.append(img_50)

# 3. For each digit, encode it using either 20 or 100 eigenmodes, then decode it back
# to the original space to visualize the results
digits_20 = []
digits_100 = []
for digit in digits:
    # Flatten the 50x50 image to a vector of length 2500
    digit_vector = digit.flatten()

    # Encode using the first 20 eigenmodes
    encoded_20 = eigenmode_basis.encode(digit_vector, n_modes=20)
    digits_20.append(eigenmode_basis.decode(encoded_20, n_modes=20).reshape(50, 50))

    # Encode using the first 100 eigenmodes
    encoded_100 = eigenmode_basis.encode(digit_vector, n_modes=100)
    digits_100.append(eigenmode_basis.decode(encoded_100, n_modes=100).reshape(50, 50))

# 4. Visualize the original and reconstructed digits
# We'll use a grid of 3 columns (original, 20 modes, 100 modes) and 10 rows (digits 0-9)
fig, axes = plt.subplots(10, 3, figsize=(6, 20))
for i in range(10):
    # Original digit
    axes[i, 0].imshow(digits[i], cmap="gray")
    axes[i, 0].set_title(f"Original: {i}")
    axes[i, 0].axis("off")

    # Reconstructed with 20 modes
    axes[i, 1].imshow(digits_20[i], cmap="gray")
    axes[i, 1].set_title(f"20 Modes: {i}")
    axes[i, 1].axis("off")

    # Reconstructed with 100 modes
    axes[i, 2].imshow(digits_100[i], cmap="gray")
    axes[i, 2].set_title(f"100 Modes: {i}")
    axes[i, 2].axis("off")

plt.tight_layout()
save_figure("digits")  # the reference: plt.show()

# %%
for i in range(10):
    for n_modes, recon in ((20, digits_20[i]), (100, digits_100[i])):
        error = np.linalg.norm(recon - digits[i]) / np.linalg.norm(digits[i])
        print(f"digit {i} {n_modes:3d} modes: relative reconstruction error {100 * error:.2f}%")

# %% [markdown]
# ## Saving and Loading Eigenmode Bases
# The basis is saved for the spectral-model tutorial (this package writes its safe `.npz` + JSON
# format whatever the file name; it is never a pickle) and loaded back.

# %%
eigenmode_basis.save("eigenmode_basis.joblib")

# %%
loaded_basis = snm.utils.gsp.EigenmodeBasis.load("eigenmode_basis.joblib")
print("loaded basis identical:", bool(np.array_equal(np.asarray(loaded_basis.eigenvectors),
                                                     np.asarray(eigenmode_basis.eigenvectors))))
