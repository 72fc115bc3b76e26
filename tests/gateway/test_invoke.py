"""``/function/NAME``: the synchronous invoke, over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.responses import Response

from .conftest import StartGateway
from .fakes import FakeServer, Seen

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
MakeFake = Callable[..., tuple[FakeServer, str]]


def test_invoke_keeps_method_subpath_query_and_headers(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    function, url = fake()
    _, gateway = start_gateway(upstreams={"echo": url})
    before = time.time_ns()
    answer = client.put(
        f"{gateway}/function/echo.openfaas-fn/a/b%2Fc?x=1&x=2&y=%20z",
        content=b"payload",
        headers={"X-Custom": "kept", "Content-Type": "application/x-test"},
    )
    assert answer.status_code == 200
    assert answer.content == b"payload"
    assert answer.headers["X-Echo-Method"] == "PUT"
    assert answer.headers["X-Echo-Path"] == "/a/b%2Fc"
    assert answer.headers["X-Echo-Query"] == "x=1&x=2&y=%20z"
    assert UUID.match(answer.headers["X-Call-Id"])
    assert before <= int(answer.headers["X-Start-Time"]) <= time.time_ns()
    assert answer.headers["X-Served-By"].startswith("faasflow-gateway/")

    (seen,) = function.wait_for(1)
    assert seen.method == "PUT"
    assert seen.path == "/a/b%2Fc"
    assert seen.header("x-custom") == "kept"
    assert seen.header("content-type") == "application/x-test"
    assert seen.header("x-call-id") == answer.headers["X-Call-Id"]
    assert seen.header("x-start-time") == answer.headers["X-Start-Time"]
    assert re.match(r"^127\.0\.0\.1:\d+$", seen.header("x-forwarded-for") or "")
    assert seen.header("x-forwarded-host") == gateway.removeprefix("http://")
    # Like Go's transport, a body of unknown length is streamed chunked.
    assert seen.header("transfer-encoding") == "chunked"


@pytest.mark.parametrize(
    ("path", "function_path"),
    [("", "/"), ("/", "/"), ("/deep/er/", "/deep/er/")],
)
def test_function_path(
    fake: MakeFake,
    start_gateway: StartGateway,
    client: httpx.Client,
    path: str,
    function_path: str,
) -> None:
    function, url = fake()
    _, gateway = start_gateway(upstreams={"echo": url})
    assert client.get(f"{gateway}/function/echo{path}").status_code == 200
    (seen,) = function.wait_for(1)
    assert (seen.method, seen.path, seen.query, seen.body) == ("GET", function_path, "", b"")
    assert seen.header("transfer-encoding") is None


def test_any_namespace_resolves(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, url = fake()
    _, gateway = start_gateway(upstreams={"echo": url})
    for name in ("echo", "echo.openfaas-fn", "echo.dev"):
        answer = client.post(f"{gateway}/function/{name}", content=name.encode())
        assert (answer.status_code, answer.content) == (200, name.encode())


def test_unknown_function_is_503_no_endpoints(
    start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, gateway = start_gateway()
    for name in ("nope", "nope.openfaas-fn"):
        answer = client.post(f"{gateway}/function/{name}", content=b"x")
        assert answer.status_code == 503
        # faas-provider's http.Error: the message, a newline, plain text.
        assert answer.content == f"No endpoints available for: {name}.\n".encode()
        assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert UUID.match(answer.headers["X-Call-Id"])


def test_bad_name_is_404_and_bad_method_405(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, url = fake()
    _, gateway = start_gateway(upstreams={"echo": url})
    answer = client.get(f"{gateway}/function/bad%20name")
    assert (answer.status_code, answer.content) == (404, b"404 page not found\n")
    answer = client.request("TRACE", f"{gateway}/function/echo")
    assert (answer.status_code, answer.content) == (405, b"")
    assert "X-Call-Id" in answer.headers


def test_function_status_headers_and_content_type_pass_through(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    async def teapot(seen: Seen) -> Response:
        return Response(
            b"short and stout",
            status_code=418,
            headers={"X-Call-Id": "the-function's", "Set-Cookie": "a=1"},
        )

    async def bare(seen: Seen) -> Response:
        # No Content-Type of its own: the caller's applies, else text/plain.
        return Response(b"x")

    _, teapot_url = fake(answer=teapot)
    _, bare_url = fake(answer=bare)
    _, gateway = start_gateway(upstreams={"teapot": teapot_url, "bare": bare_url})
    answer = client.get(f"{gateway}/function/teapot")
    assert (answer.status_code, answer.content) == (418, b"short and stout")
    assert answer.headers.get_list("X-Call-Id") == ["the-function's"]  # the function's wins
    assert answer.headers["Set-Cookie"] == "a=1"
    assert client.get(f"{gateway}/function/bare").headers["Content-Type"] == "text/plain"
    answer = client.post(
        f"{gateway}/function/bare", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert answer.headers["Content-Type"] == "application/json"


def test_caller_call_id_is_kept(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    function, url = fake()
    _, gateway = start_gateway(upstreams={"echo": url})
    mine = str(uuid.uuid4())
    answer = client.post(f"{gateway}/function/echo", content=b"", headers={"X-Call-Id": mine})
    (seen,) = function.wait_for(1)
    assert seen.all("x-call-id") == [mine]
    assert "X-Call-Id" not in answer.headers  # as MakeCallIDMiddleware: not echoed
    assert seen.header("content-length") == "0"  # Go sends an empty POST body's length


def test_many_mib_body_both_ways(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, url = fake()
    _, gateway = start_gateway(upstreams={"echo": url})
    payload = os.urandom(24 * 1024 * 1024)
    answer = client.post(f"{gateway}/function/echo", content=payload)
    assert answer.status_code == 200
    assert len(answer.content) == len(payload)
    assert hashlib.sha256(answer.content).digest() == hashlib.sha256(payload).digest()


def test_unreachable_and_slow_upstreams(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    import socket

    from .fakes import Gate

    gate = Gate()
    _, slow_url = fake(answer=gate.answer)
    with socket.socket() as holder:  # bound, not listening: connections are refused
        holder.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{holder.getsockname()[1]}"
        _, gateway = start_gateway(upstreams={"dead": dead, "slow": slow_url}, upstream_timeout=0.5)
        answer = client.post(f"{gateway}/function/dead", content=b"x")
        assert answer.status_code == 500
        assert answer.content == b"Can't reach service for: dead.\n"
    try:
        answer = client.post(f"{gateway}/function/slow", content=b"x")
        assert (answer.status_code, answer.content) == (502, b"")
    finally:
        gate.opened.set()


def test_handler_folders(
    functions_dir: Path, start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, gateway = start_gateway(functions_dir=functions_dir)
    answer = client.post(f"{gateway}/function/hello.openfaas-fn?a=1&a=2", content=b"Adam")
    assert answer.status_code == 200
    assert answer.text == "Hello Adam (POST a=1&a=2)"
    assert answer.headers["X-Handler"] == "hello"
    assert answer.headers["X-Call"] == answer.headers["X-Call-Id"]
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    answer = client.post(f"{gateway}/function/broken", content=b"")
    assert (answer.status_code, answer.content) == (500, b"Can't reach service for: broken.\n")
    answer = client.post(f"{gateway}/function/not-a-function", content=b"")
    assert answer.content == b"No endpoints available for: not-a-function.\n"


def test_registered_upstream_wins_over_folder(
    fake: MakeFake, functions_dir: Path, start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, url = fake()
    _, gateway = start_gateway(functions_dir=functions_dir, upstreams={"hello": url})
    assert client.post(f"{gateway}/function/hello", content=b"echoed").content == b"echoed"
