"""The shape of the code: dependencies point one way, `api` → `jobs` → `hosts` → `hosts.remoting` (→ pypsrp),
`console` wires them (and nothing imports `api`: console/urls.py includes its routes by name), and no first-party
modules import each other in a circle, counting the imports inside functions.
Last, the catalog of remote operations against the simulator's cmdlets.

The imports of console/, hosts/, jobs/ and api/ are read from their source with `ast`, none of it executed. A
package's `__init__` is a module of its own. `from a.b import c` depends on `a.b`, and on `a.b.c` as well when that is
a module. Imports under `if TYPE_CHECKING:` count for the one-way rules (a type is a dependency all the same) but
not for cycles: they never run, which is what lets a module name a type of the module that imports it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import hypervsim
from hosts.remoting import catalog
from hosts.remoting.operation import Operation

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("console", "hosts", "jobs", "api")
FIRST_PARTY = (*PARTS, "hypervsim")
# The small modules of console that hosts and jobs may use: the audit trail, roles, reading ids, whether a session
# still holds (the websockets re-check it).
CONSOLE_LEAVES = frozenset({"console.models", "console.roles", "console.params", "console.sessions"})
# hosts/ from the bottom up: how to talk to a host, the host registry, the vault, the inventory (whose analysis
# reads the vault). A module imports its own layer and those below; a page shows a higher layer's panel by template.
HOSTS_LAYERS = ("hosts.remoting", "hosts", "hosts.vault", "hosts.inventory")
MAX_LOCAL_IMPORTS = 10


@dataclass(frozen=True)
class Import:
    """One first-party module one module imports."""

    source: str
    target: str
    path: Path
    line: int
    local: bool  # inside a function: runs when the function is first called, not when the module loads
    typing_only: bool  # under `if TYPE_CHECKING:`: never runs
    commented: bool  # a comment on its line or the line above (the reason it is local)

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} {self.source} → {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def is_first_party(name: str) -> bool:
    return name.split(".")[0] in FIRST_PARTY


def within(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a `from … import` names, with relative imports resolved against the importing module."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    named = absolute(node, module, is_package)
    yield named
    yield from (f"{named}.{alias.name}" for alias in node.names if is_module(f"{named}.{alias.name}"))


# Directives to linters and type checkers (noqa, type: ignore) silence a tool; they give no reason.
PRAGMA = re.compile(r"noqa(:\s*[A-Z]+\d+(\s*,\s*[A-Z]+\d+)*)?|type:\s*ignore(\[[^\]]*\])?")


def comment_lines(source: str) -> tuple[set[int], set[int]]:
    """Lines that carry a comment in words, and lines that are nothing but such a comment."""
    anywhere, alone = set(), set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and re.search(r"[A-Za-z]", PRAGMA.sub("", token.string)):
            anywhere.add(token.start[0])
            if not token.line[: token.start[1]].strip():
                alone.add(token.start[0])
    return anywhere, alone


def is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(
    tree: ast.AST, local: bool = False, typing_only: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import statement, whether it sits inside a function (at any depth), and whether only type checkers
    see it."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, local, typing_only
        inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from import_nodes(child, inner, typing_only or is_type_checking(child))


def imports_of(path: Path) -> Iterator[Import]:
    source = path.read_text(encoding="utf-8")
    module, is_package = module_name(path), path.name == "__init__.py"
    anywhere, alone = comment_lines(source)
    for node, local, typing_only in import_nodes(ast.parse(source, filename=str(path))):
        commented = bool(anywhere & set(range(node.lineno, (node.end_lineno or node.lineno) + 1)))
        commented = commented or node.lineno - 1 in alone
        for target in dict.fromkeys(targets(node, module, is_package)):
            if is_first_party(target) and target != module:
                yield Import(module, target, path, node.lineno, local, typing_only, commented)


@cache
def all_imports() -> tuple[Import, ...]:
    files = sorted(path for part in PARTS for path in (ROOT / part).rglob("*.py"))
    return tuple(found for path in files for found in imports_of(path))


def imports_from(*prefixes: str) -> list[Import]:
    return [found for found in all_imports() if within(found.source, *prefixes)]


def listing(found: Iterable[object]) -> str:
    return "\n  " + "\n  ".join(str(item) for item in found)


# -- cycles ---------------------------------------------------------------------------------------------------------


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that can each reach every other one of their group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

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
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [group for group in groups if len(group) > 1]


def cycle_through(start: str, graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest path from `start` back to itself inside its group."""
    came_from: dict[str, str] = {}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        for nxt in sorted(graph.get(node, set()) & group):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if nxt not in came_from:
                came_from[nxt] = node
                todo.append(nxt)
    return [start]


def describe(cycle: list[str], edges: dict[tuple[str, str], Import]) -> str:
    """The cycle, then the import statement behind each of its steps."""
    steps = [edges[pair] for pair in zip(cycle, cycle[1:], strict=False)]
    lines = [f"    {step}{' (in a function)' if step.local else ''}" for step in steps]
    return "\n".join([f"  {' → '.join(cycle)}", *lines])


