"""No package of smsroute imports a package above it. Every import of every module (at module level
or inside a function, absolute or relative) is mapped to the top-level subpackage it reaches, and
the packages are ranked, lowest first:

    config, metrics, logs, aio, gc_tuning, health, smpp  (the base: settings, metrics, logs, helpers,
                                                         the SMPP protocol library)
    < models < rules < providers < streams < sinks < ingress < engines < cli

A package may import its own rank and those below it. The two engines share a rank and must not
import each other; nothing below ``engines`` may import an engine (the core knows no engine). And the
graph of packages has no cycle, not even within a rank. The test modules, for their part, import
support modules (tests/*.py) and never one another."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "smsroute"
TESTS = ROOT / "tests"

RANKS = [
    {"config", "metrics", "logs", "aio", "gc_tuning", "health", "smpp"},
    {"models"},
    {"rules"},
    {"providers"},
    {"streams"},
    {"sinks"},
    {"ingress"},
    {"engines", "engines.embedded", "engines.kafka"},
    {"cli", "__main__"},
]
"""Lowest first. ``engines`` is engines/__init__.py and engines/base.py, the interface both engines
share; ``schemas`` (Avro files) and the package's own ``__init__`` import nothing of ours."""
RANK = {layer: rank for rank, layers in enumerate(RANKS) for layer in layers}
ENGINES = {"engines.embedded", "engines.kafka"}


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module, dotted (``smsroute.ingress.app``)."""
    target: str
    """What it imports, dotted and absolute (``smsroute.providers.base``)."""
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} (line {self.line})"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> Iterator[Import]:
    """Every import in the file, wherever it is (module level, functions, ``if TYPE_CHECKING``)."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (Import(module, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # each name a module of the package, or a name in the module: either way within ``origin``
            yield from (Import(module, f"{origin}.{alias.name}", node.lineno) for alias in node.names)


def layer(dotted: str, top: str = "smsroute") -> str | None:
    """The layer of a module of ours (``engines.kafka`` for any module of that engine), else None."""
    parts = dotted.split(".")
    if parts[0] != top:
        return None
    if len(parts) == 1:
        return top
    if parts[1] == "engines" and len(parts) > 2 and f"engines.{parts[2]}" in ENGINES:
        return f"engines.{parts[2]}"
    return parts[1]


def violations(root: Path) -> list[str]:
    """What breaks the layering in the package at ``root``: upward imports, engines importing each
    other, unknown layers, and cycles between layers; each named with the module and the import."""
    found: list[str] = []
    edges: dict[str, dict[str, Import]] = {}
    for path in sorted(root.rglob("*.py")):
        for imported in imports(path, root):
            source, target = layer(imported.module, root.name), layer(imported.target, root.name)
            if target is None or source == target or root.name in (source, target):
                continue
            if source not in RANK or target not in RANK:
                found.append(f"{imported}: {source if source not in RANK else target} has no rank in RANKS")
                continue
            if RANK[target] > RANK[source]:
                found.append(f"{imported}: {source} may not import {target}, a layer above it")
            elif {source, target} <= ENGINES:
                found.append(f"{imported}: one engine may not import the other")
            edges.setdefault(source, {}).setdefault(target, imported)
    found += [f"cycle between packages: {cycle}" for cycle in cycles(edges)]
    return found


def cycles(edges: dict[str, dict[str, Import]]) -> list[str]:
    """Each cycle of the graph once, as ``a -> b -> a`` with the import behind each step."""
    found: dict[frozenset[str], str] = {}

    def visit(node: str, path: list[str]) -> None:
        for target in sorted(edges.get(node, {})):
            if target in path:
                loop = path[path.index(target) :] + [target]
                steps = "; ".join(str(edges[a][b]) for a, b in zip(loop, loop[1:], strict=False))
                found.setdefault(frozenset(loop), f"{' -> '.join(loop)} ({steps})")
            else:
                visit(target, [*path, target])

    for start in sorted(edges):
        visit(start, [start])
    return list(found.values())


def test_no_package_imports_one_above_it_and_packages_form_no_cycle() -> None:
    assert violations(PACKAGE) == []


def test_every_package_has_a_rank() -> None:
    """A new subpackage or top-level module must be placed in RANKS, or the test above cannot judge it."""
    found = {layer(module_name(path, PACKAGE)) for path in PACKAGE.rglob("*.py")} - {"smsroute"}
    assert sorted(found - RANK.keys()) == []


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"models/__init__.py": "", "models/raw.py": "def f():\n    from ..engines.kafka import log\n"},
            "smsroute.models.raw imports smsroute.engines.kafka.log (line 2): models may not import engines.kafka",
        ),
        (
            {"streams/build.py": "from smsroute.sinks import webhook\n", "sinks/webhook.py": ""},
            "smsroute.streams.build imports smsroute.sinks.webhook (line 1): streams may not import sinks",
        ),
        (
            {"engines/embedded/engine.py": "from ..kafka import worker\n", "engines/kafka/worker.py": ""},
            "smsroute.engines.embedded.engine imports smsroute.engines.kafka.worker (line 1): one engine may not",
        ),
        (
            {"metrics.py": "from . import health\n", "health.py": "from .metrics import REGISTRY\n"},
            "cycle between packages: health -> metrics -> health",
        ),
        ({"plugins/x.py": "from smsroute import config\n"}, "plugins has no rank in RANKS"),
    ],
    ids=["upward-in-a-function", "streams-to-sinks", "engine-to-engine", "cycle-in-a-rank", "unranked"],
)
def test_the_check_finds_each_kind_of_violation(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    root = write(tmp_path / "smsroute", {"__init__.py": "", **files})
    found = violations(root)
    assert [problem for problem in found if expected in problem], found


def test_no_test_module_imports_another() -> None:
    """Tests share fixtures through conftest.py and the support modules at tests/ root, never by
    importing a test module (whose fixtures would then be defined twice)."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
        for path in sorted(TESTS.rglob("test_*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in ([alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""])
        if name.split(".")[0].startswith("test_") or name.split(".")[0] == "conftest"
    ]
    assert found == []
