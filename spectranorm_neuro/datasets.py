"""Synthetic cohorts with a known normative process, for tests, benchmarks and tutorials.

:func:`seed_lattice_cohort` is a vectorized form of the generative process of the SpectraNorm
"Spectral Model" tutorial: on an ``n_side x n_side`` lattice over the unit square, each subject's
map is an age-dependent bivariate Gaussian blob plus ``0.6 ((age - 40) / 20)^2``, shifted by half a
site effect; its sd is ``0.1 * mean + 0.01 * age``; and the observation is ``mean + eps * sd`` with
one standard-normal ``eps`` per subject (so every linear query of a map has true z-score ``eps``).

:func:`regional_cohort` is a table of regional measures (thickness-like Normal regions,
log-normal volumes, sinh-arcsinh skewed and heavy-tailed regions) with covariates and every
value's true z-score.

:class:`DemoProcess` is a synthetic cortical-thickness cohort on fsaverage5 with a known normative
process and planted lesions (used by ``spectranorm-neuro demo`` and the tutorials).

Generative process (every map lives on the features of ``basis``; ``Psi`` its eigenvectors)::

    x = m0 + age_effect(age) * a + 0.04 [sex = M] * b + site_offset[site]
        + scale(age, site) * noise + 0.01 * white
    scale(age, site) = site_scale[site] * exp(0.006 (age - 50))
    noise = 0.15 * (Psi @ (w * eps)) / mean(sd_base),  eps ~ N(0, I),  w_k = 1 / sqrt(1 + lambda_k / lambda_10)

``m0`` is nilearn's group-average fsaverage5 thickness smoothed onto the basis, ``a``, ``b`` and the
site offsets are smooth fields (the first 20 modes), ``age_effect(age) = -0.008 (age - 50) -
0.00008 (age - 50)^2`` (mm). The true normative sd of a vertex is ``scale * 0.15 * sd_base(v) /
mean(sd_base)`` with ``sd_base(v) = sqrt(sum_k w_k^2 Psi[v, k]^2)``.

Patients get one planted focal deviation: ``-depth * true_sd(v) * exp(-d(v)^2 / (2 sigma^2))``
around one of a few centres, with ``d`` the geodesic distance along mesh edges; their ``core``
(``d <= core_radius``) is where the z-scores must drop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import dijkstra

from .basis import EigenmodeBasis
from .graphs.lattice import lattice_graph

__all__ = ["SITES", "lattice_basis", "blob_images", "seed_lattice_cohort", "gaussian_kernel_queries",
           "tutorial_cohorts", "SyntheticCohort", "DemoProcess", "PATCH_TARGETS", "regional_cohort",
           "REGIONAL_KINDS"]

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


def tutorial_cohorts(n_train: int = 3000, n_test: int = 1000, seeds: tuple[int, int] = (42, 43)):
    """The tutorial's training and test cohorts, drawn with its exact random streams.

    Reproduces the tutorial's draws (``np.random.seed(42)`` then ``seed(43)``, legacy global
    generator semantics, parameter noise 1e-3) with a private ``RandomState``, so the global numpy
    state is untouched.

    Parameters
    ----------
    n_train, n_test : int
        Cohort sizes (the tutorial's are 3000 and 1000).
    seeds : tuple of int, optional
        Seeds of the training and test draws; the default is the tutorial's. Other seeds draw
        other cohorts (and other site effects) from the same process.

    Returns
    -------
    train, test : tuple
        Each ``(covariates DataFrame (n, 2), true mean (n, 2500), true sd (n, 2500), observed
        (n, 2500), eps (n,))``.
    """
    out = []
    prior = None
    for seed, n in ((int(seeds[0]), n_train), (int(seeds[1]), n_test)):
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

#: Approximate fsaverage5 midthickness positions (mm) of the lesion centres, per structure.
PATCH_TARGETS = {"CortexLeft": [(-50.0, -20.0, 35.0), (-35.0, 30.0, 25.0)], "CortexRight": [(45.0, -50.0, 30.0)]}
SITE_SCALE = {"A": 1.0, "B": 1.25, "C": 0.85, "D": 1.1}


@dataclass
class SyntheticCohort:
    """Subjects drawn from :class:`DemoProcess`.

    Attributes
    ----------
    covariates : pandas.DataFrame, shape (n_subjects, 4)
        ``age`` (years), ``sex`` (F/M), ``site``, ``group`` (control/patient); index
        ``participant_id``.
    maps : numpy.ndarray, shape (n_subjects, n_features)
    core : numpy.ndarray of bool, shape (n_subjects, n_features)
        Core of each subject's planted deviation (all False for controls).
    """

    covariates: pd.DataFrame
    maps: np.ndarray
    core: np.ndarray


class DemoProcess:
    """The normative process of the demo on a basis built from ``graph``.

    Parameters
    ----------
    basis : EigenmodeBasis
        Basis on the fsaverage5 graph (LBO modes).
    graph : graphs.Graph
        The graph (coords and adjacency give geodesic distances).
    seed : int
        Seed of the fixed fields (mean pattern, site offsets).
    """

    def __init__(self, basis, graph, seed: int = 0):
        self.basis = basis
        self.graph = graph
        rng = np.random.default_rng([seed, 1])
        psi = np.asarray(basis.eigenvectors)
        self._psi = psi
        lam = np.asarray(basis.eigenvalues)
        ref = lam[min(10, lam.size - 1)] or 1.0
        self._w = 1.0 / np.sqrt(1.0 + np.maximum(lam, 0.0) / ref)
        sd_base = np.sqrt((psi**2) @ (self._w**2))
        self._sd_unit = 0.15 * sd_base / sd_base.mean()
        self._noise_gain = 0.15 / sd_base.mean()
        self.m0 = self._baseline()
        n_smooth = min(20, psi.shape[1])

        def field():
            f = psi[:, :n_smooth] @ rng.normal(size=n_smooth)
            return (f - f.mean()) / f.std()

        self.age_pattern = np.clip(1.0 + 0.3 * field(), 0.2, None)
        self.sex_pattern = 1.0 + 0.3 * field()
        self.site_offset = {s: 0.06 * field() for s in SITE_SCALE}

    def _baseline(self) -> np.ndarray:
        from nilearn.datasets import load_fsaverage_data

        img = load_fsaverage_data(mesh="fsaverage5", data_type="thickness")
        parts = {"CortexLeft": "left", "CortexRight": "right"}
        full = {s.name: np.nan_to_num(np.asarray(img.data.parts[parts[s.name]], dtype=np.float64))
                for s in self.basis.structures}
        x = self.basis.from_full(full)
        return self.basis.decode(self.basis.encode(x))

    def true_sd(self, covariates: pd.DataFrame) -> np.ndarray:
        """True normative sd of every vertex, shape (n_subjects, n_features)."""
        return self._scale(covariates)[:, None] * self._sd_unit[None, :]

    def _scale(self, covariates: pd.DataFrame) -> np.ndarray:
        age = covariates["age"].to_numpy(dtype=float)
        site = covariates["site"].map(SITE_SCALE).to_numpy(dtype=float)
        return site * np.exp(0.006 * (age - 50.0))

    def mean(self, covariates: pd.DataFrame) -> np.ndarray:
        """True normative mean map of every subject, shape (n_subjects, n_features)."""
        age = covariates["age"].to_numpy(dtype=float) - 50.0
        effect = -0.008 * age - 0.00008 * age**2
        male = (covariates["sex"].astype(str).to_numpy() == "M").astype(float)
        offsets = np.stack([self.site_offset[s] for s in covariates["site"].astype(str)])
        return self.m0[None] + effect[:, None] * self.age_pattern[None] + \
            0.04 * male[:, None] * self.sex_pattern[None] + offsets

    def covariates(self, n: int, rng: np.random.Generator, sites, group: str, prefix: str,
                   age_range=(20.0, 80.0)) -> pd.DataFrame:
        """Draw ``n`` subjects' covariates (uniform age, balanced sex, sites at random)."""
        ids = [f"sub-{prefix}{i + 1:04d}" for i in range(n)]
        return pd.DataFrame({
            "age": np.round(rng.uniform(*age_range, size=n), 1),
            "sex": rng.choice(["F", "M"], size=n),
            "site": rng.choice(list(sites), size=n),
            "group": group,
        }, index=pd.Index(ids, name="participant_id"))

    def draw(self, covariates: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        """Maps of subjects with these covariates, shape (n_subjects, n_features)."""
        n, k = len(covariates), self._psi.shape[1]
        eps = rng.normal(size=(n, k)) * self._w[None]
        noise = self._noise_gain * (eps @ self._psi.T)
        white = 0.01 * rng.normal(size=(n, self._psi.shape[0]))
        return self.mean(covariates) + self._scale(covariates)[:, None] * noise + white

    def patch_centres(self) -> np.ndarray:
        """Feature indices of the lesion centres (nearest kept vertex to :data:`PATCH_TARGETS`)."""
        coords = np.asarray(self.graph.coords)
        offsets = np.cumsum([0, *(s.n_features for s in self.basis.structures)])
        centres = []
        for i, s in enumerate(self.basis.structures):
            block = coords[offsets[i]:offsets[i + 1]]
            for target in PATCH_TARGETS.get(s.name, []):
                centres.append(offsets[i] + int(np.argmin(np.sum((block - np.asarray(target)) ** 2, axis=1))))
        return np.asarray(centres, dtype=np.int64)

    def geodesic(self, centres: np.ndarray, limit: float) -> np.ndarray:
        """Edge-path geodesic distances (mm) from each centre, shape (n_centres, n_features); inf beyond ``limit``."""
        adj = sparse.triu(self.graph.adjacency, k=1).tocoo()
        coords = np.asarray(self.graph.coords)
        length = np.linalg.norm(coords[adj.row] - coords[adj.col], axis=1)
        w = sparse.csr_matrix((length, (adj.row, adj.col)), shape=adj.shape)
        return dijkstra(w, directed=False, indices=centres, limit=limit)

    def plant(self, maps: np.ndarray, covariates: pd.DataFrame, rng: np.random.Generator, depth: float = 3.0,
              sigma: float = 18.0, core_radius: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
        """Add one focal deviation of ``-depth`` true sds to every subject.

        Returns
        -------
        maps : numpy.ndarray, shape (n_subjects, n_features)
        core : numpy.ndarray of bool, shape (n_subjects, n_features)
        """
        centres = self.patch_centres()
        dist = self.geodesic(centres, limit=4.0 * sigma)
        which = rng.integers(0, centres.size, size=len(covariates))
        d = dist[which]
        profile = np.exp(-0.5 * (d / sigma) ** 2)  # 0 where d is inf
        out = maps - depth * self.true_sd(covariates) * profile
        return out, d <= core_radius

    def cohort(self, n_controls: int, n_patients: int, sites, seed: int, prefix: str,
               age_range=(20.0, 80.0)) -> SyntheticCohort:
        """Controls followed by patients (with planted deviations)."""
        rng = np.random.default_rng(seed)
        cov = pd.concat([self.covariates(n_controls, rng, sites, "control", f"{prefix}c", age_range),
                         self.covariates(n_patients, rng, sites, "patient", f"{prefix}p", age_range)])
        maps = self.draw(cov, rng)
        core = np.zeros(maps.shape, dtype=bool)
        if n_patients:
            maps[n_controls:], core[n_controls:] = self.plant(maps[n_controls:], cov.iloc[n_controls:], rng)
        return SyntheticCohort(cov, maps, core)


#: Kinds of region of :func:`regional_cohort`, cycled over the columns.
REGIONAL_KINDS = ("normal", "lognormal", "shash")
_REGIONAL_SHIFT = {"A": -0.4, "B": 0.0, "C": 0.5, "D": 0.8, "E": -0.8, "F": 0.3}  # site shifts, in sds
_REGIONAL_SPREAD = {"A": 0.8, "B": 1.0, "C": 1.25, "D": 2.0, "E": 0.6, "F": 1.1}  # site spreads


def regional_cohort(n: int, seed: int, n_regions: int = 6, sites: str | tuple = ("A", "B", "C"),
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A synthetic table of regional measures with a known normative process and every value's true z.

    Subjects are aged 8-85, of sex F/M, from ``sites`` (each shifts the mean by a fixed number of
    sds and scales the spread, sites ``A``-``F``: x0.8, x1.0, x1.25, x2.0, x0.6, x1.1). Region ``k``
    has the kind ``REGIONAL_KINDS[k % 3]``; with ``z ~ N(0, 1)`` the value is

    * ``normal``: ``m(age) + s(age) z`` (thickness-like, in mm);
    * ``lognormal``: ``1000 (1 + k) exp(0.004 (age - 45) + 0.45 z)`` (volume-like, right-skewed);
    * ``shash``: ``m(age) + s(age) sinh((arcsinh(z) + 0.5) / 0.7)`` (skewed, heavy-tailed);

    with the site shift and spread applied to ``z`` (log-normal volumes: the shift only, which
    scales their mean and sd alike), so ``z`` is each value's true z-score under its own site's
    distribution.

    Parameters
    ----------
    n : int
        Subjects.
    seed : int
    n_regions : int, optional
    sites : sequence of str, optional
        Among ``"A"`` .. ``"F"``.

    Returns
    -------
    covariates : pandas.DataFrame, shape (n, 3)
        ``age``, ``sex``, ``site``, indexed by ``participant_id`` (``sub-<seed>x<i>``).
    table : pandas.DataFrame, shape (n, n_regions)
        Region values, same index; columns ``<kind><k>``.
    true_z : pandas.DataFrame, shape (n, n_regions)
        The true z-score of every value.
    """
    rng = np.random.default_rng(seed)
    sites = list(sites)
    index = pd.Index([f"sub-{seed}x{i:05d}" for i in range(n)], name="participant_id")
    cov = pd.DataFrame({"age": rng.uniform(8, 85, n), "sex": rng.choice(["F", "M"], n),
                        "site": rng.choice(sites, n)}, index=index)
    age = cov["age"].to_numpy()[:, None]
    shift = cov["site"].map(_REGIONAL_SHIFT).to_numpy(float)[:, None]
    spread = cov["site"].map(_REGIONAL_SPREAD).to_numpy(float)[:, None]
    male = (cov["sex"] == "M").to_numpy(float)[:, None]
    z = rng.normal(size=(n, n_regions))
    k = np.arange(n_regions)[None, :]
    m = 2.6 - 0.25 * np.tanh((age - 30) / 25) + 0.05 * np.sin(age / 12 + k) + 0.04 * male
    s = 0.09 + 0.0006 * age
    normal = m + s * (shift + spread * z)
    lognormal = 1000 * (1 + k) * np.exp(0.004 * (age - 45) + 0.05 * male + 0.45 * (0.5 * shift + z))
    shash = m + s * (shift + spread * np.sinh((np.arcsinh(z) + 0.5) / 0.7))
    kind = k % 3
    values = np.where(kind == 0, normal, np.where(kind == 1, lognormal, shash))
    columns = [f"{REGIONAL_KINDS[j % 3]}{j}" for j in range(n_regions)]
    return (cov, pd.DataFrame(values, index=index, columns=columns),
            pd.DataFrame(z, index=index, columns=columns))