def test_first_party_modules_import_each_other_in_no_circle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    edges: dict[tuple[str, str], Import] = {}
    for found in all_imports():
        if found.typing_only:
            continue
        graph[found.source].add(found.target)
        edges.setdefault((found.source, found.target), found)
    cycles = [cycle_through(group[0], graph, set(group)) for group in strongly_connected(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(describe(cycle, edges) for cycle in cycles)


# -- one-way dependencies ---------------------------------------------------------------------------------------------


def test_hosts_never_import_jobs() -> None:
    upward = [found for found in imports_from("hosts") if within(found.target, "jobs")]
    assert not upward, "hosts/ imports jobs/ (jobs sits above hosts):" + listing(upward)


def test_remoting_imports_only_itself() -> None:
    """The bottom layer: pypsrp below it, and nothing of hosts' models, inventory, vault, jobs or console."""
    upward = [found for found in imports_from("hosts.remoting") if not within(found.target, "hosts.remoting")]
    assert not upward, "hosts/remoting imports from above it:" + listing(upward)


def hosts_layer(module: str) -> int:
    """The index in HOSTS_LAYERS of the most specific layer the module belongs to."""
    return max((i for i, layer in enumerate(HOSTS_LAYERS) if within(module, layer)), key=lambda i: len(HOSTS_LAYERS[i]))


def test_each_part_of_hosts_imports_only_its_own_layer_and_those_below() -> None:
    """Above all: the vault imports nothing of the inventory (the inventory's analysis reads the vault)."""
    upward = [
        found
        for found in imports_from("hosts")
        if within(found.target, "hosts") and hosts_layer(found.target) > hosts_layer(found.source)
    ]
    assert not upward, f"an import upward through {' < '.join(HOSTS_LAYERS)}:" + listing(upward)


def test_nothing_imports_the_simulator() -> None:
    found = [found for found in all_imports() if within(found.target, "hypervsim")]
    assert not found, "only tests, benchmarks and the demo command may use hypervsim:" + listing(found)


def test_hosts_and_jobs_use_only_the_leaf_modules_of_console() -> None:
    wiring = [
        found
        for found in imports_from("hosts", "jobs")
        if within(found.target, "console") and found.target not in CONSOLE_LEAVES
    ]
    assert not wiring, f"hosts/ and jobs/ may import only {sorted(CONSOLE_LEAVES)} of console:" + listing(wiring)


def test_nothing_imports_the_api() -> None:
    """The API sits on top: it translates requests into jobs' and hosts' actions, and nothing below calls it."""
    found = [found for found in all_imports() if within(found.target, "api") and not within(found.source, "api")]
    assert not found, "only api/ itself may import api/:" + listing(found)


def test_the_api_uses_only_the_leaf_modules_of_console() -> None:
    wiring = [
        found for found in imports_from("api") if within(found.target, "console") and found.target not in CONSOLE_LEAVES
    ]
    assert not wiring, f"api/ may import only {sorted(CONSOLE_LEAVES)} of console:" + listing(wiring)


def test_the_leaf_modules_of_console_import_nothing_of_ours() -> None:
    leaves = [found for found in all_imports() if found.source in CONSOLE_LEAVES]
    assert not leaves, "a leaf module of console imports first-party code:" + listing(leaves)


# -- function-local imports -------------------------------------------------------------------------------------------


def local_imports() -> list[Import]:
    by_statement = {(found.path, found.line): found for found in all_imports() if found.local}
    return list(by_statement.values())


def test_few_first_party_imports_hide_inside_functions() -> None:
    found = local_imports()
    assert len(found) <= MAX_LOCAL_IMPORTS, (
        f"{len(found)} function-local first-party imports (at most {MAX_LOCAL_IMPORTS}); import at module level "
        "unless that makes a cycle:" + listing(found)
    )


@pytest.mark.parametrize("part", PARTS)
def test_each_function_local_import_says_why(part: str) -> None:
    silent = [found for found in local_imports() if within(found.source, part) and not found.commented]
    assert not silent, "function-local imports without a comment saying why:" + listing(silent)


# -- the catalog and the simulator ------------------------------------------------------------------------------------


def test_the_catalog_imports_each_of_its_modules_by_name() -> None:
    modules = {module_name(path) for path in (ROOT / "hosts/remoting/catalog").glob("*.py") if path.stem != "__init__"}
    imported = {found.target for found in all_imports() if found.source == "hosts.remoting.catalog"}
    assert modules <= imported, f"catalog/__init__.py does not import {sorted(modules - imported)}"


def public_operations() -> set[type[Operation]]:  # type: ignore[type-arg]
    named = (getattr(catalog, name) for name in catalog.__all__)
    return {value for value in named if isinstance(value, type) and issubclass(value, Operation)}


def test_every_catalog_operation_is_a_public_name_of_the_catalog() -> None:
    hidden = set(catalog.operations()) - public_operations()
    assert not hidden, f"operations missing from catalog.__all__: {sorted(cls.__name__ for cls in hidden)}"


# Commands the simulator implements that the console never sends, each for a reason outside the console.
SIMULATOR_ONLY = {
    "Get-Command": "built into every JEA endpoint (RestrictedRemoteServer); the simulator answers it as Windows does",
    "Get-Item": "how the seed's export script reads one certificate; the console lists the store instead",
}


def test_the_catalogs_cmdlets_are_exactly_the_simulators() -> None:
    sent = set().union(*(cls.cmdlets() for cls in public_operations()))
    implemented = set(hypervsim.CMDLETS)
    assert sent <= implemented, f"the console sends but the simulator lacks: {sorted(sent - implemented)}"
    assert implemented - sent == set(SIMULATOR_ONLY), (
        f"the simulator implements but the catalog never sends: {sorted(implemented - sent)} "
        f"(only {sorted(SIMULATOR_ONLY)} may be, each for its reason)"
    )
