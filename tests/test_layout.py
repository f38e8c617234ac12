"""The package's layout as a test: one import direction between the rooms, no import circles, no function-local
imports of genrobust modules (they hide circles). Read from the source with ``ast``; nothing is imported.

Allowed direction (docs/layout.md): core <- store <- data <- training <- measure <- {pipeline, reporting} <- cli.
pipeline and reporting are siblings: neither imports the other. The package's own ``__init__``/``__main__`` are the
top (they re-export for notebooks).
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lib" / "genrobust"
RANK = {"core": 0, "store": 1, "data": 2, "training": 3, "measure": 4, "pipeline": 5, "reporting": 5, "cli": 6,
        "": 7}


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def room(module: str) -> str:
    """'genrobust.core.attacks' -> 'core'; 'genrobust.cli' -> 'cli'; 'genrobust' / 'genrobust.__main__' -> ''."""
    parts = module.split(".")
    return "" if len(parts) == 1 or parts[1] == "__main__" else parts[1]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (before its imported names)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(sources: dict[str, tuple[str, bool]]) -> tuple[dict[str, set[str]], list[str]]:
    """(edges module -> genrobust modules it imports at module level, function-local genrobust imports).

    ``sources``: {module name: (source text, is a package __init__)}. ``from pkg import name`` is an edge to
    ``pkg.name`` when that is a module, else to ``pkg``."""
    edges: dict[str, set[str]] = {m: set() for m in sources}
    local: list[str] = []

    def targets(mod: str, is_pkg: bool, node) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names if a.name.split(".")[0] == "genrobust"]
        base = _resolve(mod, is_pkg, node)
        if base.split(".")[0] != "genrobust":
            return []
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in sources else base for a in node.names]

    for mod, (text, is_pkg) in sources.items():
        tree = ast.parse(text)
        inner = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in inner:
                        inner.add(node)
                        for t in targets(mod, is_pkg, node):
                            local.append(f"{mod} (line {node.lineno}) imports {t} inside a function or class")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in inner:
                edges[mod].update(t for t in targets(mod, is_pkg, node) if t != mod)
    return edges, local


def direction_violations(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for a, targets in edges.items():
        for b in targets:
            ra, rb = room(a), room(b)
            if rb == "" and b == "genrobust" and ra != "":
                out.append(f"{a} imports the package root (genrobust/__init__), which imports every room")
            elif ra != rb and not RANK[rb] < RANK[ra]:
                out.append(f"{a} ({ra or 'package root'}) imports {b} ({rb or 'package root'}): against the allowed "
                           "direction core <- store <- data <- training <- measure <- {pipeline, reporting} <- cli")
    return out


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def package_sources(root: Path = PKG) -> dict[str, tuple[str, bool]]:
    return {module_name(p, root): (p.read_text(), p.name == "__init__.py") for p in sorted(root.rglob("*.py"))}


def test_rooms_are_the_documented_ones():
    rooms = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == {r for r in RANK if r not in ("", "cli")}


def test_no_function_local_imports_of_genrobust_modules():
    _, local = imports(package_sources())
    assert not local, "\n".join(local)


def test_imports_follow_the_allowed_direction():
    edges, _ = imports(package_sources())
    bad = direction_violations(edges)
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    edges, _ = imports(package_sources())
    found = circles(edges)
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("case, expect", [
    ({"genrobust.core.a": ("from ..training import b\n", False), "genrobust.training.b": ("", False),
      "genrobust.training": ("", True), "genrobust.core": ("", True)}, "direction"),
    ({"genrobust.core.a": ("from .b import x\n", False), "genrobust.core.b": ("from .a import y\n", False)},
     "circle"),
    ({"genrobust.measure.a": ("def f():\n    from ..core import b\n", False), "genrobust.core.b": ("", False)},
     "local"),
])
def test_the_checks_catch_what_they_claim(case, expect):
    # the three checks above on small made-up packages: each must report its kind of problem
    edges, local = imports(case)
    found = {"direction": bool(direction_violations(edges)), "circle": bool(circles(edges)), "local": bool(local)}
    assert found[expect], (expect, edges, local)


LAYOUT_MAP = PKG.parents[1] / "docs" / "layout.md"


@functools.cache
def _layout_map_tool():
    """tools/layout_map.py, the map's generator (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("layout_map", PKG.parents[1] / "tools" / "layout_map.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def unmapped_modules(map_text: str, root: Path = PKG) -> list[str]:
    """Modules of the package (``room/name.py``, or ``name.py`` at the top; ``__init__`` files aside) that the
    layout map's tree does not name: each must stand at the start of an indented line below its room's line
    (``  room/``), before the next room starts (read by the map generator's own parser)."""
    named = {f"{room}/{name}" if room else name
             for room, names in _layout_map_tool().existing_order(map_text).items() for name in names}
    have = {str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "__init__.py"}
    return sorted(have - named)


def test_layout_map_names_every_module():
    missing = unmapped_modules(LAYOUT_MAP.read_text())
    assert not missing, f"docs/layout.md does not name: {', '.join(missing)} (add one line each under its room)"


def test_layout_map_check_catches_a_missing_module():
    # negative control: the map without its line for core/attacks.py must report exactly that module
    text = "\n".join(l for l in LAYOUT_MAP.read_text().splitlines() if not l.lstrip().startswith("attacks.py"))
    assert unmapped_modules(text) == ["core/attacks.py"]


def test_layout_map_lists_every_profile():
    """The map's line for profiles.py names each profile of core.profiles.PROFILES (read from its source, so a new
    profile must be added to the map)."""
    table = re.search(r"^PROFILES = .*\((.*)\)\}", (PKG / "core" / "profiles.py").read_text(), re.M).group(1)
    profiles = [name.strip().lower() for name in table.split(",")]
    assert "gpu" in profiles and len(profiles) >= 4
    from_map = re.search(r"profiles\.py(.*?)\n    \w+\.py", LAYOUT_MAP.read_text(), re.S).group(1)
    missing = [name for name in profiles if not re.search(rf"\b{name}\b", from_map)]
    assert not missing, f"docs/layout.md's profiles.py line does not list the profile(s): {', '.join(missing)}"



def test_layout_map_is_what_the_docstrings_say():
    """docs/layout.md's map of the package is generated from the docstrings (tools/layout_map.py): each module's
    line is the first paragraph of its docstring, so the map says what the module says of itself."""
    diff = _layout_map_tool().differences(LAYOUT_MAP.read_text())
    assert not diff, "\n".join(diff[:5]) + "\nrun `make layout` (python tools/layout_map.py)"


def test_layout_map_check_catches_a_wrong_description():
    # negative control: store.io's line given fid's description (a wrong map) is reported, naming the line
    text = LAYOUT_MAP.read_text()
    line = next(l for l in text.splitlines() if l.startswith("    io.py"))
    wrong = text.replace(line, "    io.py          FID with pytorch-fid's InceptionV3.", 1)
    diff = _layout_map_tool().differences(wrong)
    assert diff and "io.py" in diff[0] and "FID" in diff[0]
