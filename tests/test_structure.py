"""The package's shape: imports only go down the layers, and no module touches another's
private names.

Read from the source with :mod:`ast`, every import counted — at the top of a module, in
a function (deferred), under ``TYPE_CHECKING`` — so a cycle cannot hide in a late import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faasflow

SRC = Path(faasflow.__file__).resolve().parent

LAYERS: list[set[str]] = [
    {"errors", "resources", "httpclient", "lazy", "callables", "_failpoints", "_version"},
    {"config", "wire", "functions"},
    {"dsl", "tracing", "stores", "transports"},
    {"engine"},
    {"runtime"},
    {"workers", "metrics", "scaffold"},
    {"server"},
    {"gateway"},
    {"dashboard"},
    {"cli"},
    {"", "__main__"},  # the façade, faasflow/__init__.py, and python -m faasflow
]
"""Each part of the package (a subpackage or a top-level module), from the ground up: a
part imports only from the layers below its own."""

RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}

LIBRARY_PRIVATES = frozenset(
    {"_SubParsersAction", "_exit", "_run_exitfuncs", "_replace", "_asdict", "_fields"}
)
"""Underscored names of the standard library that are its documented API."""


@dataclass(frozen=True)
class Import:
    source: str  # dotted module that imports
    target: str  # dotted module (or module.name) imported
    line: int
    names: tuple[str, ...] = ()


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def imports(module: str, path: Path) -> Iterator[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield Import(module, target, node.lineno, tuple(a.name for a in node.names))


def unit(module: str) -> str:
    """The part of the package a module belongs to (``""`` for the façade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_part_has_a_layer() -> None:
    parts = {unit(module) for module, _ in modules()}
    assert parts <= set(RANK), f"no layer for {sorted(parts - set(RANK))}"


def test_imports_only_go_down_the_layers() -> None:
    upward = []
    for module, path in modules():
        for found in imports(module, path):
            if not found.target.startswith("faasflow"):
                continue
            targets = [found.target]
            if found.target == "faasflow":
                targets = [f"faasflow.{name}" for name in found.names]
            for target in targets:
                source_unit, target_unit = unit(module), unit(target)
                if source_unit == target_unit:
                    continue
                if RANK.get(target_unit, -1) >= RANK[source_unit]:
                    upward.append(f"{module}:{found.line} imports {target}")
    assert not upward, "imports that go up (or sideways) the layers:\n" + "\n".join(upward)


def _private_parts(dotted: str) -> list[int]:
    return [i for i, part in enumerate(dotted.split(".")) if _is_private(part)]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_another_packages_private_names() -> None:
    # A name (or module) with a leading underscore is private to the package that holds
    # it: ``faasflow.engine._keys`` to ``faasflow.engine``, ``faasflow._failpoints`` to
    # the whole package.
    touched = []
    for module, path in modules():
        for found in imports(module, path):
            if not found.target.startswith("faasflow"):
                continue
            for name in [found.target, *(f"{found.target}.{n}" for n in found.names)]:
                for index in _private_parts(name):
                    owner = ".".join(name.split(".")[:index])
                    if not (module == owner or module.startswith(owner + ".")):
                        touched.append(f"{module}:{found.line} imports {name}")
    assert not touched, "private names used outside their package:\n" + "\n".join(touched)


def test_no_module_reaches_into_private_attributes_of_other_objects() -> None:
    touched = []
    for module, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            if node.attr in LIBRARY_PRIVATES:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            touched.append(f"{module}:{node.lineno} uses {ast.unparse(node)}")
    assert not touched, "private attributes of other objects:\n" + "\n".join(touched)


def test_the_checks_see_what_they_should() -> None:
    # The checks above pass on this tree: make sure that is not because they see nothing.
    found = [i for module, path in modules() for i in imports(module, path)]
    assert any(i.target == "faasflow.engine" and "_keys" in i.names for i in found)
    deferred = [i for i in found if i.source == "faasflow.cli.worker"
                and i.target == "faasflow.workers"]
    assert deferred, "an import inside a function was not seen"
