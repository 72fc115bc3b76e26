from __future__ import annotations

import base64
import time

import httpx
import pytest

from faasflow.errors import (
    ConfigurationError,
    FunctionError,
    FunctionNotFoundError,
    FunctionTimeoutError,
)
from faasflow.functions.base import FunctionRequest
from faasflow.functions.gateway import GatewayClient, HttpClient, normalise_gateway_url

from .http_server import HttpTestServer, Received, Reply


async def echo(request: Received) -> Reply:
    return Reply(
        200, b"echo:" + request.body, [("Content-Type", "text/plain"), ("X-Seen", request.method)]
    )


async def test_function_call_sends_path_method_headers_query_and_body(
    http_server: HttpTestServer,
) -> None:
    http_server.route("/function/func1", echo)
    async with GatewayClient(http_server.url) as gateway:
        response = await gateway.invoke(
            FunctionRequest(
                "func1",
                b"Adam",
                method="put",
                headers={"X-Custom": "v1", "Content-Type": "text/plain"},
                query=[("b", "2"), ("a", "x y&z"), ("b", "1")],
                request_id="req-7",
            )
        )
    assert (response.status, response.body) == (200, b"echo:Adam")
    assert response.headers["x-seen"] == "PUT" and response.headers["Content-Type"] == "text/plain"
    [seen] = http_server.received
    assert seen.method == "PUT"
    assert seen.path == "/function/func1"
    assert seen.query == "b=2&a=x+y%26z&b=1"  # URL-encoded, order and repeats kept
    assert seen.body == b"Adam"
    assert seen.header("X-Custom") == "v1"
    assert seen.header("Content-Type") == "text/plain"
    assert seen.header("X-Faas-Flow-Reqid") == "req-7"
    assert seen.header("Authorization") is None


async def test_default_is_post_and_no_reqid_header_without_request_id(
    http_server: HttpTestServer,
) -> None:
    http_server.route("/function/f", echo)
    async with GatewayClient(http_server.url + "/") as gateway:
        await gateway.invoke(FunctionRequest("f", b""))
    [seen] = http_server.received
    assert (seen.method, seen.target) == ("POST", "/function/f")
    assert seen.header("X-Faas-Flow-Reqid") is None


async def test_request_id_replaces_a_user_header_of_any_case(http_server: HttpTestServer) -> None:
    http_server.route("/function/f", echo)
    async with GatewayClient(http_server.url) as gateway:
        await gateway.invoke(
            FunctionRequest("f", b"", headers={"x-faas-flow-reqid": "old"}, request_id="new")
        )
    [seen] = http_server.received
    assert [v for k, v in seen.headers if k.lower() == "x-faas-flow-reqid"] == ["new"]


async def test_non_2xx_is_returned_with_its_body(http_server: HttpTestServer) -> None:
    async def teapot(request: Received) -> Reply:
        return Reply(418, b"short and stout")

    async def own_404(request: Received) -> Reply:
        return Reply(404, b"no such order")

    http_server.route("/function/pot", teapot)
    http_server.route("/function/orders", own_404)
    async with GatewayClient(http_server.url) as gateway:
        response = await gateway.invoke(FunctionRequest("pot", b""))
        assert (response.status, response.body, response.ok) == (418, b"short and stout", False)
        # A 404 passed through from the function is its answer, not a missing function.
        response = await gateway.invoke(FunctionRequest("orders", b""))
        assert (response.status, response.body) == (404, b"no such order")


async def test_function_unknown_to_the_gateway_is_not_found(http_server: HttpTestServer) -> None:
    async def no_endpoints(request: Received) -> Reply:
        # What faas-provider's proxy answers for a function it cannot resolve.
        return Reply(503, b"No endpoints available for: ghost.\n")

    http_server.route("/function/ghost", no_endpoints)
    async with GatewayClient(http_server.url) as gateway:
        with pytest.raises(FunctionNotFoundError) as info:
            await gateway.invoke(FunctionRequest("ghost", b""))
    assert "'ghost'" in str(info.value) and http_server.url in str(info.value)
    assert info.value.status == 503 and info.value.function == "ghost"


async def test_other_503_is_returned(http_server: HttpTestServer) -> None:
    async def busy(request: Received) -> Reply:
        return Reply(503, b"overloaded, try later")

    http_server.route("/function/busy", busy)
    async with GatewayClient(http_server.url) as gateway:
        response = await gateway.invoke(FunctionRequest("busy", b""))
    assert (response.status, response.body) == (503, b"overloaded, try later")


