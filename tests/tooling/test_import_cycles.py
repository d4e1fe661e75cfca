"""No import cycle inside any package, and the master side of dj_cqrs imports one way (issue 18).

The graph is built statically with `ast` from the sources, so it also sees the imports a test run
never executes. Both module-level imports and imports inside functions count: a deferred import
that goes back up a layer is exactly what hides a cycle. Imports under `if TYPE_CHECKING:` do not
count (they never run). An edge goes to the module named (`from a.b import c` → `a.b.c` when `c`
is a module, else `a.b`); the package `__init__` modules a dotted import also runs are not edges,
so a facade `__init__` that re-exports its submodules is not a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "cqrs_core": ROOT / "packages/cqrs-core/src/cqrs_core",
    "dj_cqrs": ROOT / "packages/cqrs-django/src/dj_cqrs",
    "cqrs_rabbitmq": ROOT / "packages/cqrs-rabbitmq/src/cqrs_rabbitmq",
    "cqrs_kombu": ROOT / "packages/cqrs-kombu/src/cqrs_kombu",
    "cqrs_kafka": ROOT / "packages/cqrs-kafka/src/cqrs_kafka",
}

ALLOWED_EDGES: dict[tuple[str, str], str] = {
    # (importer, imported): why this edge may close a cycle. Keep it empty; every entry is debt.
}

# The master side of dj_cqrs, lowest layer first: an event goes from the top (a model's save())
# to the bottom (the broker). A module may import its own layer and the layers below it, never
# one above (function-level imports included). Modules of dj_cqrs not listed here (conf,
# registries, constants, observability, replica, ...) are outside this check but still in the
# cycle check; a new module of master/ or outbox/ must be placed here.
MASTER_LAYERS: list[tuple[str, list[str]]] = [
    (
        "foundation: producer, field serialization, outbox rows and settings",
        [
            "dj_cqrs.controller.producer",
            "dj_cqrs.master.serialization",
            "dj_cqrs.outbox.models",
            "dj_cqrs.outbox.settings",
            "dj_cqrs.outbox.sqlite",
            "dj_cqrs.outbox.notify",
            "dj_cqrs.outbox.routing",
            "dj_cqrs.outbox.rows",
            "dj_cqrs.outbox.retention",
        ],
    ),
    ("serializing stored events when they are sent", ["dj_cqrs.outbox.committed"]),
    (
        "publishing: committed events to the broker",
        [
            "dj_cqrs.outbox.background_publisher",
            "dj_cqrs.master.publish",
            "dj_cqrs.outbox.relay",
        ],
    ),
    ("outbox writing in the transaction", ["dj_cqrs.outbox.writer"]),
    ("queue until commit and the on-commit hand-over", ["dj_cqrs.master.pending"]),
    ("event building", ["dj_cqrs.master.events"]),
    ("the one-statement save", ["dj_cqrs.outbox.one_statement"]),
    (
        "model hooks: signal handlers, metaclass, bulk manager, save()",
        [
            "dj_cqrs.master.signals",
            "dj_cqrs.master.meta",
            "dj_cqrs.master.manager",
            "dj_cqrs.master.mixins",
        ],
    ),
    (
        "edge: django-cqrs 3.x paths and the admin",
        [
            "dj_cqrs.signals",
            "dj_cqrs.mixins",
            "dj_cqrs.managers",
            "dj_cqrs.metas",
            "dj_cqrs.outbox.admin",
        ],
    ),
]


def modules_of(package: str, root: Path) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` (at `path`) imports."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    targets.add(alias.name)
            continue
        base = node.module or ""
        if node.level:
            anchor = name.split(".")
            anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            child = f"{base}.{alias.name}"
            if child in known:
                targets.add(child)
            elif base in known:
                targets.add(base)
    targets.discard(name)
    return {t for t in targets if (name, t) not in ALLOWED_EDGES}


def graph_of(package: str) -> dict[str, set[str]]:
    modules = modules_of(package, PACKAGES[package])
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(c)) for c in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A readable cycle through the first module of `component` (shortest path back to it)."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return sorted(component)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package: str) -> None:
    found = cycles(graph_of(package))
    assert not found, f"import cycles in {package}:\n" + "\n".join(" -> ".join(c) for c in found)


def test_master_layers_import_downwards() -> None:
    graph = graph_of("dj_cqrs")
    layer_of = {module: i for i, (_, modules) in enumerate(MASTER_LAYERS) for module in modules}
    missing = sorted(set(layer_of) - set(graph))
    assert not missing, f"MASTER_LAYERS names modules that do not exist: {missing}"
    master_side = {m for m in graph if m.startswith(("dj_cqrs.master.", "dj_cqrs.outbox."))} - {
        "dj_cqrs.outbox.checks",
        "dj_cqrs.outbox.migrations",
    }
    unplaced = sorted(m for m in master_side if m not in layer_of and m.count(".") == 2)
    assert not unplaced, f"place these master-side modules in MASTER_LAYERS: {unplaced}"
    upward = [
        f"{importer} ({MASTER_LAYERS[layer_of[importer]][0]}) imports {imported} "
        f"({MASTER_LAYERS[layer_of[imported]][0]})"
        for importer, targets in sorted(graph.items())
        if importer in layer_of
        for imported in sorted(targets)
        if imported in layer_of and layer_of[imported] > layer_of[importer]
    ]
    assert not upward, "a lower layer imports a higher one:\n" + "\n".join(upward)


def test_the_checker_finds_a_cycle() -> None:
    """The checker itself can fail: a two-module cycle is reported."""
    assert cycles({"p.a": {"p.b"}, "p.b": {"p.a"}, "p.c": {"p.a"}}) == [["p.a", "p.b", "p.a"]]
