"""A synthetic cortical-thickness cohort on fsaverage5 with a known normative process and planted lesions.

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

__all__ = ["SyntheticCohort", "DemoProcess", "PATCH_TARGETS"]

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
