# %% [markdown]
# # Applying a shared model to a new cohort
#
# Normative models pay off when they are shared: one group fits a model on thousands of healthy
# scans, and other labs score their own participants against it without ever seeing the
# training data. The catch is that every scanner measures a little differently. A site the model
# has never seen gets z-scores that are off for every participant, healthy or not. The cure is to
# *adapt* the model: learn only the new site's effect from a few of its healthy controls, and
# leave everything else (age and sex effects, the spatial structure) as trained.
#
# This tutorial plays both roles. First the "model lab" fits a cortical-thickness model on three
# sites and saves it as a bundle, the single file it would publish. Then "your lab" loads the
# bundle, finds its scanner unknown to the model, adapts with 30 controls, scores patients,
# writes the maps as BIDS derivatives, and measures what adaptation changed on held-out controls
# of the new site, whose true z-scores we know because the data are synthetic.
#
# Figures and files are written to the working directory. `SPECTRANORM_TUTORIAL_FAST=1` runs a
# reduced version in well under a minute.

# %%
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np

from spectranorm_neuro import snm
from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.datasets import DemoProcess
from spectranorm_neuro.exceptions import UnseenCategoryError
from spectranorm_neuro.graphs import fsaverage5_graph
from spectranorm_neuro.io import DerivativesWriter, parse_bids_name, vertex_queries
from spectranorm_neuro.workflow import (
    build_model_card,
    check_compatible,
    format_card,
    load_bundle,
    record_adaptation,
    save_bundle,
)

FAST = os.environ.get("SPECTRANORM_TUTORIAL_FAST") == "1"
N_MODES = 60 if FAST else 200  # modes over both hemispheres
N_TRAIN = 200 if FAST else 600  # reference subjects of the model lab (three sites)
N_ADAPT = 30  # controls of the new site used to adapt the model
N_HELD_OUT, N_PATIENTS = (20, 10) if FAST else (60, 40)  # new-site subjects scored afterwards
SPACE = {"space": "fsaverage", "den": "10k"}  # BIDS entities of fsaverage5
start = time.perf_counter()

# %% [markdown]
# ## Part 1: the model lab fits and shares a model
# The same ingredients as the cortical-surface tutorial: Laplace-Beltrami modes of fsaverage5
# (medial wall removed) and a synthetic thickness cohort from `DemoProcess`, scanned at sites
# A, B and C. Each scanner adds its own smooth spatial pattern, and, as real scanners do, also
# shifts thickness as a whole (here by -0.06, +0.05 and +0.01 mm). Site is a batch covariate, a
# hierarchical effect on the mean and on the spread, so the model also learns how much sites
# differ from each other in general; that knowledge is what makes adaptation from few
# subjects possible later.

# %%
graph = fsaverage5_graph("both", cortex_mask="auto")
basis = EigenmodeBasis.from_graph(graph, n_modes=N_MODES)
process = DemoProcess(basis, graph, seed=0)
for site, shift in {"A": -0.06, "B": 0.05, "C": 0.01}.items():
    process.site_offset[site] = process.site_offset[site] + shift
reference = process.cohort(N_TRAIN, 0, ("A", "B", "C"), seed=1, prefix="ref")
model = snm.SpectralNormativeModel.build_from_dataframe(
    basis, "HBR", reference.covariates, numerical_covariates=["age"], nonlinear_covariates=["age"],
    categorical_covariates=["sex", "site"], batch_covariates=["site"],
    influencing_mean=["age", "sex", "site"], influencing_variance=["age", "site"])
model.fit(basis.encode(reference.maps), reference.covariates, n_jobs=1, random_state=0)

# %% [markdown]
# A bundle holds the fitted model with its basis, a model card (who was trained, on what
# mesh and covariates) and SHA-256 checksums of every file. Saved as `.zip` it is one
# byte-reproducible file; it contains JSON and `.npz` arrays only, never pickles, so loading a
# bundle from a stranger cannot run code.

# %%
card = build_model_card(model, reference.covariates, measure="thickness", space=SPACE, seed=0,
                        source="synthetic reference cohort (tutorial 04)")
save_bundle(model, "shared_model.zip", card, overwrite=True)
print(f"shared_model.zip: {Path('shared_model.zip').stat().st_size / 1e6:.1f} MB")
del model, basis  # from here on, only the bundle is used

# %% [markdown]
# ## Part 2: your lab loads the bundle
# `load_bundle` verifies the format version and every checksum before anything is used, and
# `check_compatible` refuses data on another mesh or cortex mask. Our maps are on fsaverage5
# with the same automatic mask, so they pass.

# %%
bundle = load_bundle("shared_model.zip")
print(format_card(bundle.card, bundle.manifest, "shared_model.zip"))
check_compatible(bundle, graph.structures, SPACE, "our cohort")

# %% [markdown]
# ## A site the model has never seen
# Our scanner, site D, has its own spatial pattern and noise level, and reads the cortex
# 0.08 mm thicker everywhere (about half a normative sd). We draw 30 healthy controls for adaptation, then a
# separate set of held-out controls and patients (each with one planted focal thinning of 3
# true sd) to score.

# %%
process.site_offset["D"] = process.site_offset["D"] + 0.08
adapt = process.cohort(N_ADAPT, 0, ("D",), seed=3, prefix="adapt")
new = process.cohort(N_HELD_OUT, N_PATIENTS, ("D",), seed=4, prefix="new")
patients = new.covariates["group"].to_numpy() == "patient"
adapt_coeffs = bundle.basis.encode(adapt.maps)  # (30, n_modes)
new_coeffs = bundle.basis.encode(new.maps)
Q = vertex_queries(bundle.basis).encoded  # every vertex as a query, (n_modes, n_features)
true_z = (new.maps - process.mean(new.covariates)) / np.sqrt(process.true_sd(new.covariates) ** 2 + 0.01**2)

