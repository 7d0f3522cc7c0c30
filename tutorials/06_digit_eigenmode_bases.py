# %% [markdown]
# # Eigenmode bases of a lattice, and images encoded in them
#
# The SpectraNorm "Eigenmode Bases" tutorial's workflow with `from spectranorm_neuro import snm`: a
# lattice graph built as in the reference (a `scipy.sparse.lil_matrix` adjacency), its
# symmetric-normalized Laplacian eigenmodes (`snm.utils.gsp`), an `EigenmodeBasis` saved and
# loaded, and handwritten digits encoded and decoded with more and more modes. The reference
# downloads MNIST; this package needs no network, so the digits are scikit-learn's bundled 8 x 8
# digits (1797 images, shipped with scikit-learn) on an 8 x 8 lattice.
#
# Figures are written to files. `SPECTRANORM_TUTORIAL_FAST=1` uses fewer images.

# %%
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from scipy import sparse
from sklearn.datasets import load_digits

# Import the SpectraNorm package
from spectranorm_neuro import snm

FAST = os.environ.get("SPECTRANORM_TUTORIAL_FAST") == "1"

# %% [markdown]
# ## A lattice graph (as in the reference)

# %%
num_nodes = 8
adjacency_matrix = sparse.lil_matrix((num_nodes**2, num_nodes**2))
for i in range(num_nodes):
    for j in range(num_nodes):
        node_index = i * num_nodes + j
        if i > 0:
            adjacency_matrix[node_index, (i - 1) * num_nodes + j] = 1
        if i < num_nodes - 1:
            adjacency_matrix[node_index, (i + 1) * num_nodes + j] = 1
        if j > 0:
            adjacency_matrix[node_index, i * num_nodes + (j - 1)] = 1
        if j < num_nodes - 1:
            adjacency_matrix[node_index, i * num_nodes + (j + 1)] = 1
adjacency_matrix = adjacency_matrix.tocsr()

# %% [markdown]
# ## Eigenmodes and the basis
#
# As in the reference, `num_eigenvalues + 1` eigenpairs are returned, one mode per row.

# %%
eigenvalues, eigenvectors = snm.utils.gsp.compute_symmetric_normalized_laplacian_eigenmodes(
    adjacency_matrix, num_eigenvalues=62)
print("eigenvalues:", eigenvalues.shape, "eigenvectors:", eigenvectors.shape)
eigenmode_basis = snm.utils.gsp.EigenmodeBasis(eigenvalues, eigenvectors.T)
print(eigenmode_basis)
eigenmode_basis.save("eigenmode_basis.joblib", overwrite=True)  # this package's safe format, whatever the name
eigenmode_basis = snm.utils.gsp.EigenmodeBasis.load("eigenmode_basis.joblib")

fig, axes = plt.subplots(2, 8, figsize=(12, 3))
for k, ax in enumerate(axes.ravel()):
    ax.imshow(eigenmode_basis.eigenvectors[:, k].reshape(num_nodes, num_nodes), cmap="RdBu_r")
    ax.set_title(f"mode {k + 1}", fontsize=8)
    ax.axis("off")
plt.savefig("06_modes.png", dpi=80, bbox_inches="tight")
plt.close("all")

# %% [markdown]
# ## Encoding and decoding digits

# %%
digits = load_digits().images.reshape(-1, num_nodes**2)
if FAST:
    digits = digits[:300]
encoded = eigenmode_basis.encode(digits)
print("encoded digits:", encoded.shape)
errors = {}
for n_modes in (4, 16, 32, 63):
    decoded = eigenmode_basis.decode(encoded, n_modes=n_modes)
    errors[n_modes] = np.linalg.norm(decoded - digits) / np.linalg.norm(digits)
    print(f"{n_modes:2d} modes: relative reconstruction error {100 * errors[n_modes]:.1f}%")
assert errors[63] < errors[32] < errors[16] < errors[4]
assert errors[63] < 0.05  # 63 of 64 modes: only the highest-frequency mode is dropped

fig, axes = plt.subplots(1, 5, figsize=(10, 2.5))
axes[0].imshow(digits[0].reshape(num_nodes, num_nodes), cmap="gray_r")
axes[0].set_title("digit")
for ax, n_modes in zip(axes[1:], (4, 16, 32, 63)):
    ax.imshow(eigenmode_basis.decode(encoded[:1], n_modes=n_modes).reshape(num_nodes, num_nodes), cmap="gray_r")
    ax.set_title(f"{n_modes} modes")
for ax in axes:
    ax.axis("off")
plt.savefig("06_reconstructions.png", dpi=80, bbox_inches="tight")
plt.close("all")

# %% [markdown]
# ## A random-walk basis (modes orthonormal against the degree matrix)

# %%
rw_values, rw_vectors, degrees = snm.utils.gsp.compute_random_walk_laplacian_eigenmodes(adjacency_matrix, 62)
rw_basis = snm.utils.gsp.EigenmodeBasis(rw_values, rw_vectors.T, mass_matrix=sparse.diags(degrees))
roundtrip = rw_basis.decode(rw_basis.encode(digits[:5]))
print(f"random-walk basis, all modes but one: relative error "
      f"{100 * np.linalg.norm(roundtrip - digits[:5]) / np.linalg.norm(digits[:5]):.1f}%")
print("inverted eigenvectors:", rw_basis.inverted_eigenvectors().shape)
