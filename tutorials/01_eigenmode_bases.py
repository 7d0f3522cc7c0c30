# %% [markdown]
# # Eigenmode bases: a lattice, its modes, and compressing images
#
# Spectral normative models never look at pixels or vertices directly: each map is first written in
# an *eigenmode basis*, the low-frequency vibration patterns of the space the data live on. This
# tutorial builds that basis for the 50 x 50 lattice used by the spectral-model tutorial, looks at
# its modes, shows how well 20 and 100 modes reconstruct images of different smoothness, and saves
# and reloads the basis in the package's safe file format.
#
# Figures are written to the working directory. `SPECTRANORM_TUTORIAL_FAST=1` is accepted for
# symmetry with the other tutorials; this one is fast at full size.

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from spectranorm_neuro import snm
from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.graphs.lattice import lattice_graph

# %% [markdown]
# ## The lattice as a graph
# `lattice_graph` connects every pixel to its four neighbours. Nodes are numbered row by row
# (`i * 50 + j`), the same order as `image.ravel()`.

# %%
graph = lattice_graph((50, 50), connectivity=4)
print(graph.n_features, "nodes,", graph.adjacency.nnz // 2, "edges")

# %% [markdown]
# ## Eigenmodes of the graph Laplacian
# The symmetric normalized Laplacian's eigenvectors with the smallest eigenvalues vary slowly over
# the lattice: the first is constant, the next ones are single waves along each axis, and so on.
# The solver uses shift-invert around zero and a fixed start vector, so two runs give the same
# basis, with each mode's sign fixed (its largest entry is positive).

# %%
basis = EigenmodeBasis.from_graph(graph, n_modes=100, laplacian="normalized")
print(basis, "eigenvalues", np.round(basis.eigenvalues[:6], 5))
fig, axes = plt.subplots(2, 6, figsize=(12, 4.5))
for k, ax in enumerate(axes.ravel()):
    ax.imshow(basis.eigenvectors[:, k].reshape(50, 50), cmap="RdBu_r")
    ax.set_title(f"mode {k + 1}")
    ax.axis("off")
plt.tight_layout()
plt.savefig("01_first_modes.png", dpi=80)
plt.close("all")

# %% [markdown]
# The SpectraNorm-style helper gives the same spectrum, modes as rows, with the tutorial's layout
# (as the reference, it returns `num_eigenvalues + 1` modes; within a degenerate eigenvalue the
# modes may be any orthonormal basis of the eigenspace):

# %%
vals, vecs = snm.utils.gsp.compute_symmetric_normalized_laplacian_eigenmodes(graph.adjacency, 100)
same = snm.utils.gsp.EigenmodeBasis(vals[:100], vecs.T[:, :100])
assert np.allclose(same.eigenvalues, basis.eigenvalues)

# %% [markdown]
# ## Encoding and decoding images
# `encode` projects maps on the modes (`Psi.T @ x`), `decode` rebuilds them (`Psi @ c`). A smooth
# image is captured by few modes; a sharp one needs many more. We compare a wide Gaussian blob, a
# narrow one and a square with hard edges, keeping 20 or 100 modes.

# %%
g = np.linspace(0, 1, 50)
X, Y = np.meshgrid(g, g)
images = {
    "wide blob": np.exp(-((X - 0.4) ** 2 + (Y - 0.6) ** 2) / (2 * 0.2**2)),
    "narrow blob": np.exp(-((X - 0.5) ** 2 + (Y - 0.5) ** 2) / (2 * 0.05**2)),
    "square": ((np.abs(X - 0.5) < 0.2) & (np.abs(Y - 0.5) < 0.2)).astype(float),
}
maps = np.stack([im.ravel() for im in images.values()])
errors = {}
fig, axes = plt.subplots(3, 3, figsize=(9, 9))
for row, (name, image) in enumerate(images.items()):
    axes[row, 0].imshow(image, cmap="viridis")
    axes[row, 0].set_title(name)
    for col, k in enumerate((20, 100), start=1):
        recon = basis.decode(basis.encode(image.ravel(), n_modes=k))
        err = np.linalg.norm(recon - image.ravel()) / np.linalg.norm(image.ravel())
        errors[(name, k)] = err
        axes[row, col].imshow(recon.reshape(50, 50), cmap="viridis")
        axes[row, col].set_title(f"{k} modes: error {100 * err:.1f}%")
for ax in axes.ravel():
    ax.axis("off")
plt.tight_layout()
plt.savefig("02_reconstructions.png", dpi=80)
plt.close("all")
for (name, k), err in errors.items():
    print(f"{name:12s} {k:3d} modes: relative error {100 * err:5.1f}%")

# %% [markdown]
# More modes always help, and smoother images need fewer. A band-limited image (a combination of
# the first 100 modes) is reconstructed exactly:

# %%
coeffs = np.random.default_rng(0).normal(size=100)
band_limited = basis.decode(coeffs)
assert np.allclose(basis.encode(band_limited), coeffs)

# %% [markdown]
# ## Saving and loading
# `save` writes one uncompressed `.npz` holding the arrays plus JSON metadata (format version,
# provenance: adapter, parameters, a checksum of the source graph, package version). It is never a
# pickle; `load` detects the format by content and refuses pickles with an explanation, and
# `mmap=True` memory-maps the eigenvectors for very large bases.

# %%
basis.save("lattice_basis.npz", overwrite=True)
loaded = EigenmodeBasis.load("lattice_basis.npz", mmap=True)
assert np.array_equal(np.asarray(loaded.eigenvectors), basis.eigenvectors)
print(loaded.provenance.get("adapter"), loaded.provenance.get("laplacian"), loaded.provenance.get("n_modes"))
