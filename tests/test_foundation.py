"""Foundation: import layering, the network guard, the error style, package metadata."""

from __future__ import annotations

import ast
import importlib
import socket
from pathlib import Path

import pytest

import spectranorm_neuro
from spectranorm_neuro import exceptions

from .conftest import NetworkAccessError

PACKAGE_ROOT = Path(spectranorm_neuro.__file__).parent

# Rank of each top-level part of the package: a module may import only parts of lower or equal rank.
LAYERS = {
    "exceptions": 0, "_util": 0, "_version": 0, "_manifest": 0, "__init__": 0,
    "graphs": 1,
    "basis": 2,
    "engine": 3,
    "snm": 4, "io": 4, "datasets": 4,
    "workflow": 5,
    "report": 6,
    "cli": 7,
}


def _part(module_path: Path, root: Path) -> str:
    rel = module_path.relative_to(root)
    return rel.parts[0].removesuffix(".py")


def _imported_parts(module_path: Path, root: Path, package: str) -> set[str]:
    """Top-level package parts that ``module_path`` imports (absolute or relative)."""
    tree = ast.parse(module_path.read_text())
    rel_parts = module_path.relative_to(root).with_suffix("").parts
    pkg_parts = list(rel_parts[:-1])  # the module's own package inside the root
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - (node.level - 1)] if node.level > 1 else pkg_parts
                target = [*base, *(node.module.split(".") if node.module else [])]
                if target:
                    found.add(target[0])
                else:  # "from . import x" at package root
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == package:
                parts = node.module.split(".")
                if len(parts) > 1:
                    found.add(parts[1])
                else:
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(parts[1])
    return found


def layering_violations(root: Path, package: str = "spectranorm_neuro") -> list[str]:
    """List 'module imports part' strings where a lower layer imports a higher one."""
    out = []
    for path in sorted(root.rglob("*.py")):
        own = _part(path, root)
        if own not in LAYERS:
            out.append(f"{path.relative_to(root)}: part {own!r} has no layer; add it to LAYERS")
            continue
        if own == "__init__":  # the package root may re-export anything it likes lazily
            continue
        for target in _imported_parts(path, root, package):
            if target in LAYERS and LAYERS[target] > LAYERS[own]:
                out.append(f"{path.relative_to(root)} ({own}) imports {target}")
    return out


def test_package_layers_import_only_downward():
    assert layering_violations(PACKAGE_ROOT) == []


def test_layering_check_catches_a_violation(tmp_path):
    root = tmp_path / "spectranorm_neuro"
    (root / "graphs").mkdir(parents=True)
    (root / "engine").mkdir()
    (root / "graphs" / "lattice.py").write_text("from ..engine import spectral\n")
    (root / "engine" / "spectral.py").write_text("from spectranorm_neuro.cli import main\n")
    (root / "basis.py").write_text("from .graphs import lattice\n")  # allowed: downward
    found = layering_violations(root)
    assert found == ["engine/spectral.py (engine) imports cli", "graphs/lattice.py (graphs) imports engine"]


def test_network_guard_blocks_outside_connections():
    with pytest.raises(NetworkAccessError, match="offline"):
        socket.create_connection(("203.0.113.7", 80), timeout=1)
    with pytest.raises(NetworkAccessError):
        socket.getaddrinfo("example.org", 443)


def test_network_guard_allows_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=1)
    client.close()
    server.close()


def test_error_messages_name_argument_value_and_fix():
    err = exceptions.bad_value("n_modes", 500, "exceeds the 100 modes", "pass n_modes <= 100")
    assert isinstance(err, exceptions.SpectraNormError) and isinstance(err, ValueError)
    assert str(err) == "n_modes=500: exceeds the 100 modes. Fix: pass n_modes <= 100."


def test_every_module_declares_all():
    missing = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                 for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                 if isinstance(t, ast.Name)}
        if "__all__" not in names:
            missing.append(str(path.relative_to(PACKAGE_ROOT)))
    assert missing == []


@pytest.mark.parametrize("name", ["spectranorm_neuro.snm", "spectranorm_neuro.snm.utils.gsp",
                                  "spectranorm_neuro.snm.utils.metrics", "spectranorm_neuro.snm.utils.stats"])
def test_facade_modules_import(name):
    importlib.import_module(name)


def test_version_is_single_sourced():
    from importlib.metadata import version

    assert spectranorm_neuro.__version__ == version("spectranorm-neuro")


def test_atomic_write_is_all_or_nothing_and_readable(tmp_path):
    import os
    import stat

    from spectranorm_neuro._util import atomic_path, atomic_write_text
    from spectranorm_neuro.exceptions import OutputExistsError

    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode & 0o044 == 0o044  # readable by group and others under the usual umask (not mkstemp's 0600)
    with pytest.raises(OutputExistsError, match=r"path='out.txt'.*already exists.*overwrite=True"):
        atomic_write_text(target, "second")
    with pytest.raises(RuntimeError), atomic_path(target, overwrite=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
