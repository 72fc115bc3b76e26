"""``/system/*``: the gateway's API for listing functions, and our registration API.

The listing routes answer as the real gateway does (faas-cli ``list``, ``describe``,
``version`` and the dashboard read them). Two routes are ours, for registering a
running HTTP server as a function at run time (tests start flow servers and register
them this way):

- ``POST /system/register`` with JSON ``{"name", "url", "labels"?, "annotations"?,
  "image"?}`` → 201 (new) or 200 (replaced), body the function's status object;
- ``DELETE /system/register/{name}`` → 204; ``DELETE /system/functions`` with
  ``{"functionName": NAME}`` (what ``faas-cli remove`` sends) does the same.

Deploying an image (``POST``/``PUT /system/functions``) is answered 501.
"""

from __future__ import annotations

import json
import platform
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from faasflow._version import __version__
from faasflow.errors import ConfigurationError
from faasflow.gateway.config import check_function_name, check_upstream_url
from faasflow.gateway.registry import FunctionEntry, Kind, Registry
from faasflow.gateway.wire import body_too_large, http_error, json_response, response
from faasflow.server.bodies import BodyTooLarge, read_body

PROVIDER_NAME = "faasflow-gateway"
ORCHESTRATION = "local"

_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386"}  # fmt: skip


def go_arch() -> str:
    """This machine's architecture as Go names it (``amd64``, ``arm64``)."""
    machine = platform.machine().lower()
    return _GO_ARCH.get(machine, machine)


def system_info() -> dict[str, Any]:
    """The ``/system/info`` object, shaped as the real gateway's."""
    return {
        "provider": {
            "provider": PROVIDER_NAME,
            "version": {"release": __version__, "sha": "local"},
            "orchestration": ORCHESTRATION,
        },
        "version": {
            "commit_message": "faasflow local gateway",
            "release": __version__,
            "sha": "local",
        },
        "arch": go_arch(),
    }


class SystemAPI:
    """The ``/system/*`` handlers over one registry; request bodies over
    ``max_body_size`` bytes are refused with 413."""

    def __init__(self, registry: Registry, max_body_size: int) -> None:
        self.registry = registry
        self.max_body_size = max_body_size

    async def list_functions(self, request: Request) -> Response:
        """``GET /system/functions`` (``?namespace=`` is accepted and ignored)."""
        return json_response([self.registry.status(e) for e in self.registry.entries()])

    async def function_status(self, request: Request) -> Response:
        """``GET /system/function/{name}``; 404 for an unknown name."""
        name = request.path_params["name"]
        entry = self.registry.resolve(name)
        if entry is None:
            return http_error(404, f"No such function: {name}")
        return json_response(self.registry.status(entry))

    async def info(self, request: Request) -> Response:
        """``GET /system/info``."""
        return json_response(system_info())

    async def deploy(self, request: Request) -> Response:
        """``POST``/``PUT /system/functions``: images cannot be deployed here."""
        return http_error(
            501,
            "faasflow gateway cannot deploy images: run the function's server yourself "
            'and register it with POST /system/register {"name": ..., "url": ...}',
        )

    async def register(self, request: Request) -> Response:
        """``POST /system/register``: bind a name to a running HTTP server."""
        try:
            body = await read_body(request, self.max_body_size)
        except BodyTooLarge as exc:
            return body_too_large(exc.limit)
        try:
            entry = _entry_from(body)
        except (ValueError, ConfigurationError) as exc:
            return http_error(400, f"bad registration: {exc}")
        is_new = self.registry.register(entry)
        return json_response(self.registry.status(entry), status=201 if is_new else 200)

    async def unregister(self, request: Request) -> Response:
        """``DELETE /system/register/{name}``."""
        return self._remove(request.path_params["name"])

    async def remove(self, request: Request) -> Response:
        """``DELETE /system/functions`` with ``{"functionName": NAME}`` (faas-cli remove)."""
        try:
            raw = await read_body(request, self.max_body_size)
        except BodyTooLarge as exc:
            return body_too_large(exc.limit)
        try:
            body = json.loads(raw)
            name = body["functionName"]
            if not isinstance(name, str):
                raise TypeError("functionName is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            return http_error(400, f'expected {{"functionName": NAME}}: {exc}')
        return self._remove(name)

    def _remove(self, name: str) -> Response:
        if self.registry.unregister(name) is not None:
            return response(204, length=False)
        entry = self.registry.get(name)
        if entry is None:
            return http_error(404, f"No such function: {name}")
        what = "a handler folder" if entry.kind is Kind.FOLDER else "a flow the gateway runs"
        return http_error(400, f"{name} is {what}; only registered functions can be removed")


def _entry_from(body: bytes) -> FunctionEntry:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    unknown = set(value) - {"name", "url", "labels", "annotations", "image"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    name, url = value.get("name"), value.get("url")
    if not isinstance(name, str) or not isinstance(url, str):
        raise ValueError('"name" and "url" are required strings')
    image = value.get("image") or ""
    if not isinstance(image, str):
        raise ValueError('"image" must be a string')
    return FunctionEntry(
        name=check_function_name(name, "name"),
        kind=Kind.UPSTREAM,
        url=check_upstream_url(url, "url"),
        image=image,
        labels=_string_map(value, "labels"),
        annotations=_string_map(value, "annotations"),
    )


def _string_map(value: dict[str, Any], key: str) -> dict[str, str]:
    found = value.get(key) or {}
    if not isinstance(found, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in found.items()
    ):
        raise ValueError(f'"{key}" must be an object of strings')
    return dict(found)
