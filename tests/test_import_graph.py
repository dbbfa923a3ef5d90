"""The import picture, function-level imports included.

import-linter (`make lint`) reads the imports a module makes when it is imported; an import inside a function is
invisible to it, so a circle can hide behind one. This test builds the package's import graph from the source
(every ``import`` of the package's own modules, at any depth, except those under ``if TYPE_CHECKING:``) and holds
it to the contracts in pyproject.toml: the layers, and no circle between the modules and packages of one package.
It also holds the rule of ARCHITECTURE.md: a function-level import of the package's own modules says why it is
there, in a trailing comment (``# lazy: start-up``: kept out of a command that does not need it).
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
REASON = re.compile(r"#.*\b(lazy|circle):\s*\S")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module of the package (the deepest that exists)
    function_level: bool
    line: int
    comment: str  # the comments on the import's lines


def modules(package_dir: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _comments(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string
    return out


def imports(package_dir: Path) -> list[Import]:
    mods = modules(package_dir)
    return [i for name, (path, is_package) in mods.items() for i in _file_imports(name, path, is_package, mods)]


def _file_imports(name: str, path: Path, is_package: bool, mods: dict) -> list[Import]:
    text = path.read_text()
    comments = _comments(text)
    root = name.split(".")[0]
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[:len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in mods else prefix for a in node.names]

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: runs nothing (import-linter's exclude_type_checking_imports)
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                note = " ".join(comments[i] for i in range(child.lineno, (child.end_lineno or child.lineno) + 1)
                                if i in comments)
                for target in targets(child):
                    if target.split(".")[0] != root:
                        continue
                    while target not in mods and "." in target:
                        target = target.rsplit(".", 1)[0]
                    found.append(Import(name, target, in_function, child.lineno, note))
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(ast.parse(text), False)
    return found


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def sibling_cycles(found: list[Import], mods: dict[str, tuple[Path, bool]], ancestor: str) -> list[list[str]]:
    """import-linter's acyclic_siblings, function-level imports included: within every package at or below
    ``ancestor``, the imports between its direct children (each child with everything below it) form no circle."""
    out = []
    for package in [m for m, (_, is_package) in mods.items() if is_package and (m + ".").startswith(ancestor + ".")]:
        depth = package.count(".") + 1

        def child(module: str) -> str | None:
            parts = module.split(".")
            return ".".join(parts[:depth + 1]) if module.startswith(package + ".") else None  # noqa: B023

        edges = {(child(i.source), child(i.target)) for i in found}
        out += cycles({(a, b) for a, b in edges if a and b and a != b})
    return out


def layer_violations(found: list[Import], layers: list[str]) -> list[Import]:
    def layer(module: str) -> int | None:
        return next((n for n, top in enumerate(layers) if module == top or module.startswith(top + ".")), None)

    return [i for i in found if layer(i.source) is not None and layer(i.target) is not None and
            layer(i.target) < layer(i.source)]  # type: ignore[operator]


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


# ------------------------------------------------------------------------------------------- the package
PACKAGE = ROOT / "zephyr_recipes"


def test_the_layers_hold_with_function_level_imports_too():
    found = imports(PACKAGE)
    assert sum(i.function_level for i in found) > 20  # it sees the imports inside the commands' handlers
    for contract in contracts():
        if contract["type"] == "layers":
            bad = layer_violations(found, contract["layers"])
            assert not bad, [f"{i.source}:{i.line} imports {i.target} (a higher layer)" for i in bad]


def test_no_circle_between_siblings_or_modules_with_function_level_imports_too():
    found = imports(PACKAGE)
    mods = modules(PACKAGE)
    for contract in contracts():
        if contract["type"] == "acyclic_siblings":
            for ancestor in contract["ancestors"]:
                assert sibling_cycles(found, mods, ancestor) == []
    # and none between single modules, a package's __init__ included (kinds -> preview -> data -> kinds was one)
    assert cycles({(i.source, i.target) for i in found if i.source != i.target}) == []


def test_every_function_level_import_of_the_package_says_why():
    found = imports(PACKAGE)
    unexplained = sorted({f"{i.source}:{i.line}" for i in found if i.function_level and not REASON.search(i.comment)})
    assert unexplained == [], "give each a trailing comment: `# lazy: <reason>` (e.g. `# lazy: start-up`)"


def test_a_circle_hidden_in_a_function_is_seen(tmp_path):
    """The analysis itself: a function-level import that closes a circle, and one without its reason."""
    pkg = tmp_path / "toypkg"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("from .a import f\n")
    (pkg / "low" / "a.py").write_text("def f():\n    from .b import g\n    return g()\n")
    (pkg / "low" / "b.py").write_text("from . import f\n\n\ndef g():\n    return 1\n")
    (pkg / "top.py").write_text("from .low import f  # a normal import\n\n\ndef h():\n"
                                "    from . import low  # lazy: start-up\n    return low\n")
    found = imports(pkg)
    assert cycles({(i.source, i.target) for i in found if i.source != i.target}) == [
        ["toypkg.low", "toypkg.low.a", "toypkg.low.b"]]
    assert sibling_cycles(found, modules(pkg), "toypkg") == []  # siblings a and b only meet through low/__init__
    (pkg / "low" / "b.py").write_text("def g():\n    from .a import f\n    return f\n")
    assert sibling_cycles(imports(pkg), modules(pkg), "toypkg") == [["toypkg.low.a", "toypkg.low.b"]]
    assert [i.line for i in imports(pkg) if i.function_level and not REASON.search(i.comment)] == [2, 2]
    assert layer_violations(imports(pkg), ["toypkg.top", "toypkg.low"]) == []
    assert [i.source for i in layer_violations(imports(pkg), ["toypkg.low", "toypkg.top"])] == ["toypkg.top"] * 2
