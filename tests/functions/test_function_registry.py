from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from faasflow.errors import FunctionNotFoundError
from faasflow.functions.base import FunctionInvoker, FunctionRequest, FunctionResponse
from faasflow.functions.folders import HandlerFolders
from faasflow.functions.gateway import GatewayClient
from faasflow.functions.local import LocalFunctions
from faasflow.functions.registry import FunctionRegistry

from .http_server import HttpTestServer, Received, Reply


async def named(request: Received) -> Reply:
    return Reply(200, b"gateway:" + request.path.encode())


def folder(root: Path, name: str, answer: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "handler.py").write_text(f"def handle(event, context):\n    return {answer!r}\n")


async def body_of(registry: FunctionRegistry, name: str) -> bytes:
    return (await registry.invoke(FunctionRequest(name, b""))).body


async def test_precedence_local_then_folder_then_gateway(
    tmp_path: Path, http_server: HttpTestServer
) -> None:
    folder(tmp_path, "both", "folder")
    folder(tmp_path, "only_folder", "folder")
    http_server.route("/function/only_gateway", named)
    registry = FunctionRegistry.build(
        functions={"both": lambda data: b"local"},
        folders=tmp_path,
        gateway=f"127.0.0.1:{http_server.port}",
    )
    async with registry:
        assert [type(i) for i in registry.invokers] == [
            LocalFunctions,
            HandlerFolders,
            GatewayClient,
        ]
        assert await body_of(registry, "both") == b"local"
        assert await body_of(registry, "only_folder") == b"folder"
        assert await body_of(registry, "only_gateway") == b"gateway:/function/only_gateway"
    assert [r.path for r in http_server.received] == ["/function/only_gateway"]


async def test_order_of_invokers_is_the_precedence(tmp_path: Path) -> None:
    folder(tmp_path, "f", "folder")
    registry = FunctionRegistry(
        [HandlerFolders(tmp_path), LocalFunctions({"f": lambda d: b"local"})]
    )
    async with registry:
        assert await body_of(registry, "f") == b"folder"


async def test_unknown_name_without_gateway_says_how_to_fix_it(tmp_path: Path) -> None:
    registry = FunctionRegistry.build({"func1": lambda d: d, "func2": lambda d: d}, tmp_path, None)
    async with registry:
        assert not registry.knows("fucn1")
        with pytest.raises(FunctionNotFoundError) as info:
            await registry.invoke(FunctionRequest("fucn1", b""))
    message = str(info.value)
    assert "'fucn1'" in message
    assert "func1, func2" in message  # the known names, to spot the typo
    assert str(tmp_path) in message
    assert "gateway" in message and "functions=" in message
    assert info.value.function == "fucn1"


async def test_empty_registry_message() -> None:
    async with FunctionRegistry.build(None, None, None) as registry:
        assert registry.invokers == ()
        with pytest.raises(FunctionNotFoundError, match="nothing is configured"):
            await registry.invoke(FunctionRequest("f", b""))


async def test_url_request_uses_the_gateway_client(http_server: HttpTestServer) -> None:
    http_server.route("/hook", named)
    async with httpx.AsyncClient(headers={"X-Via": "gateway-client"}) as client:
        gateway = GatewayClient("http://gateway.invalid:1", client=client)
        registry = FunctionRegistry([LocalFunctions({"a": lambda d: d}), gateway])
        response = await registry.invoke(
            FunctionRequest(f"{http_server.url}/hook", b"", is_url=True)
        )
        await registry.close()
    assert response.body == b"gateway:/hook"
    assert http_server.received[0].header("X-Via") == "gateway-client"


async def test_url_request_without_gateway_uses_an_internal_client(
    http_server: HttpTestServer,
) -> None:
    http_server.route("/hook", named)
    registry = FunctionRegistry([LocalFunctions({"a": lambda d: d})])
    response = await registry.invoke(FunctionRequest(f"{http_server.url}/hook", b"x", is_url=True))
    assert (response.status, response.body) == (200, b"gateway:/hook")
    internal = registry._owned_url_client
    assert internal is not None
    await registry.close()
    assert internal._client.is_closed


class Recording(FunctionInvoker):
    def __init__(self, fail: bool = False) -> None:
        self.closed = False
        self.fail = fail

    def knows(self, name: str) -> bool:
        return False

    async def invoke(self, request: FunctionRequest) -> FunctionResponse:
        raise AssertionError("not called")

    async def close(self) -> None:
        self.closed = True
        if self.fail:
            raise RuntimeError("close failed")


async def test_close_closes_every_invoker_even_when_one_fails() -> None:
    first, second = Recording(fail=True), Recording()
    registry = FunctionRegistry([first, second])
    with pytest.raises(RuntimeError, match="close failed"):
        await registry.close()
    assert first.closed and second.closed
