# %% [markdown]
# # Eigenmode Bases
#
# Provenance: the SpectraNorm tutorial "Eigenmode Bases"
# (`tutorials/eigenmode_bases/eigenmode_bases.ipynb` of github.com/sina-mansour/spectranorm,
# commit 13295f5), ported cell by cell; only the import and the data source changed.
#
# Each `# %%` section below is one code cell of the notebook (its number in the notebook is
# given), with the notebook's calls and arguments. Departures, each marked `# port:` where it is:
# - the import line: `from spectranorm_neuro import snm` (the notebook: `from spectranorm import snm`);
# - the data source: the notebook downloads MNIST (`sklearn.datasets.fetch_openml`, 28 x 28
#   digits) and upsamples with `skimage.transform.resize`; this package runs offline, so the digits
#   are scikit-learn's bundled 8 x 8 digits (`load_digits`), upsampled to 50 x 50 by a `resize`
#   defined here with scipy (scikit-image is not a dependency);
# - figures are written to PNG files (`06_NN_name.png`) where the notebook shows them;
# - a value the notebook displays as a cell's last expression is printed;
# - one section added at the end (not in the notebook) prints the numbers that are compared with
#   the reference (eigenvalues, each digit's reconstruction error) and loads the saved basis back.
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
    """Write the current figure to ``06_NN_name.png`` (where the notebook shows it)."""
    global figure_count
    figure_count += 1
    plt.savefig(f"06_{figure_count:02d}_{name}.png", dpi=40, bbox_inches="tight")
    plt.close("all")


# %% [markdown]
# ## A simple lattice example (notebook cell 2)
#
# A 50 x 50 lattice graph (2,500 nodes covering the unit square), every node connected to its
# four neighbours, as a sparse adjacency matrix.

# %%
# Several imports used in this notebook
import matplotlib.pyplot as plt
import numpy as np
from scipy import sparse

# Import the SpectraNorm package
from spectranorm_neuro import snm  # port: the notebook imports `from spectranorm import snm`

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

# Plot the lattice structure and the connections between the nodes
plt.figure(figsize=(10, 10))

# Plot the nodes
plt.scatter(nodes[:, 0], nodes[:, 1], color="teal", s=10, label="Nodes", zorder=2)

# Plot the connections
for i in range(num_nodes**2):
    neighbors = adjacency_matrix[i].nonzero()[1]
    for neighbor in neighbors:
        plt.plot(
            [nodes[i, 0],
             nodes[neighbor, 0]],
             [nodes[i, 1], nodes[neighbor, 1]],
             color="gray", linewidth=0.5, zorder=1,
        )

# Legend outside the axis
plt.legend(loc="upper center", bbox_to_anchor=(0.5, 1.05))
save_figure("lattice")  # port: the notebook: plt.show()

# %% [markdown]
# ## Computing Eigenmode Bases (notebook cell 4)
#
# The first 100 eigenmodes of the graph's symmetric normalized Laplacian (the lowest
# frequencies), stored in an `EigenmodeBasis`.

# %%
# Let's first compute the eigenvalues and eigenvectors of the graph Laplacian
(
    eigenvalues, eigenvectors
) = snm.utils.gsp.compute_symmetric_normalized_laplacian_eigenmodes(
    adjacency_matrix=adjacency_matrix,
    num_eigenvalues=100,
)

# Now let's store the outputs in an `EigenmodeBasis` object
eigenmode_basis = snm.utils.gsp.EigenmodeBasis(
    eigenvalues=eigenvalues[:100],
    eigenvectors=eigenvectors.T[:, :100],
)

print(eigenmode_basis)  # port: the notebook displays `eigenmode_basis`

# %% [markdown]
# The first 25 eigenmodes as images (notebook cell 6).

# %%
# Let's use gridspec to visualize the first few eigenmodes as images
fig, axes = plt.subplots(5, 5, figsize=(15, 15))

