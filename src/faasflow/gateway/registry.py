"""The functions the gateway knows, where each one runs, and how often it was called.

Three sources, looked up in this order:

1. **registered upstreams**: a name bound to an HTTP server (``--register``, or
   ``POST /system/register`` at run time);
2. **flows** the gateway started itself (``--flow``);
3. **handler folders** (``--functions DIR``): ``DIR/NAME/handler.py``.

A name in a URL may carry a namespace, ``NAME.openfaas-fn`` (faas-cli always adds
one): it resolves to ``NAME`` whatever the namespace, since there is only one here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faasflow.functions.folders import HandlerFolders
from faasflow.gateway.wire import go_time

NAMESPACE = "openfaas-fn"
"""The one namespace this gateway reports, the OpenFaaS default."""

ROUTE_NAME = re.compile(r"^[-a-zA-Z_0-9.]+$")
"""What the gateway's router accepts as ``{name}`` (its ``NameExpression``)."""

FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_][-a-zA-Z0-9_]*$")
"""A function's own name: a route name without dots, since a dot starts the namespace."""


class Kind(enum.StrEnum):
    """Where a function runs."""

    UPSTREAM = "upstream"
    FLOW = "flow"
    FOLDER = "folder"


@dataclass
class FunctionEntry:
    """One function as the gateway lists it.

    Attributes:
        name: the name without namespace.
        kind: where it runs.
        url: the HTTP server behind it (``None`` for a handler folder).
        image: what ``/system/functions`` reports as its image.
        labels: its labels (the gateway's ``--label`` options are merged in on listing).
        annotations: its annotations (likewise ``--annotation``).
        created_at: when it was registered, started or (folders) last changed.
    """

    name: str
    kind: Kind
    url: str | None = None
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if not self.image:
            self.image = f"local/{self.name}"


def split_namespace(name: str) -> tuple[str, str]:
    """``fn.ns`` → ``("fn", "ns")``; ``fn`` → ``("fn", "")`` (the gateway's getNameParts)."""
    head, dot, tail = name.rpartition(".")
    if dot and head:
        return head, tail
    return name, ""


class Registry:
    """The functions the gateway serves, and their invocation counts.

    Args:
        folders: the handler folders, if any.
        labels: extra labels per function name, merged over each function's own.
        annotations: extra annotations per function name, likewise.
    """

    def __init__(
        self,
        folders: HandlerFolders | None = None,
        *,
        labels: Mapping[str, Mapping[str, str]] | None = None,
        annotations: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.folders = folders
        self._upstreams: dict[str, FunctionEntry] = {}
        self._flows: dict[str, FunctionEntry] = {}
        self._labels = {k: dict(v) for k, v in (labels or {}).items()}
        self._annotations = {k: dict(v) for k, v in (annotations or {}).items()}
        self._counts: dict[str, int] = {}

    # -- changing it -------------------------------------------------------------
    def register(self, entry: FunctionEntry) -> bool:
        """Add or replace an upstream or flow; returns ``True`` when the name was new."""
        table = self._flows if entry.kind is Kind.FLOW else self._upstreams
        is_new = entry.name not in table
        table[entry.name] = entry
        return is_new

    def unregister(self, name: str) -> FunctionEntry | None:
        """Remove a registered upstream; returns it, or ``None`` if there was none."""
        return self._upstreams.pop(name, None)

    def record_invocation(self, name: str) -> None:
        """Count one call of ``name`` (sync, or an async one when the queue runs it)."""
        self._counts[name] = self._counts.get(name, 0) + 1

    # -- reading it --------------------------------------------------------------
    def resolve(self, requested: str) -> FunctionEntry | None:
        """The function a URL's ``{name}`` means, namespace or not; ``None`` if unknown."""
        entry = self.get(requested)
        if entry is None:
            base, namespace = split_namespace(requested)
            if namespace:
                entry = self.get(base)
        return entry

    def get(self, name: str) -> FunctionEntry | None:
        """The function called exactly ``name``, searched in resolution order."""
        entry = self._upstreams.get(name) or self._flows.get(name)
        if entry is None and self._is_folder(name):
            entry = self._folder_entry(name)
        return entry

    def entries(self) -> list[FunctionEntry]:
        """Every function, each name once (the first source wins), sorted by name."""
        found: dict[str, FunctionEntry] = {}
        for table in (self._upstreams, self._flows):
            for name, entry in table.items():
                found.setdefault(name, entry)
        if self.folders is not None and self.folders.root.is_dir():
            for child in self.folders.root.iterdir():
                if child.name not in found and self._is_folder(child.name):
                    found[child.name] = self._folder_entry(child.name)
        return [found[name] for name in sorted(found)]

    def invocations(self, name: str) -> int:
        """How many calls of ``name`` went through the gateway."""
        return self._counts.get(name, 0)

    def status(self, entry: FunctionEntry) -> dict[str, Any]:
        """The ``FunctionStatus`` JSON object of the real gateway, fields in its order."""
        return {
            "name": entry.name,
            "image": entry.image,
            "namespace": NAMESPACE,
            "labels": {**entry.labels, **self._labels.get(entry.name, {})},
            "annotations": {**entry.annotations, **self._annotations.get(entry.name, {})},
            "invocationCount": self.invocations(entry.name),
            "replicas": 1,
            "availableReplicas": 1,
            "createdAt": go_time(entry.created_at),
        }

    # -- handler folders ---------------------------------------------------------
    def _is_folder(self, name: str) -> bool:
        # Only folders that can be called: a routable name and a handler.py inside.
        return (
            self.folders is not None
            and FUNCTION_NAME.match(name) is not None
            and (self.folders.root / name / "handler.py").is_file()
        )

    def _folder_entry(self, name: str) -> FunctionEntry:
        assert self.folders is not None
        folder: Path = self.folders.root / name
        changed = datetime.fromtimestamp(folder.stat().st_mtime, UTC)
        return FunctionEntry(name=name, kind=Kind.FOLDER, created_at=changed)
