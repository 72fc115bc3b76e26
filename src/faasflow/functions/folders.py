"""Functions that are OpenFaaS ``python3-http`` handler folders on disk.

Function ``NAME`` is ``ROOT/NAME/handler.py`` defining ``handle(event, context)``, the
layout ``faas-cli new NAME --lang python3-http`` writes, so a function developed here
deploys unchanged. The call mirrors the template's ``index.py``:

- ``event`` has ``body`` (bytes), ``headers`` (case-insensitive), ``method``, ``query``
  (ordered multi-dict) and ``path`` (``"/"``: a function called by name has no sub-path);
  ``context`` has ``hostname`` (``$HOSTNAME``, else ``"localhost"``).
- the return value becomes the response as Flask would make it: ``None`` → empty 200;
  a ``dict`` → ``statusCode`` (default 200), ``body`` (a ``dict``/``list`` is sent as
  JSON, anything else as text) and ``headers`` (a dict or a list of pairs, overriding
  the defaults); a ``str``/``bytes`` → 200; a ``(body, status[, headers])`` tuple as in
  Flask; a ``list`` → JSON.
- an exception in ``handle`` → a 500 response, logged with its traceback.

Deliberate differences from the template: a ``bytes`` body is sent as is (the template
sends ``str(body)``, i.e. the text ``"b'...'"``), and the 500
body names the exception (``Internal Server Error: ValueError: ...``) instead of Flask's
generic HTML page, because here the developer is the one reading it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from faasflow.callables import call_user
from faasflow.errors import FunctionError, FunctionNotFoundError
from faasflow.functions.base import FunctionInvoker, FunctionRequest, FunctionResponse
from faasflow.functions.gateway import REQUEST_ID_HEADER

logger = logging.getLogger(__name__)

_TEXT_HTML = "text/html; charset=utf-8"  # Flask's default for str/bytes responses
_JSON = "application/json"

# Importing a folder changes process-wide state (sys.path, sys.modules): one import at a
# time in the whole process, whichever HandlerFolders asks.
_IMPORT_LOCK = threading.Lock()


class EventHeaders(httpx.Headers):
    """Request headers, case-insensitive, with werkzeug's ``getlist`` as well."""

    def getlist(self, key: str) -> list[str]:
        return self.get_list(key)


