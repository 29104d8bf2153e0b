"""One direction of imports (docs/architecture.md): a test fails on an import edge that goes up a layer,
or on an import cycle between modules.

Layers, top to bottom:

    cli                       the command line (and the package's library API)
    run forecast audit report executing, forecasting and checking runs
    budget store stats        the cap, the database, the statistics
    adapters suites sim       the edges: providers, benchmarks, the simulator, model resolution and
    pricing                   the price table (the simulator bills with it)
    errors types suite money  the bottom row, which imports nothing of the project above it

Every import counts, also one inside a function (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Module prefix -> layer (the longest matching prefix wins). Higher layers may import lower ones.
LAYERS: dict[str, int] = {
    "harness.errors": 0,
    "harness.types": 0,
    "harness.suite": 0,
    "harness.redact": 0,
    "harness.pricing.money": 0,
    "harness.answerkey": 0,
    "adapters": 1,
    "suites": 1,
    "harness.sim": 1,
    "harness.sandbox": 1,
    "harness.models": 1,
    "harness.pricing": 1,
    "harness.budget": 2,
    "harness.store": 2,
    "harness.stats": 2,
    "harness.run": 3,
    "harness.forecast": 3,
    "harness.audit": 3,
    "harness.report": 3,
    "harness.report_html": 3,
    "harness.cli": 4,
    "harness.__main__": 4,
    "harness": 4,
}


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("harness", "adapters", "suites"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    return skip


def _edges() -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod, *(f"{mod}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    edges[name].add(target)
    return edges


def test_no_import_goes_up_a_layer() -> None:
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, targets in sorted(_edges().items())
        for b in sorted(targets)
        if _layer(b) > _layer(a) and not b.startswith(a + ".")  # a package may import its own parts
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    edges = _edges()
    # A package's __init__ importing its own submodules (re-exports, registries) is not a cycle.
    graph = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                cycles.append(sorted(component))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        assert _layer(module) >= 0
