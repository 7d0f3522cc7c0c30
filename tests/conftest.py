"""Shared fixtures: seeded RNG, tiny graphs and meshes, covariate tables, and a network guard."""

from __future__ import annotations

import ipaddress
import os
import socket

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("SPECTRANORM_TUTORIAL_FAST", "1")


class NetworkAccessError(RuntimeError):
    """Raised when a test tries to reach a non-loopback address."""


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX socket path
        return True
    host = address[0]
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name that would need DNS: that is network access
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):
    if not _is_local(address):
        raise NetworkAccessError(f"test tried to connect to {address!r}; tests must run offline")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise NetworkAccessError(f"test tried to connect to {address!r}; tests must run offline")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host not in (None, "localhost", "") and not _is_local((host, 0)):
        raise NetworkAccessError(f"test tried to resolve {host!r}; tests must run offline")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that opens a connection to, or resolves, a non-loopback address."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    yield


@pytest.fixture
def rng():
    """A seeded numpy Generator (seed 0)."""
    return np.random.default_rng(0)


@pytest.fixture
def tiny_lattice():
    """A 4-connected 5 x 4 grid graph: (adjacency (20, 20) CSR, shape (5, 4))."""
    shape = (5, 4)
    idx = np.arange(np.prod(shape)).reshape(shape)
    rows = np.concatenate([idx[:-1, :].ravel(), idx[:, :-1].ravel()])
    cols = np.concatenate([idx[1:, :].ravel(), idx[:, 1:].ravel()])
    n = idx.size
    adj = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    return (adj + adj.T).tocsr(), shape


@pytest.fixture
def tiny_mesh():
    """A closed, consistently oriented octahedron: (vertices (6, 3), faces (8, 3))."""
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    f = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4],
                  [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return v, f


@pytest.fixture
def make_covariates():
    """Factory: ``make_covariates(n, sites=("A", "B", "C"), seed=0)`` -> DataFrame(age, sex, site)."""

    def _make(n=200, sites=("A", "B", "C"), seed=0, age_range=(10.0, 80.0)):
        r = np.random.default_rng(seed)
        return pd.DataFrame({
            "age": r.uniform(*age_range, size=n),
            "sex": r.choice(["F", "M"], size=n),
            "site": r.choice(list(sites), size=n),
        })

    return _make
