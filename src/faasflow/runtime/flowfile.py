"""Load a flow's ``define`` from ``FILE[:NAME]``, the way the CLI names a flow.

The file is imported by path (it need not be on ``sys.path`` or inside a package) under a
module name of its own, so two flows called ``flow.py`` in different folders, or the same
file loaded twice, never share a module. Its folder is on ``sys.path`` while it is
imported, so it can import its neighbours as it would when run as a script.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from faasflow.engine.definition import Define
from faasflow.errors import ConfigurationError

__all__ = ["DEFAULT_ATTRIBUTE", "FlowFile", "LoadError", "load_define", "split_target"]

DEFAULT_ATTRIBUTE = "define"

_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_counter = itertools.count(1)


class LoadError(ConfigurationError):
    """``FILE[:NAME]`` does not name a loadable ``define`` callable."""


@dataclass(frozen=True)
class FlowFile:
    """A loaded flow definition.

    Attributes:
        path: the file, resolved.
        attribute: the name looked up in it (``define`` by default).
        define: the callable ``define(flow, context)``.
    """

    path: Path
    attribute: str
    define: Define

    @property
    def stem(self) -> str:
        """The file name without its suffix: the default flow name."""
        return self.path.stem


def split_target(target: str) -> tuple[str, str]:
    """Split ``FILE[:NAME]`` into the file and the attribute name.

    Only a suffix that reads as a (dotted) Python name counts as ``:NAME``, and an
    existing file's name is never split, so a path with a colon in it
    (``C:\\flows\\x.py``, an existing ``a:b.py``) stays a path.
    """
    if Path(target).is_file():
        return target, DEFAULT_ATTRIBUTE
    head, sep, tail = target.rpartition(":")
    if sep and head and _ATTRIBUTE.match(tail):
        return head, tail
    return target, DEFAULT_ATTRIBUTE


def load_define(target: str) -> FlowFile:
    """Import the file named by ``target`` and return its ``define`` callable.

    Args:
        target: ``FILE`` or ``FILE:NAME``; ``NAME`` may be dotted (``flows.greet``).

    Raises:
        LoadError: the file is missing or not importable, has no such attribute, or the
            attribute is not callable; the message says which and how to fix it.
    """
    file_text, attribute = split_target(target)
    path = Path(file_text).expanduser()
    if not path.exists():
        raise LoadError(f"flow file {file_text!r} does not exist")
    if path.is_dir():
        raise LoadError(f"flow file {file_text!r} is a directory; name a Python file")
    path = path.resolve()
    module = _import(path, file_text)
    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise LoadError(_missing(file_text, attribute, module))
        value = getattr(value, part)
    if not callable(value):
        raise LoadError(
            f"{file_text}:{attribute} is a {type(value).__name__}, not a callable "
            "define(flow, context)"
        )
    return FlowFile(path=path, attribute=attribute, define=value)


def _import(path: Path, shown: str) -> types.ModuleType:
    # A unique, identifier-safe name: dataclasses, pickle and tracebacks need a module
    # that is really in sys.modules, and no two loads may overwrite each other.
    safe_stem = re.sub(r"\W", "_", path.stem)
    name = f"_faasflow_flow_{safe_stem}_{next(_counter)}"
    # SourceFileLoader accepts any suffix, so a flow file need not end in ".py".
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent)
    sys.path.insert(0, folder)
    try:
        loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise LoadError(f"importing {shown} raised {type(exc).__name__}: {exc}") from exc
    finally:
        # The file may have changed sys.path itself: remove our entry, not index 0.
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _missing(shown: str, attribute: str, module: types.ModuleType) -> str:
    candidates = sorted(
        key
        for key, value in vars(module).items()
        if isinstance(value, types.FunctionType)
        and not key.startswith("_")
        and value.__module__ == module.__name__
    )
    hint = f"; functions it defines: {', '.join(candidates)}" if candidates else ""
    return (
        f"{shown} has no attribute {attribute!r}: define it, or name the function with "
        f"{shown}:NAME{hint}"
    )
