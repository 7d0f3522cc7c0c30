# %% [markdown]
# # A normative model of cortical thickness on fsaverage5
#
# The lattice of the first two tutorials stands in for a brain; here is the real geometry. We take
# the fsaverage5 cortical surface that ships with nilearn (no download), compute its
# Laplace-Beltrami (LBO) eigenmodes with lapy, and fit a spectral normative model to a synthetic
# thickness cohort scanned at three sites. Because the cohort is drawn from a known normative
# process, with a focal thinning planted in each patient, we can check every answer the model
# gives: vertex z-scores against the true ones, and whether the planted lesions stand out at the
# vertex and at the parcel level. The z-maps are written as GIFTI files that any surface viewer
# opens, and the tutorial ends with an HTML deviation report.
#
# Figures and files are written to the working directory. `SPECTRANORM_TUTORIAL_FAST=1` runs a
# reduced version (fewer modes, subjects and parcels) in well under a minute.

# %%
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
from nilearn import datasets, plotting

from spectranorm_neuro import snm
from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.datasets import DemoProcess
from spectranorm_neuro.graphs import fsaverage5_cortex_mask, fsaverage5_graph, load_surface, node_areas
from spectranorm_neuro.io import atlas_queries, read_gifti, vertex_queries, write_map, write_parcel_table
from spectranorm_neuro.report import generate_report

FAST = os.environ.get("SPECTRANORM_TUTORIAL_FAST") == "1"
N_MODES = 60 if FAST else 200  # modes over both hemispheres
N_TRAIN = 200 if FAST else 600  # healthy reference subjects (three sites)
N_CONTROLS, N_PATIENTS = (15, 15) if FAST else (50, 50)  # held-out subjects to score
N_PARCELS = 20 if FAST else 50  # parcels per hemisphere
SITES = ("A", "B", "C")
start = time.perf_counter()

# %% [markdown]
# ## The surface
# nilearn keeps a copy of fsaverage5 inside its package: 10242 vertices per hemisphere, with
# pial, white, inflated and sphere surfaces. We model thickness on the midthickness surface (the
# mean of pial and white), which is what the package's mesh adapter uses by default.

# %%
fsaverage = datasets.load_fsaverage("fsaverage5")
print("fsaverage5 surfaces:", sorted(fsaverage), "| vertices per hemisphere:",
      fsaverage["pial"].parts["left"].n_vertices)

# %% [markdown]
# ## Removing the medial wall
# The medial wall is not cortex: it has no thickness, and modes that spread over it would waste
# their degrees of freedom on nothing. nilearn has no cortex label for fsaverage5, so
# `fsaverage5_cortex_mask` derives one from the group-average thickness (vertices above 1 mm,
# cleaned into a single patch without holes). The mask cuts the mesh *before* the Laplacian is
# assembled, so the modes live on the cortex only.

# %%
masks = {hemi: fsaverage5_cortex_mask(hemi) for hemi in ("left", "right")}
for hemi, mask in masks.items():
    print(f"{hemi:5s}: {mask.sum()} of {mask.size} vertices kept ({100 * mask.mean():.1f}%)")
graph = fsaverage5_graph("both", cortex_mask=masks)
print(graph.n_features, "features; structures:", [s.name for s in graph.structures])

# %% [markdown]
# ## Laplace-Beltrami eigenmodes
# For a mesh, `EigenmodeBasis.from_graph` uses lapy's finite-element stiffness and mass matrices
# and solves `K phi = lambda M phi`. The two hemispheres are not connected, so each gets its own
# modes (zero on the other hemisphere) and the basis merges them by eigenvalue. The first mode of
# each hemisphere is constant; the following ones are ever finer waves along the cortex.

# %%
basis = EigenmodeBasis.from_graph(graph, n_modes=N_MODES)
print(basis, "| operator:", basis.provenance["laplacian"])
print("first eigenvalues:", np.round(basis.eigenvalues[:6], 5))
full_modes = basis.to_full(basis.eigenvectors.T)["CortexLeft"]  # (n_modes, 10242), NaN off cortex
left_modes = np.flatnonzero(np.nanmax(np.abs(full_modes), axis=1) > 0)[:8]
inflated = load_surface("fsaverage5", hemi="left", surface="inflated")
fig, axes = plt.subplots(2, 4, figsize=(12, 5), subplot_kw={"projection": "3d"})
for ax, k in zip(axes.ravel(), left_modes):
    plotting.plot_surf_stat_map(inflated, np.nan_to_num(full_modes[k]), hemi="left", view="lateral",
                                axes=ax, figure=fig, colorbar=False, cmap="RdBu_r")
    ax.set_title(f"mode {k + 1} (left)")
plt.savefig("01_lbo_modes.png", dpi=70, bbox_inches="tight")
plt.close("all")

