"""The flows of an OpenFaaS gateway (or ``faasflow gateway``), reached over HTTP.

Flows are the functions that ``GET /system/functions`` lists with the label
``faas-flow: "1"``; their description is the annotation ``faas-flow-desc``. Everything
else goes to the flow's own routes through the gateway (``/function/FLOW/...``): the
JSON export (``?export-dag=true``), ``/requests``, ``/flow/ID/state|history|result`` and
the control routes, with the flow's control token when one is configured.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from faasflow.dashboard.sources import VERBS, FlowSummary, SourceError, check_rid
from faasflow.errors import ConfigurationError
from faasflow.httpclient import new_client
from faasflow.server.echo import echo

__all__ = ["FLOW_LABEL", "DESCRIPTION_ANNOTATION", "GatewaySource"]

FLOW_LABEL = "faas-flow"
"""The label (value ``"1"``) that marks a function as a flow, as faas-flow's tower read it."""
DESCRIPTION_ANNOTATION = "faas-flow-desc"

REQID = "X-Faas-Flow-Reqid"
LIST_TTL = 2.0
"""Seconds the function list is reused: the pages poll every second, for every flow."""


class GatewaySource:
    """Flows served by flow servers behind a gateway.

    Args:
        gateway: the gateway's URL (``http://127.0.0.1:8080``).
        basic_auth: ``(user, password)`` for the gateway's ``/system/*`` routes.
        control_token: the flows' control token (``faasflow_control_token``), sent as
            ``Authorization: Bearer`` on the flows' state and control routes.
        timeout: seconds each call may take.

    Raises:
        ConfigurationError: ``control_token`` is not printable ASCII (no header could
            carry it, as no flow server accepts it).
    """

    kind = "gateway"

    def __init__(
        self,
        gateway: str,
        *,
        basic_auth: tuple[str, str] | None = None,
        control_token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if control_token and not (control_token.isascii() and control_token.isprintable()):
            raise ConfigurationError("--control-token: the token must be printable ASCII")
        self.gateway = gateway.rstrip("/")
        self._basic_auth = basic_auth
        self._control = {"Authorization": f"Bearer {control_token}"} if control_token else {}
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._listed: tuple[float, list[FlowSummary]] | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = new_client(timeout=self._timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _call(self, method: str, path: str, **options: Any) -> httpx.Response:
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            return await self._client.request(method, self.gateway + path, **options)
        except httpx.HTTPError as exc:
            raise SourceError(502, f"gateway {self.gateway} unreachable: {exc}") from exc

    async def flows(self) -> list[FlowSummary]:
        now = time.monotonic()
        if self._listed is not None and now - self._listed[0] < LIST_TTL:
            return self._listed[1]
        auth = httpx.BasicAuth(*self._basic_auth) if self._basic_auth else None
        answer = await self._call("GET", "/system/functions", auth=auth)
        if answer.status_code == 401:
            raise SourceError(502, "the gateway refused the dashboard's credentials "
                                   "(--gateway-user/--gateway-password)")
        if answer.status_code != 200:
            raise SourceError(502, f"gateway /system/functions answered {answer.status_code}")
        try:
            functions = answer.json()
            found = [
                FlowSummary(item["name"], (item.get("annotations") or {}).get(
                    DESCRIPTION_ANNOTATION))
                for item in functions
                if (item.get("labels") or {}).get(FLOW_LABEL) == "1"
            ]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SourceError(502, f"gateway /system/functions: unexpected answer ({exc})") from exc
        found.sort(key=lambda flow: flow.name)
        self._listed = (now, found)
        return found

    async def _flow_path(self, flow: str) -> str:
        if flow not in {summary.name for summary in await self.flows()}:
            raise SourceError(404, f"no flow {echo(flow)}")
        return f"/function/{quote(flow, safe='')}"

    async def _json(self, flow: str, path: str, **options: Any) -> Any:
        answer = await self._call("GET", await self._flow_path(flow) + path, **options)
        _check(answer, flow)
        try:
            return answer.json()
        except ValueError as exc:
            raise SourceError(502, f"flow {flow!r} answered with invalid JSON") from exc

    async def export(self, flow: str) -> dict[str, Any]:
        value: dict[str, Any] = await self._json(flow, "/", params={"export-dag": "true"})
        return value

    async def list_requests(
        self, flow: str, *, status: Sequence[str] | None, limit: int, before: str | None
    ) -> dict[str, Any]:
        params = {"limit": str(limit)}
        if status:
            params["status"] = ",".join(status)
        if before:
            params["before"] = before
        value: dict[str, Any] = await self._json(
            flow, "/requests", params=params, headers=self._control
        )
        return value

    async def counts(self, flow: str, statuses: Sequence[str]) -> dict[str, int]:
        value: dict[str, int] = await self._json(
            flow, "/counts", params={"status": ",".join(statuses)}, headers=self._control
        )
        return value

    async def request(self, flow: str, rid: str) -> dict[str, Any]:
        path = f"/flow/{check_rid(rid)}/state"
        value: dict[str, Any] = await self._json(flow, path, headers=self._control)
        return value

    async def history(self, flow: str, rid: str) -> list[dict[str, Any]]:
        path = f"/flow/{check_rid(rid)}/history"
        value: list[dict[str, Any]] = await self._json(flow, path, headers=self._control)
        return value

    async def result(self, flow: str, rid: str) -> bytes:
        path = await self._flow_path(flow) + f"/flow/{check_rid(rid)}/result"
        answer = await self._call("GET", path, headers=self._control)
        if answer.status_code == 409:  # failed or stopped: the body is the state, not text
            raise SourceError(409, f"request {rid} has no result: it did not succeed")
        _check(answer, flow)
        return answer.content

    async def execute(self, flow: str, body: bytes, query: str) -> str:
        path = await self._flow_path(flow) + "/" + (f"?{query}" if query else "")
        answer = await self._call("POST", path, content=body)
        rid: str | None = answer.headers.get(REQID)
        if rid:
            # A sync flow that failed still started a request: show it rather than an error.
            return rid
        _check(answer, flow)
        raise SourceError(502, f"flow {flow!r} answered {answer.status_code} without {REQID}")

    async def control(self, flow: str, rid: str, verb: str) -> str:
        if verb not in VERBS:
            raise SourceError(404, f"unknown action {echo(verb)}: use {', '.join(VERBS)}")
        path = await self._flow_path(flow) + f"/flow/{check_rid(rid)}/{verb}"
        answer = await self._call("POST", path, headers=self._control)
        _check(answer, flow)
        try:
            return str(answer.json()["status"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(502, f"flow {flow!r}: unexpected answer to {verb}") from exc


def _check(answer: httpx.Response, flow: str) -> None:
    """Raise the dashboard's error for a flow server's (or the gateway's) error answer."""
    code = answer.status_code
    if code < 400:
        return
    text = answer.text.strip() or f"status {code}"
    if code in (400, 404, 409, 410, 413):
        raise SourceError(code, text)
    if code in (401, 403):
        raise SourceError(502, f"flow {flow!r} refused the dashboard (set --control-token): "
                               f"{text}")
    raise SourceError(502, f"flow {flow!r} answered {code}: {text}")
