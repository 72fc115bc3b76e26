from __future__ import annotations

import asyncio
import threading

import pytest

from faasflow.errors import FunctionError, FunctionNotFoundError
from faasflow.functions.base import FunctionRequest
from faasflow.functions.local import LocalFunctions


async def test_sync_callable_gets_the_body_and_answers_200() -> None:
    seen: list[bytes] = []

    def shout(data: bytes) -> bytes:
        seen.append(data)
        return data.upper()

    response = await LocalFunctions({"shout": shout}).invoke(FunctionRequest("shout", b"adam"))
    assert (response.status, response.body, response.ok) == (200, b"ADAM", True)
    assert seen == [b"adam"]


async def test_sync_callable_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def where(data: bytes) -> bytes:
        threads.append(threading.get_ident())
        return data

    await LocalFunctions({"where": where}).invoke(FunctionRequest("where", b""))
    assert threads and threads[0] != loop_thread


async def test_async_callable_is_awaited() -> None:
    async def greet(data: bytes) -> bytes:
        await asyncio.sleep(0)
        return b"Hello " + data

    response = await LocalFunctions({"greet": greet}).invoke(FunctionRequest("greet", b"Eve"))
    assert response.body == b"Hello Eve"


async def test_str_is_encoded_as_utf8() -> None:
    functions = LocalFunctions({"f": lambda data: data.decode() + " ✓"})
    response = await functions.invoke(FunctionRequest("f", b"ok"))
    assert response.body == "ok ✓".encode()


async def test_bytearray_is_accepted() -> None:
    functions = LocalFunctions({"f": lambda data: bytearray(data * 2)})
    response = await functions.invoke(FunctionRequest("f", b"ab"))
    assert response.body == b"abab" and type(response.body) is bytes


@pytest.mark.parametrize("value", [None, 42, {"a": 1}, [b"x"]])
async def test_wrong_return_type_names_function_and_type(value: object) -> None:
    functions = LocalFunctions({"bad": lambda data: value})
    with pytest.raises(FunctionError) as info:
        await functions.invoke(FunctionRequest("bad", b""))
    assert "'bad'" in str(info.value)
    assert type(value).__name__ in str(info.value)
    assert info.value.function == "bad"


async def test_exception_becomes_function_error_with_cause() -> None:
    def boom(data: bytes) -> bytes:
        raise ValueError("no vowels in " + data.decode())

    with pytest.raises(FunctionError) as info:
        await LocalFunctions({"boom": boom}).invoke(FunctionRequest("boom", b"xyz"))
    assert "'boom'" in str(info.value)
    assert "ValueError: no vowels in xyz" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)
    assert not isinstance(info.value, FunctionNotFoundError)


async def test_async_exception_becomes_function_error() -> None:
    async def boom(data: bytes) -> bytes:
        raise KeyError("k")

    with pytest.raises(FunctionError, match="KeyError") as info:
        await LocalFunctions({"boom": boom}).invoke(FunctionRequest("boom", b""))
    assert isinstance(info.value.__cause__, KeyError)


async def test_unknown_name_is_not_found() -> None:
    functions = LocalFunctions({"a": lambda d: d})
    assert functions.knows("a") and not functions.knows("b")
    with pytest.raises(FunctionNotFoundError, match="'b'"):
        await functions.invoke(FunctionRequest("b", b""))


def test_mapping_is_copied_and_checked() -> None:
    mapping = {"a": lambda d: d}
    functions = LocalFunctions(mapping)
    mapping["b"] = lambda d: d
    assert not functions.knows("b")
    with pytest.raises(TypeError, match="'x'"):
        LocalFunctions({"x": b"not callable"})  # type: ignore[dict-item]
