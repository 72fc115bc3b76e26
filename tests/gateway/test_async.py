"""``/async-function/NAME``: the queue, its workers and the callbacks."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

import httpx
import pytest
from starlette.responses import Response

from faasflow.gateway import QUEUE_WORKER_USER_AGENT, BackgroundServer, create_gateway

from .conftest import StartGateway
from .fakes import FakeServer, Gate, Pairing, Seen

MakeFake = Callable[..., tuple[FakeServer, str]]
DURATION = re.compile(r"^\d+\.\d{6}$")


def test_accepted_empty_then_called_as_the_queue_worker_does(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    function, url = fake()
    receiver, callback = fake()
    _, gateway = start_gateway(upstreams={"echo": url})
    answer = client.post(
        f"{gateway}/async-function/echo.openfaas-fn/sub/path?q=1&q=2",
        content=b"later",
        headers={"X-Callback-Url": f"{callback}/done?k=v", "X-Mine": "kept"},
    )
    assert answer.status_code == 202
    assert answer.content == b""
    call_id = answer.headers["X-Call-Id"]
    assert uuid.UUID(call_id)
    assert answer.headers["X-Start-Time"].isdigit()
    assert answer.headers["X-Served-By"].startswith("faasflow-gateway/")

    (seen,) = function.wait_for(1)
    assert (seen.method, seen.path, seen.query, seen.body) == (
        "POST",
        "/sub/path",
        "q=1&q=2",
        b"later",
    )
    assert seen.header("user-agent") == QUEUE_WORKER_USER_AGENT
    assert seen.header("x-mine") == "kept"
    assert seen.header("x-callback-url") == f"{callback}/done?k=v"
    assert seen.all("x-call-id") == [call_id]
    # The 202's start time comes first; the gateway adds its own when the worker calls.
    assert seen.all("x-start-time")[0] == answer.headers["X-Start-Time"]

    (result,) = receiver.wait_for(1)
    assert (result.method, result.path, result.query) == ("POST", "/done", "k=v")
    assert result.body == b"later"
    assert result.header("x-function-status") == "200"
    assert result.header("x-function-name") == "echo.openfaas-fn"  # as the caller spelled it
    assert result.header("x-call-id") == call_id
    assert DURATION.match(result.header("x-duration-seconds") or "")
    assert result.header("x-echo-path") == "/sub/path"  # the function's own headers
    assert result.header("user-agent") == "Go-http-client/1.1"


def test_callback_reports_failures_too(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    async def failing(seen: Seen) -> Response:
        return Response(b"boom", status_code=500, headers={"X-Why": "because"})

    _, url = fake(answer=failing)
    receiver, callback = fake()
    _, gateway = start_gateway(upstreams={"failing": url})
    headers = {"X-Callback-Url": callback}
    assert client.post(f"{gateway}/async-function/failing", headers=headers).status_code == 202
    # The route does not check that the function exists: the queue worker finds out.
    assert client.post(f"{gateway}/async-function/ghost", headers=headers).status_code == 202
    results = {r.header("x-function-name"): r for r in receiver.wait_for(2)}
    failed, ghost = results["failing"], results["ghost"]
    assert (failed.header("x-function-status"), failed.body) == ("500", b"boom")
    assert failed.header("x-why") == "because"
    assert DURATION.match(failed.header("x-duration-seconds") or "")
    assert ghost.header("x-function-status") == "503"
    assert ghost.body == b"No endpoints available for: ghost.\n"


def test_get_is_405_and_bad_callback_url_400(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    function, url = fake()
    _, gateway = start_gateway(upstreams={"echo": url})
    answer = client.get(f"{gateway}/async-function/echo")
    assert (answer.status_code, answer.content) == (405, b"")
    answer = client.post(
        f"{gateway}/async-function/echo", headers={"X-Callback-Url": "http://bad host/x"}
    )
    assert answer.status_code == 400
    assert answer.content == b'parse "http://bad host/x": invalid character " " in host name\n'
    answer = client.post(f"{gateway}/async-function/echo", headers={"X-Callback-Url": ":x"})
    assert (answer.status_code, answer.text) == (400, 'parse ":x": missing protocol scheme\n')
    # Nothing was queued: a later call is the first the function sees.
    client.post(f"{gateway}/async-function/echo", content=b"only")
    assert [s.body for s in function.wait_for(1)] == [b"only"]


def test_full_queue_is_429(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    gate = Gate()
    function, url = fake(answer=gate.answer)
    receiver, callback = fake()
    gateway_app, gateway = start_gateway(
        upstreams={"slow": url}, async_concurrency=1, async_queue_size=2
    )
    headers = {"X-Callback-Url": callback}
    try:
        post = lambda n: client.post(  # noqa: E731
            f"{gateway}/async-function/slow", content=str(n).encode(), headers=headers
        )
        assert post(1).status_code == 202
        function.wait_for(1)  # the one worker is busy with call 1
        assert [post(2).status_code, post(3).status_code] == [202, 202]
        refused = post(4)
        assert refused.status_code == 429
        assert refused.text == "async queue is full (2 calls waiting)\n"
    finally:
        gate.opened.set()
    results = receiver.wait_for(3)
    assert sorted(r.body for r in results) == [b"done:1", b"done:2", b"done:3"]
    assert [s.body for s in function.seen] == [b"1", b"2", b"3"]
    assert gateway_app.registry.invocations("slow") == 3


def test_concurrency_is_bounded(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    pairing = Pairing(expected=20)
    _, url = fake(answer=pairing.answer)
    receiver, callback = fake()
    _, gateway = start_gateway(upstreams={"pair": url}, async_concurrency=2)
    for n in range(20):
        answer = client.post(
            f"{gateway}/async-function/pair",
            content=b"%d" % n,
            headers={"X-Callback-Url": callback},
        )
        assert answer.status_code == 202
    results = receiver.wait_for(20)
    assert sorted(r.body for r in results) == sorted(b"ok:%d" % n for n in range(20))
    assert all(r.header("x-function-status") == "200" for r in results)
    assert pairing.max_in_flight == 2


def test_stop_drains_the_queue(fake: MakeFake, client: httpx.Client) -> None:
    function, url = fake()
    gateway = create_gateway(upstreams={"echo": url}, async_concurrency=1)
    server = BackgroundServer(gateway)
    server.start()
    try:
        for n in range(5):
            client.post(f"{server.url}/async-function/echo", content=b"%d" % n)
    finally:
        server.stop()
    assert sorted(s.body for s in function.wait_for(5)) == [b"%d" % n for n in range(5)]


def test_stop_reports_what_it_could_not_drain(
    fake: MakeFake, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate()
    function, url = fake(answer=gate.answer)
    gateway = create_gateway(upstreams={"slow": url}, async_concurrency=1, drain_timeout=0.2)
    server = BackgroundServer(gateway)
    server.start()
    try:
        ids = [
            client.post(f"{server.url}/async-function/slow", content=b"%d" % n).headers["X-Call-Id"]
            for n in range(3)
        ]
        function.wait_for(1)
        with caplog.at_level(logging.ERROR, logger="faasflow.gateway.queue"):
            server.stop()
    finally:
        gate.opened.set()
    never_run = [r.getMessage() for r in caplog.records if "was never run" in r.getMessage()]
    assert len(never_run) == 2
    assert ids[1] in never_run[0] and ids[2] in never_run[1]


def test_async_invocations_are_counted(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, url = fake()
    receiver, callback = fake()
    _, gateway = start_gateway(upstreams={"echo": url})
    client.post(f"{gateway}/function/echo", content=b"sync")
    client.post(f"{gateway}/async-function/echo", headers={"X-Callback-Url": callback})
    receiver.wait_for(1)  # the worker's call is over: it was counted before it answered
    assert client.get(f"{gateway}/system/function/echo").json()["invocationCount"] == 2


def test_an_oversized_body_is_413_and_nothing_is_queued(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    function, url = fake()
    gateway_app, gateway = start_gateway(upstreams={"echo": url}, max_body_size=1000)
    declared = client.post(f"{gateway}/async-function/echo", content=b"x" * 1001)
    assert (declared.status_code, declared.text) == (
        413, "request body larger than 1000 bytes (--max-body-size)\n"
    )
    # No Content-Length (chunked): refused once the bytes received pass the limit.
    chunked = client.post(f"{gateway}/async-function/echo/sub", content=iter([b"y" * 600] * 2))
    assert chunked.status_code == 413
    assert gateway_app.queue is not None and gateway_app.queue.waiting == 0
    # Nothing was queued: a call at the limit is the first the function sees.
    assert client.post(f"{gateway}/async-function/echo", content=b"z" * 1000).status_code == 202
    assert [s.body for s in function.wait_for(1)] == [b"z" * 1000]
