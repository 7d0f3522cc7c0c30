"""Synthetic cohorts with a known normative process, for tests, benchmarks and tutorials.

:func:`seed_lattice_cohort` is a vectorized form of the generative process of the SpectraNorm
"Spectral Model" tutorial: on an ``n_side x n_side`` lattice over the unit square, each subject's
map is an age-dependent bivariate Gaussian blob plus ``0.6 ((age - 40) / 20)^2``, shifted by half a
site effect; its sd is ``0.1 * mean + 0.01 * age``; and the observation is ``mean + eps * sd`` with
one standard-normal ``eps`` per subject (so every linear query of a map has true z-score ``eps``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .basis import EigenmodeBasis
from .graphs.lattice import lattice_graph

__all__ = ["SITES", "lattice_basis", "blob_images", "seed_lattice_cohort", "gaussian_kernel_queries",
           "tutorial_cohorts"]

SITES = ("A", "B", "C", "D", "E", "F")


def lattice_basis(n_side: int = 50, n_modes: int = 100) -> EigenmodeBasis:
    """Symmetric-normalized Laplacian basis of the 4-connected ``n_side x n_side`` lattice."""
    return EigenmodeBasis.from_graph(lattice_graph((n_side, n_side), connectivity=4), n_modes,
                                     laplacian="normalized")


def blob_images(age: np.ndarray, n_side: int = 50) -> np.ndarray:
    """Noise-free normative maps of the tutorial process.

    Parameters
    ----------
    age : numpy.ndarray, shape (n,)
    n_side : int, optional

    Returns
    -------
    numpy.ndarray, shape (n, n_side**2)
        Pixels in row-major order (``i * n_side + j``), as in the tutorial.
    """
    age = np.asarray(age, dtype=float)
    g = np.linspace(0, 1, n_side)
    X, Y = np.meshgrid(g, g)
    cx, cy = 0.5 + 0.1 * np.cos(age / 10), 0.5 + 0.1 * np.sin(age / 10)
    th = age / 30
    smaj, smin = 0.25 + 0.02 * np.sin(age / 20), 0.15 - 0.02 * np.sin(age / 20)
    dx, dy = X.ravel()[None] - cx[:, None], Y.ravel()[None] - cy[:, None]
    u = np.cos(th)[:, None] * dx + np.sin(th)[:, None] * dy
    v = -np.sin(th)[:, None] * dx + np.cos(th)[:, None] * dy
    dens = np.exp(-0.5 * (u**2 / smaj[:, None] ** 2 + v**2 / smin[:, None] ** 2))
    dens /= (2 * np.pi) ** 2 * (smaj * smin)[:, None]
    return dens + 0.6 * ((age[:, None] - 40) / 20) ** 2


def seed_lattice_cohort(n: int, seed: int, n_side: int = 50, site_effects: dict | None = None,
                        sites=SITES) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw a cohort from the tutorial's process.

    Parameters
    ----------
    n : int
        Number of subjects.
    seed : int
        Seed of the subject draw.
    n_side : int, optional
        Lattice side.
    site_effects : dict, optional
        Site -> effect (the map is shifted by half of it). Default: fixed N(0, 1) draws for A-F.
    sites : sequence of str, optional
        Sites to sample from.

    Returns
    -------
    covariates : pandas.DataFrame, shape (n, 2)
        ``age`` and ``site``.
    mean, sd, observed : numpy.ndarray, shape (n, n_side**2)
        True normative mean and sd, and the observed maps.
    eps : numpy.ndarray, shape (n,)
        True z-score of every query of each subject.
    """
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": rng.choice(list(sites), n)})
    if site_effects is None:
        site_effects = dict(zip(SITES, np.random.default_rng(1234).normal(0, 1, len(SITES))))
    shift = 0.5 * df["site"].map(site_effects).to_numpy(dtype=float)
    mean = blob_images(df["age"].to_numpy(), n_side) + shift[:, None]
    sd = 0.1 * mean + 0.01 * df["age"].to_numpy()[:, None]
    eps = rng.normal(size=n)
    return df, mean, sd, mean + eps[:, None] * sd, eps


def gaussian_kernel_queries(n_side: int = 50, sigma: float = 0.05) -> np.ndarray:
    """The tutorial's pixel queries: a normalized Gaussian kernel centred on every pixel.

    Returns
    -------
    numpy.ndarray, shape (n_side**2, n_side**2)
        One query per row (row ``i`` centred on pixel ``i``), rows summing to 1.
    """
    g = np.linspace(0, 1, n_side)
    X, Y = np.meshgrid(g, g)
    px, py = X.ravel(), Y.ravel()
    w = np.exp(-((px[None] - px[:, None]) ** 2 + (py[None] - py[:, None]) ** 2) / (2 * sigma**2))
    return w / w.sum(axis=1, keepdims=True)


def _tutorial_image(age: float, rs: np.random.RandomState, noise_level: float) -> np.ndarray:
    """One image with the tutorial's parameter noise, consuming ``rs`` in the tutorial's order."""
    cx = 0.5 + 0.1 * np.cos(age / 10) + rs.normal(0, noise_level)
    cy = 0.5 + 0.1 * np.sin(age / 10) + rs.normal(0, noise_level)
    smaj = 0.25 + 0.02 * np.sin(age / 20) + rs.normal(0, noise_level)
    smin = 0.15 - 0.02 * np.sin(age / 20) + rs.normal(0, noise_level)
    g = np.linspace(0, 1, 50)
    X, Y = np.meshgrid(g, g)
    th = age / 30
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    cov = R @ np.diag([smaj**2, smin**2]) @ R.T
    diff = np.dstack((X, Y)) - np.array([cx, cy])
    expo = -0.5 * np.einsum("...i,ij,...j->...", diff, np.linalg.inv(cov), diff)
    img = np.exp(expo) / ((2 * np.pi) ** 2 * np.sqrt(np.linalg.det(cov)))
    return (img + 0.6 * ((age - 40) / 20) ** 2).ravel()


def tutorial_cohorts(n_train: int = 3000, n_test: int = 1000):
    """The tutorial's training and test cohorts, drawn with its exact random streams.

    Reproduces the tutorial's draws (``np.random.seed(42)`` then ``seed(43)``, legacy global
    generator semantics, parameter noise 1e-3) with a private ``RandomState``, so the global numpy
    state is untouched.

    Returns
    -------
    train, test : tuple
        Each ``(covariates DataFrame (n, 2), true mean (n, 2500), true sd (n, 2500), observed
        (n, 2500), eps (n,))``.
    """
    out = []
    prior = None
    for seed, n in ((42, n_train), (43, n_test)):
        rs = np.random.RandomState(seed)
        df = pd.DataFrame({"age": rs.uniform(10, 80, size=n), "site": rs.choice(list(SITES), size=n)})
        if prior is None:
            values = rs.normal(0, 1, size=df["site"].nunique())
            prior = dict(zip(df["site"].unique(), values))
        images = np.array([_tutorial_image(a, rs, 1e-3) for a in df["age"]])
        mean = images + 0.5 * df["site"].map(prior).to_numpy(dtype=float)[:, None]
        sd = 0.1 * mean + (0.01 * df["age"].to_numpy())[:, None]
        eps = rs.normal(0, 1, size=n)
        out.append((df, mean, sd, mean + eps[:, None] * sd, eps))
    return out[0], out[1]