# %% [markdown]
# ## A synthetic thickness cohort with sites
# `DemoProcess` (the generator behind `spectranorm-neuro demo`) turns nilearn's average
# thickness map into a normative process with known parts: thickness falls with age (faster
# after midlife), men differ slightly, each site adds its own smooth offset and scales the noise,
# and the noise is spatially smooth, like real thickness. Patients receive one focal thinning
# of 3 true standard deviations at one of three cortical locations; `core` marks the vertices
# within 10 mm of its centre.
#
# We draw a healthy reference cohort to train on, and a separate clinic cohort of held-out
# controls and patients from the same sites.

# %%
process = DemoProcess(basis, graph, seed=0)
reference = process.cohort(N_TRAIN, 0, SITES, seed=1, prefix="ref")
clinic = process.cohort(N_CONTROLS, N_PATIENTS, SITES, seed=2, prefix="cli")
patients = clinic.covariates["group"].to_numpy() == "patient"
print(reference.covariates.groupby("site").size().to_dict(), "reference subjects per site")
print(clinic.covariates.groupby("group").size().to_dict(), "clinic subjects")

# %% [markdown]
# ## Fit
# Every map is encoded once (the basis projection uses the FEM mass matrix, so it is a proper
# surface integral). The model then has one heteroscedastic regression per mode: age as a
# spline, sex, and site as a hierarchical (batch) effect on both the mean and the spread, plus
# correlation models of the most important mode pairs.

# %%
train_coeffs = basis.encode(reference.maps)  # (n_train, n_modes)
clinic_coeffs = basis.encode(clinic.maps)
model = snm.SpectralNormativeModel.build_from_dataframe(
    basis, "HBR", reference.covariates, numerical_covariates=["age"], nonlinear_covariates=["age"],
    categorical_covariates=["sex", "site"], batch_covariates=["site"],
    influencing_mean=["age", "sex", "site"], influencing_variance=["age", "site"])
model.fit(train_coeffs, reference.covariates, n_jobs=1, random_state=0)
print(f"fitted {model.model_params['n_modes']} modes and {model.model_params['n_pairs']} mode pairs "
      f"on {model.model_params['n_train']} subjects")

# %% [markdown]
# ## Vertex-level z-maps
# A vertex is just a query whose weights are one at that vertex: `vertex_queries` encodes all of
# them at once, and `evaluate` returns the normative mean, sd and z-score of every vertex for
# every subject. We compare the held-out controls' z-scores with the true ones, which we know
# because we know the process (the true z uses the true mean and sd, white noise included).

# %%
vertices = vertex_queries(basis)
train_values = train_coeffs @ vertices.encoded  # training maps as the model sees them
scores = model.evaluate(vertices.encoded, clinic_coeffs, clinic.covariates,
                        query_train_moments=np.stack([train_values.mean(0), train_values.std(0)]))
z = scores.predictions["z-score"]  # (n_subjects, n_features)
true_sd = np.sqrt(process.true_sd(clinic.covariates) ** 2 + 0.01**2)
true_z = (clinic.maps - process.mean(clinic.covariates)) / true_sd
controls_z = z[~patients]
print(f"held-out controls: mean z {controls_z.mean():.3f}, sd z {controls_z.std():.3f}, "
      f"|z| > 1.96 at {100 * np.mean(np.abs(controls_z) > 1.96):.1f}% of vertices (5% expected)")
rmse = np.sqrt(np.mean((controls_z - true_z[~patients]) ** 2))
print(f"RMSE of control vertex z-scores against the true z: {rmse:.3f}")
inside = z[patients][clinic.core[patients]].mean()
outside = z[patients][~clinic.core[patients]].mean()
print(f"planted lesions: mean vertex z inside {inside:.2f}, elsewhere {outside:.2f}")

# %% [markdown]
# ## Parcel-level z-maps
# Many questions are asked about regions rather than vertices. Any atlas works
# (`atlas_queries` reads `.annot`, `.label.gii` and `.dlabel.nii` files); to stay offline we
# build a simple one ourselves: k-means on the sphere coordinates of each hemisphere's cortex
# vertices, giving compact patches of similar size. A parcel query is the area-weighted mean of
# its vertices, so its z-score tells how unusual the *average* thickness of the parcel is, with
# the model's mode correlations giving the right sd for an average.


# %%
def sphere_kmeans(points, k, seed, n_iter=30):
    """Parcel labels 1..k of points (n, 3) by Lloyd's k-means from a seeded start."""
    rng = np.random.default_rng(seed)
    centres = points[rng.choice(len(points), size=k, replace=False)]
    for _ in range(n_iter):
        labels = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        counts = np.bincount(labels, minlength=k)[:, None]
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, points)
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
    return labels + 1


atlas = {}
for hemi, mask in masks.items():
    sphere, _ = load_surface("fsaverage5", hemi=hemi, surface="sphere")
    labels = np.zeros(mask.size, dtype=np.int64)  # 0: medial wall, not a parcel
    labels[mask] = sphere_kmeans(sphere[mask], N_PARCELS, seed=0 if hemi == "left" else 1)
    atlas[hemi[0].upper()] = labels