# %% [markdown]
# Asking for site D's norms fails with an explanation, because the model cannot know that
# site's effect:

# %%
try:
    bundle.model.predict(Q, new.covariates)
except UnseenCategoryError as err:
    print("refused:", str(err)[:300], "...")

# %% [markdown]
# ## Without adaptation
# The fallback is population-level norms (`unseen_batch="population"`: the average site).
# `predict` gives the normative mean and sd of every vertex, `add_observations` turns the
# observed values into z-scores and centiles. The scores are computed, but they carry the new
# scanner's bias.

# %%
observed = new_coeffs @ Q  # the maps as the model sees them, (n_subjects, n_features)
without = bundle.model.predict(Q, new.covariates, unseen_batch="population").add_observations(observed)
z_without = without.predictions["z-score"]

# %% [markdown]
# ## With adaptation
# `adapt_fit` learns site D's mean and spread effects in every mode, and its effect on the
# modelled mode correlations, from the 30 controls, using the between-site variability learned in
# training as the prior: with few controls the estimate is shrunk towards the population, as it
# should be. Nothing else in the model changes. The adapted model is saved as a new bundle whose
# card records the adaptation.

# %%
bundle.model.adapt_fit(adapt_coeffs, adapt.covariates)
save_bundle(bundle.model, "shared_model_siteD.zip",
            record_adaptation(bundle.card, bundle.model.model_params["adapted_levels"], N_ADAPT,
                                "site D controls"), overwrite=True)
with_adapt = bundle.model.predict(Q, new.covariates).add_observations(observed)
z_with = with_adapt.predictions["z-score"]

# %% [markdown]
# ## What adaptation changed
# On the held-out healthy controls of site D the z-scores should be centred on zero with sd
# one, and they should match the true z-scores. We also check the planted lesions.

# %%
controls = ~patients
summary = {}
for name, zz in (("without adaptation", z_without), ("with adaptation", z_with)):
    zc = zz[controls]
    summary[name] = {
        "mean": zc.mean(), "sd": zc.std(), "tails": np.mean(np.abs(zc) > 1.96),
        "rmse": np.sqrt(np.mean((zc - true_z[controls]) ** 2)),
        "lesion": zz[patients][new.core[patients]].mean(),
    }
    s = summary[name]
    print(f"{name:19s}: held-out controls mean z {s['mean']:+.3f}, sd z {s['sd']:.3f}, "
          f"|z| > 1.96 at {100 * s['tails']:4.1f}%, RMSE vs true z {s['rmse']:.3f}; "
          f"patients' lesion cores mean z {s['lesion']:+.2f}")

# %%
rng = np.random.default_rng(0)
sample = rng.choice(z_with[controls].size, size=min(200_000, z_with[controls].size), replace=False)
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
bins = np.linspace(-5, 5, 101)
grid = np.linspace(-5, 5, 201)
for name, zz in (("without adaptation", z_without), ("with adaptation", z_with)):
    axes[0].hist(zz[controls].ravel()[sample], bins=bins, density=True, histtype="step", lw=2, label=name)
axes[0].plot(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
axes[0].set(xlabel="vertex z-score", ylabel="density", title="held-out site D controls")
axes[0].legend()
names = list(summary)
axes[1].bar(np.arange(2) - 0.2, [summary[n]["mean"] for n in names], 0.4, label="mean z (controls)")
axes[1].bar(np.arange(2) + 0.2, [summary[n]["rmse"] for n in names], 0.4, label="RMSE vs true z")
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set_xticks(range(2), names)
axes[1].legend()
plt.tight_layout()
plt.savefig("01_adaptation.png", dpi=80)
plt.close("all")

# %% [markdown]
# Without adaptation every healthy site-D subject looks thicker than normal and the scores are
# too spread out; the lesions are also partly masked by the upward bias. With 30 controls the
# controls' z-scores are centred and close to the truth.
#
# ## Writing BIDS derivatives
# `DerivativesWriter` lays the maps out as a BIDS derivatives dataset: a
# `dataset_description.json`, one GIFTI per subject, hemisphere and map type, named with the
# subject, hemisphere, space and `desc` entities (z-scores carry `NIFTI_INTENT_ZSCORE`), and a
# group table summarising each subject's deviations.

# %%
writer = DerivativesWriter("derivatives", name="spectranorm_neuro z-scores, site D",
                           source_datasets=["shared_model_siteD.zip"], overwrite=True)
subjects = list(new.covariates.index)
written = writer.write_cohort(z_with, subjects, "zscore", "thickness", bundle.basis.structures, **SPACE)
written += writer.write_cohort(with_adapt.predictions["centiles"], subjects, "centile", "thickness",
                               bundle.basis.structures, **SPACE)
table = writer.write_summary(z_with, subjects, "thickness")
first = written[0]
print(f"{len(written)} GIFTI files under derivatives/, e.g. {first.relative_to('derivatives')}")
print("entities:", parse_bids_name(first))
print("intent:", nib.nifti1.intent_codes.niistring[nib.load(first).darrays[0].intent])
print("summary table:", table.relative_to("derivatives"))
print(f"total time {time.perf_counter() - start:.0f} s")
