"""Loading ``FILE[:define]``: import by path, unique modules, clear errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from faasflow.cli.main import main
from faasflow.errors import ConfigurationError
from faasflow.runtime.flowfile import LoadError, load_define, split_target


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("flow.py", ("flow.py", "define")),
        ("flow.py:build", ("flow.py", "build")),
        ("dir/flow.py:flows.greet", ("dir/flow.py", "flows.greet")),
        ("C:\\flows\\x.py", ("C:\\flows\\x.py", "define")),
        (":define", (":define", "define")),
    ],
)
def test_split_target(target: str, expected: tuple[str, str]) -> None:
    assert split_target(target) == expected


def test_existing_file_with_a_colon_is_not_split(
    write_file: Callable[[str, str], Path],
) -> None:
    flow = write_file("a:b.py", "def define(flow, context):\n    flow.sync_node()\n")
    assert split_target(str(flow)) == (str(flow), "define")
    assert load_define(str(flow)).stem == "a:b"
    assert split_target(f"{flow}:other") == (str(flow), "other")


def test_loads_define_and_names(flows: Path) -> None:
    loaded = load_define(str(flows))
    assert loaded.attribute == "define"
    assert loaded.stem == "flows"
    assert loaded.path == flows.resolve()
    assert callable(loaded.define)
    assert load_define(f"{flows}:reverse").define.__name__ == "reverse"


def test_each_load_is_a_new_module(flows: Path) -> None:
    first, second = load_define(str(flows)), load_define(str(flows))
    assert first.define is not second.define
    assert first.define.__module__ != second.define.__module__
    assert first.define.__module__ in sys.modules


def test_neighbours_importable_while_loading(
    write_file: Callable[[str, str], Path],
) -> None:
    write_file("pkg/helpers_for_loader_test.py", "GREETING = b'hi'\n")
    flow = write_file("pkg/flow.py", """
        from helpers_for_loader_test import GREETING

        def define(flow, context):
            flow.sync_node().modify(lambda data: GREETING)
    """)
    folder = str(flow.parent)
    assert load_define(str(flow)).define is not None
    assert folder not in sys.path  # only while importing
    sys.modules.pop("helpers_for_loader_test", None)


def test_dotted_attribute(write_file: Callable[[str, str], Path]) -> None:
    flow = write_file("obj.py", """
        class Flows:
            @staticmethod
            def greet(flow, context):
                flow.sync_node()
    """)
    assert load_define(f"{flow}:Flows.greet").attribute == "Flows.greet"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"flow file '.*nope\.py' does not exist"):
        load_define(str(tmp_path / "nope.py"))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="is a directory"):
        load_define(str(tmp_path))


def test_missing_attribute_lists_candidates(flows: Path) -> None:
    with pytest.raises(LoadError) as caught:
        load_define(f"{flows}:nope")
    message = str(caught.value)
    assert "has no attribute 'nope'" in message
    assert ":NAME" in message
    assert (
        "functions it defines: crashes, define, failing, hangs, hello, info, nested, reverse, "
        "shout, two_starts"
    ) in message
    assert isinstance(caught.value, ConfigurationError)


def test_not_callable(flows: Path) -> None:
    with pytest.raises(LoadError, match=r"flows\.py:not_callable is a int, not a callable"):
        load_define(f"{flows}:not_callable")


def test_import_error(write_file: Callable[[str, str], Path]) -> None:
    flow = write_file("broken.py", "def define(flow, context)\n    pass\n")
    with pytest.raises(LoadError, match=r"importing .*broken\.py raised SyntaxError"):
        load_define(str(flow))
    assert not [name for name in sys.modules if name.startswith("_faasflow_flow_broken")]


@pytest.mark.parametrize("command", ["run", "graph"])
def test_loader_errors_exit_2(
    command: str, flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, f"{flows}:nope", "--data", "x"][: 2 if command == "graph" else 4]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and "has no attribute 'nope'" in err
    assert main([command, str(flows.parent / "missing.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