parcels = atlas_queries(basis, atlas, node_weights=node_areas(graph))
print(len(parcels), "parcels, e.g.", parcels.names[:3])
train_parcels = train_coeffs @ parcels.encoded  # (n_train, n_parcels)
parcel_scores = model.evaluate(parcels.encoded, clinic_coeffs, clinic.covariates,
                               query_train_moments=np.stack([train_parcels.mean(0), train_parcels.std(0)]))

# %% [markdown]
# The parcel that holds most of a patient's planted lesion should be far below zero; other
# parcels, and all parcels of controls, should look like draws from N(0, 1).

# %%
zp = parcel_scores.predictions["z-score"]  # (n_subjects, n_parcels)
member = (parcels.weights != 0).astype(float)  # (n_parcels, n_features)
parcel_of_feature = np.asarray(member.argmax(axis=0)).ravel()  # (n_features,), in query order
lesion_parcel = np.asarray(member @ clinic.core[patients].T.astype(float)).argmax(axis=0)  # (n_patients,)
hit = np.zeros(zp[patients].shape, dtype=bool)
hit[np.arange(patients.sum()), lesion_parcel] = True
print(f"parcels: lesioned parcel mean z {zp[patients][hit].mean():.2f}, other patient parcels "
      f"{zp[patients][~hit].mean():.2f}, controls mean {zp[~patients].mean():.2f} sd {zp[~patients].std():.2f}")

# %% [markdown]
# ## Writing the z-maps as GIFTI
# `write_map` splits the feature vector back into hemispheres and writes one GIFTI metric file
# per hemisphere, with the medial wall as NaN, one data array per subject (named by its id) and
# the `NIFTI_INTENT_ZSCORE` intent, so viewers know what they are showing. Parcel z-scores are
# painted over their vertices with `to_features` and written the same way, and also as a table.

# %%
ids = list(clinic.covariates.index)
vertex_files = write_map(z, basis.structures, {"L": "zmap_vertex_hemi-L.func.gii",
                                               "R": "zmap_vertex_hemi-R.func.gii"},
                         kind="zscore", names=ids, overwrite=True)
parcel_files = write_map(parcels.to_features(zp), basis.structures,
                         {"L": "zmap_parcel_hemi-L.func.gii", "R": "zmap_parcel_hemi-R.func.gii"},
                         kind="zscore", names=ids, overwrite=True)
write_parcel_table(zp, "zmap_parcels.tsv", parcels.names, index=ids, overwrite=True)
for path in vertex_files + parcel_files:
    img = nib.load(path)
    intent = nib.nifti1.intent_codes.niistring[img.darrays[0].intent]
    print(f"{path}: {len(img.darrays)} maps of {img.darrays[0].data.size} vertices, {intent}")
back = read_gifti(vertex_files[0])
assert np.allclose(back.data[:, basis.structures[0].index], z[:, :basis.structures[0].n_features], atol=1e-5)

# %% [markdown]
# The patient with the clearest lesion on the left hemisphere, at both levels, on the inflated
# surface (lesions differ: the subject's own noise can hide or deepen them):

# %%
n_left = basis.structures[0].n_features
core_z = np.where(clinic.core, z, 0.0).sum(1) / np.maximum(clinic.core.sum(1), 1)  # mean z in the core
left_lesion = np.flatnonzero(patients & clinic.core[:, :n_left].any(axis=1))
left_lesion = left_lesion[np.argmin(core_z[left_lesion])]
views = {"vertex z": z[left_lesion], "parcel z": parcels.to_features(zp[left_lesion])}
fig, axes = plt.subplots(1, 2, figsize=(9, 4), subplot_kw={"projection": "3d"})
for ax, (title, values) in zip(axes, views.items()):
    full = basis.to_full(values)["CortexLeft"]
    plotting.plot_surf_stat_map(inflated, np.nan_to_num(full), hemi="left", view="lateral", axes=ax,
                                figure=fig, vmax=4, colorbar=False, cmap="RdBu_r")
    ax.set_title(f"{ids[left_lesion]}: {title}")
plt.savefig("02_patient_zmaps.png", dpi=70, bbox_inches="tight")
plt.close("all")

# %% [markdown]
# ## The HTML report
# `generate_report` puts it all on one self-contained page: the model, the calibration of the
# controls' z-scores (overall and per site), group maps, and a few subjects in detail with
# their most deviant parcels and where they sit on the centile charts of the first modes.

# %%
index = generate_report("report", z, clinic.covariates, basis, model=model, coefficients=clinic_coeffs,
                        controls=~patients, group_column="group", atlas_labels=(parcel_of_feature, parcels.names),
                        max_subjects=2 if FAST else 4, overwrite=True, progress=False)
print("report:", index, f"({index.stat().st_size // 1024} kB)")
print(f"total time {time.perf_counter() - start:.0f} s")
