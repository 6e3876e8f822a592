"""Imports run one way: schemas <- topics <- workers <- orderbus, and inside orderbus
ops <- lab <- commands and ops <- console <- commands (lab and console, two wings on one floor,
never import each other: only the command line imports the console); infra stands apart and is
used only from workers and orderbus. Nothing imports in a circle. Read from the source with
`ast`: no module is run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "topics", "workers", "orderbus", "infra")

# the longest matching prefix gives a module its floor; a module may import its own floor and
# those below it, never one above (workers.runtime.settings is on the workers floor)
FLOORS = {
    "schemas": 0,
    "topics": 1,
    "workers": 2,
    "orderbus.ops": 3,
    "orderbus.lab": 4,
    "orderbus.console": 4,  # the operator's web console: a wing beside the lab
    "orderbus.commands": 5,
    "orderbus": 6,  # its face and `python -m orderbus`
}
# infra imports none of the others (and schemas and topics none of it): it starts and probes
# the local Kafka and PostgreSQL, and only the workers' settings and the command line call it
INFRA = "infra"
INFRA_USERS = ("workers", "orderbus")
# wings on one floor: a module of one imports nothing of another
WINGS = ("orderbus.lab", "orderbus.console")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imported(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The project modules a module imports, at its top or inside a function."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from pkg import mod` names the module mod; `from mod import name`, the module mod
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            names = [n for n in names[:-1] if n in modules] or names[-1:]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        name: imported(ast.parse(path.read_text(), str(path)), modules) - {name}
        for name, path in modules.items()
    }


def floor(module: str) -> int | None:
    prefixes = [p for p in FLOORS if module == p or module.startswith(p + ".")]
    return FLOORS[max(prefixes, key=len)] if prefixes else None


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def wrong_way(imports: dict[str, set[str]]) -> list[str]:
    out = []
    for module, targets in sorted(imports.items()):
        for target in sorted(targets):
            if in_package(module, INFRA):
                if not in_package(target, INFRA):
                    out.append(f"{module} -> {target}: infra imports nothing of the others")
            elif in_package(target, INFRA):
                if not any(in_package(module, p) for p in INFRA_USERS):
                    out.append(f"{module} -> {target}: only {', '.join(INFRA_USERS)} use infra")
            elif floor(target) > floor(module):
                out.append(f"{module} -> {target}: runs back up a floor or a wing")
            elif any(
                in_package(module, a) and in_package(target, b)
                for a in WINGS
                for b in WINGS
                if a != b
            ):
                out.append(f"{module} -> {target}: one wing imports another")
    return out


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in imports.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(imports):
        if node not in index:
            visit(node)
    return out


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    return graph()


def test_every_module_has_a_floor(imports):
    assert [m for m in imports if not in_package(m, INFRA) and floor(m) is None] == []


def test_no_import_runs_back_up(imports):
    assert wrong_way(imports) == []


def test_no_import_cycle(imports):
    assert cycles(imports) == []


@pytest.mark.parametrize(
    "module, target",
    [
        ("topics.read", "workers.runtime.settings"),  # a floor up
        ("orderbus.ops.demo", "orderbus.commands.orders"),  # a wing up
        ("orderbus.lab.bench", "orderbus.commands.cli"),
        ("orderbus.console.app", "orderbus.lab.sandbox"),  # a wing beside
        ("orderbus.lab.bench", "orderbus.console.app"),
        ("orderbus.ops.top", "orderbus.console.render"),  # a wing up
        ("workers.runtime.settings", "orderbus.console.auth"),
        ("infra.procs", "workers.runtime.settings"),  # out of infra
        ("schemas.codec", "infra.procs"),  # into infra from below workers
    ],
)
def test_a_wrong_import_is_caught(imports, module, target):
    assert wrong_way({**imports, module: imports[module] | {target}}) != []


def test_only_the_command_line_imports_the_console(imports):
    users = {
        m for m, targets in imports.items() for t in targets if in_package(t, "orderbus.console")
    }
    assert {m for m in users if not in_package(m, "orderbus.console")} == {
        "orderbus.commands.console"
    }


def test_a_circle_is_caught(imports):
    assert cycles({**imports, "topics.catalogue": imports["topics.catalogue"] | {"topics.acl"}})