class EventQuery(Mapping[str, str]):
    """The query string: ``query["k"]``/``get`` give the first value, ``getlist`` all.

    Unlike werkzeug's ``MultiDict`` (which groups values by name), :meth:`multi_items`
    keeps the pairs in the order they were sent.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = [(str(k), str(v)) for k, v in pairs]
        self._first: dict[str, str] = {}
        for key, value in self._pairs:
            self._first.setdefault(key, value)

    def __getitem__(self, key: str) -> str:
        return self._first[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __repr__(self) -> str:
        return f"EventQuery({self._pairs!r})"

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self._pairs if k == key]

    get_list = getlist  # httpx's spelling

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def to_dict(self) -> dict[str, str]:
        return dict(self._first)


@dataclass
class HandlerEvent:
    """What ``handle`` gets as ``event``, as in the ``python3-http`` template."""

    body: bytes
    headers: EventHeaders
    method: str
    query: EventQuery
    path: str = "/"


@dataclass
class HandlerContext:
    """What ``handle`` gets as ``context``, as in the ``python3-http`` template."""

    hostname: str


@dataclass(frozen=True)
class _Handler:
    folder: Path
    handle: Callable[..., Any]


def _valid_name(name: str) -> bool:
    # A function name is one folder below the root, never a path out of it.
    return bool(name) and name not in (".", "..") and not re.search(r"[/\\\x00]", name)


def _module_prefix(folder: Path) -> str:
    # One package per folder, unique per resolved path: the same folder name may exist
    # under two roots, and must not share modules.
    digest = hashlib.sha1(str(folder).encode(), usedforsecurity=False).hexdigest()[:12]
    safe = re.sub(r"\W", "_", folder.name)
    return f"_faasflow_handler_{safe}_{digest}"


def _top_level_names(folder: Path) -> set[str]:
    """Names that ``import X`` inside the folder resolves to the folder's own files."""
    names = set()
    for entry in folder.iterdir():
        if entry.suffix == ".py":
            names.add(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier():
            names.add(entry.name)
    return names


def _is_own(module_name: str, names: set[str]) -> bool:
    return module_name.partition(".")[0] in names


class HandlerFolders(FunctionInvoker):
    """Serve OpenFaaS ``python3-http`` handler folders under ``root``.

    Each ``handler.py`` is imported once, on first use, as a submodule of a package
    unique to its folder, so relative imports (``from .util import x``) work and two
    folders never share modules. The folder is on ``sys.path`` while it is imported so
    that top-level sibling imports (``import util``) work too; those siblings are then
    taken out of ``sys.modules`` again (the handler keeps its reference), so another
    folder's ``util`` is not mistaken for this one. An import done later, inside
    ``handle``, should be relative.

    ``handle`` may be ``def`` or ``async def``; it runs through
    :func:`faasflow.callables.call_user`.

    Args:
        root: the directory holding one folder per function.

    Raises (from :meth:`invoke`):
        FunctionNotFoundError: no folder ``root/NAME``.
        FunctionError: the folder has no ``handler.py``, it fails to import (the import
            error is ``__cause__``), or it defines no callable ``handle``.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self._handlers: dict[str, _Handler] = {}

    def __repr__(self) -> str:
        return f"HandlerFolders({str(self.root)!r})"

    def knows(self, name: str) -> bool:
        return _valid_name(name) and (self.root / name).is_dir()

    async def invoke(self, request: FunctionRequest) -> FunctionResponse:
        name = request.target
        if request.is_url:
            raise FunctionError(f"handler folders cannot call the URL {name!r}", function=name)
        if not self.knows(name):
            raise FunctionNotFoundError(f"no handler folder {name!r} in {self.root}", function=name)
        handler = self._handlers.get(name)
        if handler is None:
            # Importing runs user code (and may be slow): off the event loop.
            handler = await call_user(self._load, name)
        event = _make_event(request)
        context = HandlerContext(hostname=os.environ.get("HOSTNAME", "localhost"))
        try:
            result = await call_user(handler.handle, event, context)
            return _make_response(result)
        except Exception as exc:
            # The template's Flask app answers 500 to an exception in handle (or in
            # turning its result into a response); the operation decides what that means.
            logger.exception("handler %r (%s) raised", name, handler.folder)
            body = f"Internal Server Error: {type(exc).__name__}: {exc}"
            return FunctionResponse(
                status=500,
                body=body.encode("utf-8"),
                headers=httpx.Headers({"Content-Type": "text/plain; charset=utf-8"}),
            )

    def _load(self, name: str) -> _Handler:
        with _IMPORT_LOCK:
            cached = self._handlers.get(name)
            if cached is not None:
                return cached
            folder = self.root / name
            handler_file = folder / "handler.py"
            if not handler_file.is_file():
                raise FunctionError(
                    f"handler folder {name!r} ({folder}) has no handler.py", function=name
                )
            try:
                module = _import_handler(folder)
            except Exception as exc:
                raise FunctionError(
                    f"handler folder {name!r} ({folder}) failed to import: "
                    f"{type(exc).__name__}: {exc}",
                    function=name,
                ) from exc
            handle = getattr(module, "handle", None)
            if not callable(handle):
                raise FunctionError(
                    f"{handler_file} defines no handle(event, context) function",
                    function=name,
                )
            handler = _Handler(folder=folder, handle=handle)
            self._handlers[name] = handler
            return handler


def _import_handler(folder: Path) -> types.ModuleType:
    """Import ``folder/handler.py`` as ``<unique package>.handler``."""
    package = _module_prefix(folder)
    module_name = f"{package}.handler"
    existing = sys.modules.get(module_name)
    if existing is not None:
        # Another HandlerFolders over the same directory imported it already.
        return existing

    own = _top_level_names(folder)
    # A module of the same name imported earlier (an installed ``utils``, say) must not
    # answer this folder's ``import utils``. The standard library is the exception: it
    # keeps its modules, as in the real template, where the folder is not on sys.path
    # and a stray ``json.py`` next to the handler shadows nothing.
    shadowed = {
        k: m
        for k, m in sys.modules.items()
        if _is_own(k, own) and k.partition(".")[0] not in sys.stdlib_module_names
    }
    for key in shadowed:
        del sys.modules[key]
    before = set(sys.modules)
    path_entry = str(folder)
    sys.path.insert(0, path_entry)
    importlib.invalidate_caches()  # the folder may have been written a moment ago
    try:
        init = folder / "__init__.py"
        if init.is_file():
            spec = importlib.util.spec_from_file_location(
                package, init, submodule_search_locations=[path_entry]
            )
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {init} as a package")
            pkg = importlib.util.module_from_spec(spec)
            sys.modules[package] = pkg
            spec.loader.exec_module(pkg)
        else:
            pkg = types.ModuleType(package)
            pkg.__path__ = [path_entry]
            pkg.__package__ = package
            sys.modules[package] = pkg
        return importlib.import_module(module_name)
    except BaseException:
        for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
            del sys.modules[key]
        raise
    finally:
        with contextlib.suppress(ValueError):  # the handler rearranged sys.path itself
            sys.path.remove(path_entry)
        # The folder's own modules leave sys.modules again (the handler holds them), so
        # that the next folder's ``import util`` finds its own ``util``.
        for key in set(sys.modules) - before:
            if _is_own(key, own):
                del sys.modules[key]
        sys.modules.update(shadowed)


def _make_event(request: FunctionRequest) -> HandlerEvent:
    headers = EventHeaders(request.headers)
    if request.request_id:
        # What the handler would see behind a gateway.
        headers[REQUEST_ID_HEADER] = request.request_id
    return HandlerEvent(
        body=request.body,
        headers=headers,
        method=request.method.upper(),
        query=EventQuery(request.query),
        path="/",
    )


def _json_body(value: Any) -> bytes:
    # Flask's jsonify: sorted keys, compact separators, a trailing newline.
    return (json.dumps(value, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def _plain(value: Any) -> tuple[bytes, str] | None:
    """Body and content type for a plain (non-dict) return value, as Flask makes it."""
    if value is None:
        return b"", _TEXT_HTML
    if isinstance(value, str):
        return value.encode("utf-8"), _TEXT_HTML
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), _TEXT_HTML
    if isinstance(value, list):
        return _json_body(value), _JSON
    return None


def _make_response(result: Any) -> FunctionResponse:
    """Turn ``handle``'s return value into a response, as the template and Flask do."""
    if isinstance(result, dict):
        status = int(result.get("statusCode", 200))
        if "body" not in result:
            body, content_type = b"", _TEXT_HTML
        elif isinstance(result["body"], dict | list):
            body, content_type = _json_body(result["body"]), _JSON
        elif isinstance(result["body"], bytes | bytearray | memoryview):
            body, content_type = bytes(result["body"]), _TEXT_HTML
        else:
            body, content_type = str(result["body"]).encode("utf-8"), _TEXT_HTML
        return _response(status, body, content_type, result.get("headers"))
    if isinstance(result, tuple):
        return _tuple_response(result)
    plain = _plain(result)
    if plain is None:
        raise TypeError(
            f"handle returned {type(result).__name__}; expected a dict, str, bytes, "
            "list, tuple or None"
        )
    return _response(200, plain[0], plain[1], None)


def _tuple_response(result: tuple[Any, ...]) -> FunctionResponse:
    # Flask: (body, status), (body, headers) or (body, status, headers).
    status: Any = 200
    headers: Any = None
    if len(result) == 3:
        value, status, headers = result
    elif len(result) == 2:
        value, second = result
        if isinstance(second, dict | list):
            headers = second
        else:
            status = second
    else:
        raise TypeError(f"handle returned a tuple of {len(result)} items; expected 2 or 3")
    if isinstance(value, dict):
        body, content_type = _json_body(value), _JSON
    else:
        plain = _plain(value)
        if plain is None:
            raise TypeError(f"handle returned a tuple whose body is {type(value).__name__}")
        body, content_type = plain
    return _response(int(status), body, content_type, headers)


def _response(status: int, body: bytes, content_type: str, extra: Any) -> FunctionResponse:
    pairs: list[tuple[str, str]]
    if extra is None:
        pairs = []
    elif isinstance(extra, dict):
        pairs = [(str(k), str(v)) for k, v in extra.items()]
    else:
        pairs = [(str(k), str(v)) for k, v in extra]
    # Like werkzeug's headers.update: a Content-Type the handler sets replaces the
    # default one; repeated names (Set-Cookie) are all kept.
    if not any(k.lower() == "content-type" for k, _ in pairs):
        pairs.insert(0, ("Content-Type", content_type))
    return FunctionResponse(status=status, body=body, headers=httpx.Headers(pairs))
