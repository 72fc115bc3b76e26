from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import types
from pathlib import Path

import pytest

from faasflow.errors import FunctionError, FunctionNotFoundError
from faasflow.functions.base import FunctionRequest
from faasflow.functions.folders import HandlerFolders


def write(root: Path, name: str, files: dict[str, str]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for filename, text in files.items():
        path = folder / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "functions"


async def call(
    root: Path, name: str, body: bytes = b"", **kwargs: object
) -> tuple[int, bytes, dict[str, str]]:
    response = await HandlerFolders(root).invoke(FunctionRequest(name, body, **kwargs))  # type: ignore[arg-type]
    return response.status, response.body, dict(response.headers)


async def test_dict_response_with_status_and_headers(root: Path) -> None:
    write(
        root,
        "created",
        {
            "handler.py": """
        def handle(event, context):
            return {"statusCode": 201, "body": "made " + event.body.decode(),
                    "headers": {"Location": "/things/1", "X-Kind": "thing"}}
        """
        },
    )
    status, body, headers = await call(root, "created", b"it")
    assert (status, body) == (201, b"made it")
    assert headers["location"] == "/things/1" and headers["x-kind"] == "thing"
    assert headers["content-type"] == "text/html; charset=utf-8"


async def test_dict_body_is_json_and_headers_override_content_type(root: Path) -> None:
    write(
        root,
        "js",
        {
            "handler.py": """
        def handle(event, context):
            return {"body": {"b": 1, "a": [1, 2]}}
        """
        },
    )
    write(
        root,
        "typed",
        {
            "handler.py": """
        def handle(event, context):
            return {"body": "<x/>", "headers": [("Content-Type", "application/xml")]}
        """
        },
    )
    status, body, headers = await call(root, "js")
    assert status == 200
    assert json.loads(body) == {"a": [1, 2], "b": 1}
    assert body == b'{"a":[1,2],"b":1}\n'  # as Flask's jsonify writes it
    assert headers["content-type"] == "application/json"
    _, _, headers = await call(root, "typed")
    assert headers["content-type"] == "application/xml"


async def test_plain_str_bytes_none_and_tuple_returns(root: Path) -> None:
    write(
        root,
        "text",
        {"handler.py": "def handle(event, context):\n    return 'hi ' + event.body.decode()\n"},
    )
    write(
        root,
        "raw",
        {"handler.py": "def handle(event, context):\n    return b'\\x00\\xff' + event.body\n"},
    )
    write(
        root,
        "bytesbody",
        {"handler.py": "def handle(event, context):\n    return {'body': b'\\x01'}\n"},
    )
    write(root, "nothing", {"handler.py": "def handle(event, context):\n    pass\n"})
    write(root, "pair", {"handler.py": "def handle(event, context):\n    return ('gone', 410)\n"})
    assert await call(root, "text", b"Eve") == (
        200,
        b"hi Eve",
        {"content-type": "text/html; charset=utf-8"},
    )
    assert (await call(root, "raw", b"!"))[:2] == (200, b"\x00\xff!")
    assert (await call(root, "bytesbody"))[:2] == (200, b"\x01")
    assert (await call(root, "nothing"))[:2] == (200, b"")
    assert (await call(root, "pair"))[:2] == (410, b"gone")


async def test_async_handler(root: Path) -> None:
    write(
        root,
        "aio",
        {
            "handler.py": """
        import asyncio

        async def handle(event, context):
            await asyncio.sleep(0)
            return {"statusCode": 202, "body": event.body[::-1]}
        """
        },
    )
    assert (await call(root, "aio", b"abc"))[:2] == (202, b"cba")


async def test_event_and_context_attributes(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "box-1")
    write(
        root,
        "inspect",
        {
            "handler.py": """
        def handle(event, context):
            return {"body": {
                "body": event.body.decode(),
                "method": event.method,
                "path": event.path,
                "query_a": event.query.get("a"),
                "query_a_all": event.query.getlist("a"),
                "query_items": list(event.query.multi_items()),
                "header": event.headers.get("x-custom"),
                "header_same": event.headers["X-CUSTOM"],
                "reqid": event.headers.get("X-Faas-Flow-Reqid"),
                "hostname": context.hostname,
            }}
        """
        },
    )
    status, body, _ = await call(
        root,
        "inspect",
        b"payload",
        method="put",
        headers={"X-Custom": "yes"},
        query=[("a", "1"), ("b", "x y"), ("a", "2")],
        request_id="req-42",
    )
    assert status == 200
    assert json.loads(body) == {
        "body": "payload",
        "method": "PUT",
        "path": "/",
        "query_a": "1",
        "query_a_all": ["1", "2"],
        "query_items": [["a", "1"], ["b", "x y"], ["a", "2"]],
        "header": "yes",
        "header_same": "yes",
        "reqid": "req-42",
        "hostname": "box-1",
    }


async def test_hostname_defaults_to_localhost(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTNAME", raising=False)
    write(
        root, "host", {"handler.py": "def handle(event, context):\n    return context.hostname\n"}
    )
    assert (await call(root, "host"))[1] == b"localhost"


async def test_sibling_imports_absolute_relative_and_package(root: Path) -> None:
    write(
        root,
        "sib",
        {
            "handler.py": """
            import helpers
            from .shapes import square
            from lib.deep import twice

            def handle(event, context):
                return helpers.wrap(twice(square(int(event.body))))
            """,
            "helpers.py": "def wrap(n):\n    return f'<{n}>'\n",
            "shapes.py": "def square(n):\n    return n * n\n",
            "lib/__init__.py": "",
            "lib/deep.py": "def twice(n):\n    return 2 * n\n",
        },
    )
    before = set(sys.path)
    assert (await call(root, "sib", b"3"))[1] == b"<18>"
    assert set(sys.path) == before  # the folder was on sys.path only while importing
    assert "helpers" not in sys.modules and "lib" not in sys.modules


async def test_two_folders_with_same_sibling_name_stay_apart(root: Path) -> None:
    for name in ("one", "two"):
        write(
            root,
            name,
            {
                "handler.py": "import util\n\ndef handle(event, context):\n    return util.NAME\n",
                "util.py": f"NAME = {name!r}\n",
            },
        )
    folders = HandlerFolders(root)
    one = await folders.invoke(FunctionRequest("one", b""))
    two = await folders.invoke(FunctionRequest("two", b""))
    assert (one.body, two.body) == (b"one", b"two")


async def test_module_is_loaded_once(root: Path) -> None:
    write(
        root,
        "counter",
        {
            "handler.py": """
        LOADS = []
        LOADS.append(1)
        CALLS = []

        def handle(event, context):
            CALLS.append(1)
            return f"{len(LOADS)} {len(CALLS)}"
        """
        },
    )
    folders = HandlerFolders(root)
    bodies = [(await folders.invoke(FunctionRequest("counter", b""))).body for _ in range(3)]
    assert bodies == [b"1 1", b"1 2", b"1 3"]


async def test_exception_in_handler_is_a_500(root: Path) -> None:
    write(
        root,
        "fails",
        {
            "handler.py": """
        def handle(event, context):
            raise RuntimeError("database down")
        """
        },
    )
    write(root, "weird", {"handler.py": "def handle(event, context):\n    return 3.5\n"})
    status, body, _ = await call(root, "fails")
    assert status == 500
    assert b"RuntimeError: database down" in body
    status, body, _ = await call(root, "weird")
    assert status == 500 and b"float" in body


async def test_import_error_is_a_function_error(root: Path) -> None:
    write(
        root,
        "broken",
        {"handler.py": "import no_such_module_here\n\ndef handle(e, c):\n    return ''\n"},
    )
    folders = HandlerFolders(root)
    with pytest.raises(FunctionError) as info:
        await folders.invoke(FunctionRequest("broken", b""))
    assert "'broken'" in str(info.value) and "no_such_module_here" in str(info.value)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert not isinstance(info.value, FunctionNotFoundError)
    # Not cached: once fixed, the folder imports.
    (root / "broken" / "handler.py").write_text("def handle(e, c):\n    return 'fixed'\n")
    assert (await folders.invoke(FunctionRequest("broken", b""))).body == b"fixed"


async def test_syntax_error_and_missing_handle_or_handler(root: Path) -> None:
    write(root, "syntax", {"handler.py": "def handle(:\n"})
    write(root, "nohandle", {"handler.py": "x = 1\n"})
    write(root, "empty", {"README.md": "nothing here"})
    folders = HandlerFolders(root)
    with pytest.raises(FunctionError, match="SyntaxError"):
        await folders.invoke(FunctionRequest("syntax", b""))
    with pytest.raises(FunctionError, match=r"handle\(event, context\)"):
        await folders.invoke(FunctionRequest("nohandle", b""))
    with pytest.raises(FunctionError, match=r"no handler\.py"):
        await folders.invoke(FunctionRequest("empty", b""))


async def test_knows_and_not_found(root: Path) -> None:
    write(root, "here", {"handler.py": "def handle(e, c):\n    return ''\n"})
    (root / "file.txt").write_text("not a folder")
    folders = HandlerFolders(root)
    assert folders.knows("here")
    for name in ("missing", "file.txt", "..", ".", "here/../here", ""):
        assert not folders.knows(name), name
    with pytest.raises(FunctionNotFoundError, match="'missing'"):
        await folders.invoke(FunctionRequest("missing", b""))


async def test_folder_module_wins_over_an_installed_one_which_is_then_restored(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = types.ModuleType("util")
    installed.NAME = "installed"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "util", installed)
    write(
        root,
        "mine",
        {
            "handler.py": "import util\n\ndef handle(event, context):\n    return util.NAME\n",
            "util.py": "NAME = 'mine'\n",
        },
    )
    assert (await call(root, "mine"))[1] == b"mine"
    assert sys.modules["util"] is installed


async def test_standard_library_is_not_shadowed_by_a_sibling(root: Path) -> None:
    write(
        root,
        "stdlib",
        {
            "handler.py": "import json\n\ndef handle(e, c):\n    return json.dumps([1])\n",
            "json.py": "raise ImportError('the folder json.py was imported')\n",
        },
    )
    assert (await call(root, "stdlib"))[1] == b"[1]"
    assert sys.modules["json"] is json


async def test_concurrent_first_calls_import_once(root: Path) -> None:
    write(
        root,
        "busy",
        {
            "handler.py": """
            LOADS = []
            LOADS.append(1)

            def handle(event, context):
                return str(len(LOADS))
            """
        },
    )
    folders = HandlerFolders(root)
    responses = await asyncio.gather(
        *(folders.invoke(FunctionRequest("busy", b"")) for _ in range(10))
    )
    assert {r.body for r in responses} == {b"1"}
