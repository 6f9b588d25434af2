"""The rooms of the package, as docs/architecture.md draws them: no import cycle among the
modules' top-level imports, and only kubefixtures/kube/ speaks the Kubernetes API's REST
(request calls, API paths, HTTP status codes)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kubefixtures"
KUBE = PACKAGE / "kube"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def top_level_imports(name: str) -> Iterator[str]:
    """The kubefixtures modules ``name`` imports when it is imported: its module-level
    imports (also those in a try or an if), not those in functions or TYPE_CHECKING."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    pending: list[ast.stmt] = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                pending += node.body
            pending += node.orelse
        elif isinstance(node, ast.Try):
            pending += [*node.body, *node.orelse, *node.finalbody]
            for handler in node.handlers:
                pending += handler.body
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            # `from package import module` imports the module.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        targets: set[str] = set()
        for imported in top_level_imports(name):
            # Importing a.b.c runs a, a.b and a.b.c (a module's own packages run first anyway).
            parts = imported.split(".")
            for end in range(1, len(parts) + 1):
                target = ".".join(parts[:end])
                if target in MODULES and target != name and not name.startswith(f"{target}."):
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports() -> None:
    graph = import_graph()
    assert "kubefixtures.kube.client" in graph["kubefixtures.kube"]
    assert "kubefixtures.provisioning.base" in graph["kubefixtures.provisioning.fresh"]
    # TYPE_CHECKING and function-level imports are not module-level imports.
    assert "kubefixtures.provisioning.base" not in graph["kubefixtures.session"]


def test_no_import_cycle_among_module_level_imports() -> None:
    assert cycles(import_graph()) == []


def test_kube_imports_nothing_of_the_domain() -> None:
    """kube/ is plumbing: it may use the errors and the clock (both leaves of the standard
    library only: the clock reads the API server's time from its answers), nothing above it."""
    allowed = ("kubefixtures.kube", "kubefixtures.errors", "kubefixtures.clock")
    graph = import_graph()
    wrong = {
        name: sorted(target for target in targets if not target.startswith(allowed))
        for name, targets in graph.items()
        if name.startswith("kubefixtures.kube")
    }
    assert {name: targets for name, targets in wrong.items() if targets} == {}


# --- only kube/ speaks REST ----------------------------------------------------------------

RAW_CALLS = {"request", "request_text"}  # Cluster's raw API; typed helpers exist beside it
HTTP_STATUS = range(100, 600)
# The local provider probes the health endpoints of the processes it runs (etcd, the
# kubelet, the API server's /readyz) before any kubeconfig exists: plain HTTP, not the API.
# The ready= probes (readiness/app.py) speak HTTP to an environment's applications through
# their port-forwards.
NOT_THE_API = {
    PACKAGE / "cluster" / "local" / "processes.py",
    PACKAGE / "readiness" / "app.py",
}


def _is_status(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "status"


def _status_codes(node: ast.expr) -> bool:
    values = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return any(
        isinstance(value, ast.Constant)
        and isinstance(value.value, int)
        and not isinstance(value.value, bool)
        and value.value in HTTP_STATUS
        for value in values
    )


def rest_uses(text: str, name: str) -> Iterator[str]:
    """Where the module ``name`` (its source ``text``) speaks the API's REST itself."""
    for node in ast.walk(ast.parse(text)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in RAW_CALLS
        ):
            yield f"{where}: calls .{node.func.attr}()"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith(("/api/", "/apis")) or "/namespaces/" in node.value:
                yield f"{where}: writes the REST path {node.value!r}"
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value
                for part in node.values
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            )
            if text.startswith(("/api/", "/apis")) or "/namespaces/" in text:
                yield f"{where}: writes a REST path"
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(map(_is_status, operands)) and any(map(_status_codes, operands)):
                yield f"{where}: compares an HTTP status code"


def outside_kube() -> list[Path]:
    return [
        path for path in MODULES.values() if KUBE not in path.parents and path not in NOT_THE_API
    ]


@pytest.mark.parametrize(
    "source",
    [
        "cluster.request('GET', '/api/v1/namespaces/x')",
        "cluster.request_text(path)",
        "path = f'/api/v1/namespaces/{ns}/pods'",
        "if error.status == 404: pass",
        "if error.status in (401, 403): pass",
    ],
)
def test_the_rest_check_sees_raw_api_use(source: str) -> None:
    assert list(rest_uses(source, "probe")), source


def test_only_kube_speaks_rest() -> None:
    found = [
        use
        for path in outside_kube()
        for use in rest_uses(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    ]
    assert found == []
