"""The rules of the tree's shape: no module over 400 lines, no import
circle among the daemon's modules, and anemonectl imports nothing of the
daemon but its protocol."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("anemoned", "anemonectl")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, anywhere in it (a function-level
    or TYPE_CHECKING import is a dependency too)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    return out


def test_no_module_is_over_400_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert {n: count for n, count in long.items() if count > MAX_LINES} == {}


def test_no_import_circles():
    modules = _modules()
    graph = {n: _imports(n, p, modules) for n, p in modules.items()}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert circles == []


def test_the_client_imports_only_the_protocol_of_the_daemon():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("anemonectl"):
            daemon_side = {m for m in _imports(name, path, modules) if m.startswith("anemoned")}
            assert all(m == "anemoned.protocol" or m.startswith("anemoned.protocol.") for m in daemon_side), (name, daemon_side)


def test_domain_modules_never_import_the_protocol():
    """Only the api layer, the server and the composition root speak
    JSON-RPC; the rest raise anemoned.errors."""
    modules = _modules()
    allowed = ("anemoned.api", "anemoned.server", "anemoned.service", "anemoned.protocol")
    for name, path in modules.items():
        if name.startswith("anemoned") and not name.startswith(allowed):
            assert not {m for m in _imports(name, path, modules) if m.startswith("anemoned.protocol")}, name
