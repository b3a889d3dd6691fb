"""Imports go one way: no module of collectors/, storage/ or monitor/ reaches itself again through its
imports, and the layers hold (storage imports neither collectors nor monitor; collectors does not import
monitor).

Every import counts: at module level, inside functions (lazy) and under `if TYPE_CHECKING:` (a type-only
circle is still two modules that cannot be read, moved or tested apart). The graph is read from the source
with `ast`, not by importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("collectors", "storage", "monitor")
FORBIDDEN = {"storage": ("collectors", "monitor"), "collectors": ("monitor",)}
"""Package -> packages it must not import."""


def modules() -> dict[str, Path]:
    """Every module of the three packages by dotted name (a package by its own name)."""
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its source (a `from pkg import mod` names mod)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join([*here, *([node.module] if node.module else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read() -> None:
    """The reader sees the imports it must (a broken reader would find no circles anywhere)."""
    edges = graph()
    assert "storage.window_pieces" in edges["storage.reader"]  # from storage.window_pieces import ...
    assert "monitor.tui.screens.base" in edges["monitor.tui.app"]
    assert "collectors.sim.tray" in edges["collectors.sim.rack"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back() -> None:
    edges = graph()
    found = cycles(edges)
    shown = [
        " -> ".join(c) + f" ({', '.join(f'{a}->{b}' for a in c for b in sorted(edges[a]) if b in c)})"
        for c in found
    ]
    assert not found, "import circles:\n" + "\n".join(shown)


def test_the_layers_import_one_way() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        for target in sorted(targets)
        if target.split(".")[0] in FORBIDDEN.get(name.split(".")[0], ())
    ]
    assert not wrong, "\n".join(wrong)