for i in range(25):
    ax = axes[i // 5, i % 5]
    eigenmode = eigenmode_basis.eigenvectors[:, i].reshape(num_nodes, num_nodes)
    ax.imshow(eigenmode, cmap="Spectral")
    ax.set_title(f"Eigenmode {i + 1}")
    ax.axis("off")
save_figure("first_modes")  # port: the notebook shows the figure

# %% [markdown]
# The last 25 of the 100 eigenmodes (notebook cell 7).

# %%
# Let's use gridspec to visualize the last few eigenmodes as images
fig, axes = plt.subplots(5, 5, figsize=(15, 15))

for i in range(25):
    ax = axes[i // 5, i % 5]
    eigenmode = eigenmode_basis.eigenvectors[:, -25 + i].reshape(num_nodes, num_nodes)
    ax.imshow(eigenmode, cmap="Spectral")
    ax.set_title(f"Eigenmode {eigenmode_basis.eigenvectors.shape[1] - 25 + i + 1}")
    ax.axis("off")
save_figure("last_modes")  # port: the notebook shows the figure

# %% [markdown]
# ## Encoding and Decoding with Eigenmode Bases (notebook cell 9)
#
# One image of each digit, encoded with 20 or 100 eigenmodes and decoded back to the lattice.

# %%
from scipy import ndimage  # port: for `resize` below (the notebook: from skimage.transform import resize)
from sklearn.datasets import load_digits  # port: the notebook: from sklearn.datasets import fetch_openml


def resize(image, output_shape, anti_aliasing=True):
    """Upsample a 2-D image to ``output_shape`` (port: stands in for ``skimage.transform.resize``).

    A light Gaussian pre-filter when ``anti_aliasing``, then linear interpolation.
    """
    image = ndimage.gaussian_filter(image, 0.5) if anti_aliasing else image
    zoom = (output_shape[0] / image.shape[0], output_shape[1] / image.shape[1])
    return ndimage.zoom(image, zoom, order=1)


# 1. Load MNIST data (this may take a minute the first time)
# port: the bundled digits instead of the MNIST download
print("Loading digits...")  # port: the notebook prints "Fetching MNIST..."
X, y = load_digits(return_X_y=True)  # port: the notebook: fetch_openml("mnist_784", ...) data and target

# 2. Extract one sample of each digit (0-9)
digits = []
for i in range(10):
    # Find the first index where the label matches the digit
    idx = np.where(y == i)[0][0]
    # Reshape from flat 784 to 28x28
    img_28 = X[idx].reshape(8, 8)  # port: the bundled digits are 8 x 8 (MNIST: 28 x 28)

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
save_figure("digits")  # port: the notebook: plt.show()

# %% [markdown]
# ## Saving and Loading Eigenmode Bases (notebook cell 11)
#
# The basis is saved for the spectral-model tutorial (`02_spectral_model.py` loads it). This
# package writes its own safe format (npz + JSON, never a pickle) whatever the file name, and never
# replaces an existing file unless asked (`overwrite=True`): run again in the same folder, this cell
# stops with an error naming that fix, where the reference silently replaces the file.

# %%
eigenmode_basis.save("eigenmode_basis.joblib")

# %% [markdown]
# ## Added by this port (not in the notebook): the numbers compared with the reference
#
# The eigenvalues and eigenvector shapes, how well each digit is reconstructed with 20 and with
# 100 modes, and the saved basis loaded back (`EigenmodeBasis.load`, which the notebook names).

# %%
print("eigenvalues:", eigenvalues.shape, "eigenvectors:", eigenvectors.shape)
print("first eigenvalues:", " ".join(f"{abs(v) if abs(v) < 5e-7 else v:.6f}" for v in eigenvalues[:8]))
# the 20th and 21st, and the 100th and 101st eigenvalues differ, so the 20- and 100-mode subspaces
# are unique: the reconstructions do not depend on the solver's choice within degenerate eigenspaces
print("eigenvalues 20 and 21:", " ".join(f"{v:.6f}" for v in eigenvalues[19:21]))
print("eigenvalues 100 and 101:", " ".join(f"{v:.6f}" for v in eigenvalues[99:101]))
for i in range(10):
    for n_modes, recon in ((20, digits_20[i]), (100, digits_100[i])):
        error = np.linalg.norm(recon - digits[i]) / np.linalg.norm(digits[i])
        print(f"digit {i} {n_modes:3d} modes: relative reconstruction error {100 * error:.2f}%")
loaded_basis = snm.utils.gsp.EigenmodeBasis.load("eigenmode_basis.joblib")
print("loaded basis identical:", bool(np.array_equal(np.asarray(loaded_basis.eigenvectors),
                                                     np.asarray(eigenmode_basis.eigenvectors))))
