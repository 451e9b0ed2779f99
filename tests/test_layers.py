"""The layers of docs/architecture.md, checked on the source: imports run one
way and no module imports itself back, not even for type checking.

Every ``import``/``from … import`` of a gatewayd module counts, wherever it
stands (top level, inside a function, under ``if TYPE_CHECKING:``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"gatewayd": REPO / "gatewayd", "gatewayd_ws": REPO / "plugins" / "gatewayd_ws",
         "gatewayd_sockets": REPO / "plugins" / "gatewayd_sockets"}

#: Top to bottom. A module may import its own layer and those below it.
LAYERS = [
    "gatewayd.__main__",
    "gatewayd.testing",
    "gatewayd.service",
    "gatewayd_ws", "gatewayd_sockets",  # the built-in transport plugins
    "gatewayd.session",
    "gatewayd.plugin",
    "gatewayd.dialects",
    "gatewayd.links",
    "gatewayd.transport",
    "gatewayd.at",
    "gatewayd.config",
    "gatewayd.logs",
    "gatewayd",  # __init__: version only
]
#: Layers that sit side by side: neither may import the other.
SIBLINGS = [{"gatewayd_ws", "gatewayd_sockets"}]


def module_name(path: Path) -> str:
    for root, folder in ROOTS.items():
        if path.is_relative_to(folder):
            parts = [root, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts)
    raise AssertionError(path)


def modules() -> dict[str, Path]:
    return {module_name(p): p for folder in ROOTS.values() for p in folder.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The gatewayd modules *name* imports: ``from pkg import x`` counts as
    ``pkg.x`` when that is a module, otherwise as ``pkg`` (its __init__)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def layer(name: str) -> int:
    for index, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return index
    raise AssertionError(f"{name} belongs to no layer")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_imports_run_down_the_layers() -> None:
    wrong = []
    for name, targets in graph().items():
        for target in targets:
            if layer(target) < layer(name):
                wrong.append(f"{name} imports {target} (a higher layer)")
            for group in SIBLINGS:
                own = LAYERS[layer(name)]
                other = LAYERS[layer(target)]
                if own in group and other in group and own != other:
                    wrong.append(f"{name} imports its sibling {target}")
    assert wrong == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_cycle_finder_finds_cycles(edges, expected) -> None:
    assert cycles(edges) == expected


def test_core_never_imports_aiohttp() -> None:
    """DESIGN: the core never imports aiohttp; only transport plugins do."""
    offenders = []
    for name, path in modules().items():
        if not name.startswith("gatewayd.") or name.startswith("gatewayd.testing"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "aiohttp" or n.startswith("aiohttp.") for n in names):
                offenders.append(name)
    assert offenders == []