async def test_slow_function_times_out_within_the_timeout(http_server: HttpTestServer) -> None:
    async def slow(request: Received) -> Reply:
        await http_server.release.wait()  # released only at teardown
        return Reply(200, b"too late")

    http_server.route("/function/slow", slow)
    async with GatewayClient(http_server.url) as gateway:
        started = time.monotonic()
        with pytest.raises(FunctionTimeoutError) as info:
            await gateway.invoke(FunctionRequest("slow", b"", timeout=0.3))
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3.0
    assert "0.3s" in str(info.value) and "/function/slow" in str(info.value)
    assert not isinstance(info.value.__cause__, FunctionError)


async def test_connection_refused_names_the_url(refused_url: str) -> None:
    async with GatewayClient(refused_url) as gateway:
        with pytest.raises(FunctionError) as info:
            await gateway.invoke(FunctionRequest("f", b"", timeout=5))
    assert f"{refused_url}/function/f" in str(info.value)
    assert not isinstance(info.value, FunctionTimeoutError | FunctionNotFoundError)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_unresolvable_host_is_a_function_error() -> None:
    async with GatewayClient("http://faasflow-test.invalid:8080") as gateway:
        with pytest.raises(FunctionError, match=r"faasflow-test\.invalid"):
            await gateway.invoke(FunctionRequest("f", b"", timeout=5))


async def test_gateway_url_without_scheme(http_server: HttpTestServer) -> None:
    http_server.route("/function/f", echo)
    async with GatewayClient(f"127.0.0.1:{http_server.port}") as gateway:
        assert gateway.base_url == http_server.url
        response = await gateway.invoke(FunctionRequest("f", b"x"))
    assert response.body == b"echo:x"


def test_normalise_gateway_url() -> None:
    assert normalise_gateway_url("gateway.openfaas:8080") == "http://gateway.openfaas:8080"
    assert normalise_gateway_url(" https://gw.example/prefix/ ") == "https://gw.example/prefix"
    with pytest.raises(ConfigurationError, match="gateway"):
        normalise_gateway_url("  ")


async def test_gateway_path_prefix_is_kept(http_server: HttpTestServer) -> None:
    http_server.route("/openfaas/function/f", echo)
    async with GatewayClient(http_server.url + "/openfaas") as gateway:
        assert (await gateway.invoke(FunctionRequest("f", b"p"))).body == b"echo:p"


async def test_url_request_goes_to_the_url_without_gateway_credentials(
    http_server: HttpTestServer,
) -> None:
    http_server.route("/hooks/done", echo)
    http_server.route("/function/f", echo)
    async with GatewayClient("http://gateway.invalid:1", basic_auth=("admin", "s3cret")) as gateway:
        response = await gateway.invoke(
            FunctionRequest(
                f"{http_server.url}/hooks/done?x=1", b"r", query=[("x", "2")], is_url=True
            )
        )
    assert response.body == b"echo:r"
    [seen] = http_server.received
    assert seen.target == "/hooks/done?x=1&x=2"
    assert seen.header("Authorization") is None


async def test_basic_auth_goes_to_the_gateway(http_server: HttpTestServer) -> None:
    http_server.route("/function/f", echo)
    async with GatewayClient(http_server.url, basic_auth=("admin", "s3cret")) as gateway:
        await gateway.invoke(FunctionRequest("f", b""))
    expected = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert http_server.received[0].header("Authorization") == expected


async def test_shared_client_is_left_open(http_server: HttpTestServer) -> None:
    http_server.route("/function/f", echo)
    async with httpx.AsyncClient(headers={"X-Shared": "1"}) as client:
        gateway = GatewayClient(http_server.url, client=client)
        await gateway.invoke(FunctionRequest("f", b""))
        await gateway.close()
        assert not client.is_closed
    assert http_server.received[0].header("X-Shared") == "1"


async def test_owned_client_is_closed() -> None:
    gateway = GatewayClient("127.0.0.1:1")
    await gateway.close()
    assert gateway._client.is_closed


async def test_bad_url_and_header_are_function_errors() -> None:
    async with HttpClient() as client:
        with pytest.raises(FunctionError, match="ftp://"):
            await client.invoke(FunctionRequest("ftp://example.invalid/x", b"", is_url=True))
        with pytest.raises(FunctionError):
            await client.invoke(
                FunctionRequest(
                    "http://127.0.0.1:1/", b"", headers={"X": "caf\u00e9\u2603"}, is_url=True
                )
            )


async def test_plain_http_client_knows_no_names() -> None:
    async with HttpClient() as client:
        assert not client.knows("f")
        with pytest.raises(FunctionNotFoundError, match="gateway"):
            await client.invoke(FunctionRequest("f", b""))
