"""Every example flow, on every store, against its plain-Python oracle.

Each ``examples/*.py`` (files starting with ``_`` excepted) is discovered, so a new
example joins the matrix by existing. An example module provides:

- ``define(flow, context)``: the flow;
- ``expected(data, query="") -> bytes``: the same answer computed without faasflow;
- optionally ``INPUTS: list[tuple[bytes, str]]``, ``(data, query)`` pairs to run; they
  must include an empty input, a non-ASCII one and one of a few KB.

``store_url`` (``tests/conftest.py``) makes every engine test run on each embedded store.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest

import faasflow
from faasflow.workers import Client, Worker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"
FUNCTIONS_DIR = EXAMPLES_DIR / "functions"

DEFAULT_INPUTS: list[tuple[bytes, str]] = [
    (b"hello world", ""),
    (b"", ""),
    ("naïve café ✓ 🌍".encode(), ""),
    (b"several words of text " * 200, ""),
]
"""Inputs for an example that declares no ``INPUTS``."""

BIG = 2048  # "a few KB": at least this many bytes


def _load(path: Path) -> ModuleType:
    # Loaded by path, as ``faasflow run examples/x.py`` does: examples are not a package.
    spec = importlib.util.spec_from_file_location(f"faasflow_example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLES: dict[str, ModuleType] = {
    path.stem: _load(path)
    for path in sorted(EXAMPLES_DIR.glob("*.py"))
    if not path.name.startswith("_")
}


def inputs_of(module: ModuleType) -> list[tuple[bytes, str]]:
    return list(getattr(module, "INPUTS", DEFAULT_INPUTS))


def _cases() -> Iterator[Any]:
    for name, module in EXAMPLES.items():
        for index, (data, query) in enumerate(inputs_of(module)):
            yield pytest.param(name, data, query, id=f"{name}-{index}")


# -- the matrix: example x store x input ---------------------------------------------------


def test_examples_are_discovered() -> None:
    expected = {
        "greet",
        "sync_chain",
        "async_chain",
        "parallel_branching",
        "dynamic_branching",
        "context_data",
        "finally_hook",
        "subdag",
    }
    assert expected <= set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_module_contract(name: str) -> None:
    module = EXAMPLES[name]
    assert (module.__doc__ or "").strip(), f"{name}: needs a docstring saying what it shows"
    assert callable(getattr(module, "define", None)), f"{name}: needs define(flow, context)"
    assert callable(getattr(module, "expected", None)), f"{name}: needs expected(data, query)"
    inputs = inputs_of(module)
    for data, query in inputs:
        assert isinstance(data, bytes) and isinstance(query, str), (name, data[:20], query)
    assert any(data == b"" for data, _ in inputs), f"{name}: INPUTS needs an empty input"
    assert any(not data.isascii() for data, _ in inputs), f"{name}: INPUTS needs non-ASCII"
    assert any(len(data) >= BIG for data, _ in inputs), f"{name}: INPUTS needs a few KB"


@pytest.mark.parametrize(("name", "data", "query"), list(_cases()))
async def test_example_matches_its_oracle(
    name: str, data: bytes, query: str, store_url: str
) -> None:
    module = EXAMPLES[name]
    out = await faasflow.arun(
        module.define, data, functions_dir=FUNCTIONS_DIR, state_store=store_url, query=query
    )
    assert out == module.expected(data, query)


# -- concurrency: requests of one Engine never share state ---------------------------------


def _distinct_inputs(count: int) -> list[bytes]:
    """``count`` different texts: varied words, sometimes a "!", and a unique marker."""
    vocab = ["alpha", "Beta", "beta", "gamma!", "δέλτα", "ε", "Zeta", "eta", "θ/θ", "[i]"]
    texts = []
    for i in range(count):
        words = [vocab[(i * k + k) % len(vocab)] for k in range(1, i % 9 + 2)]
        texts.append(" ".join([*words, f"r{i}", *words[:2]]).encode())
    return texts


@pytest.mark.parametrize("name", ["dynamic_branching", "parallel_branching", "subdag"])
async def test_concurrent_requests_each_get_their_own_answer(name: str, store_url: str) -> None:
    module = EXAMPLES[name]
    inputs = _distinct_inputs(200)
    async with faasflow.Engine(
        module.define, state_store=store_url, functions_dir=FUNCTIONS_DIR
    ) as engine:
        results = await asyncio.gather(*(engine.run(data) for data in inputs))
    assert len(set(results)) == len(inputs)  # every request's answer is its own...
    for data, out in zip(inputs, results, strict=True):
        assert out == module.expected(data), data  # ...and the right one


# -- finally_ and on_failure -----------------------------------------------------------------

finally_hook = EXAMPLES["finally_hook"]


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_finally_runs_once_with_success(store_url: str, tmp_path: Path) -> None:
    log = tmp_path / "hooks.jsonl"
    data = "déployer 🚀".encode()
    query = urlencode({"log": str(log)})
    out = await faasflow.arun(
        finally_hook.define,
        data,
        functions_dir=FUNCTIONS_DIR,
        state_store=store_url,
        query=query,
        request_id="ok-1",
    )
    assert out == finally_hook.expected(data, query)
    assert _events(log) == [
        {
            "event": "finally",
            "state": "success",
            "commitsha": finally_hook.short_sha(data),
            "deleted": True,
            "request_id": "ok-1",
        }
    ]


async def test_on_failure_then_finally_run_once_on_failure(store_url: str, tmp_path: Path) -> None:
    log = tmp_path / "hooks.jsonl"
    data = b"ship it"
    query = urlencode({"log": str(log), "fail": "yes"})
    with pytest.raises(faasflow.RequestFailedError) as caught:
        await faasflow.arun(
            finally_hook.define,
            data,
            functions_dir=FUNCTIONS_DIR,
            state_store=store_url,
            query=query,
            request_id="bad-1",
        )
    assert caught.value.node == "sync"
    assert "asked to fail" in caught.value.cause
    failure, final = _events(log)  # exactly two events, in this order
    assert failure["event"] == "failure"
    assert failure["node"] == "sync"
    assert "asked to fail" in failure["cause"]
    assert failure["request_id"] == "bad-1"
    assert final == {
        "event": "finally",
        "state": "failure",
        "commitsha": finally_hook.short_sha(data),
        "deleted": True,
        "request_id": "bad-1",
    }


async def test_hooks_run_once_per_request_under_concurrency(store_url: str, tmp_path: Path) -> None:
    count = 60
    failing = {i for i in range(count) if i % 3 == 0}

    def query(i: int) -> str:
        params = {"log": str(tmp_path / f"req-{i}.jsonl")}
        if i in failing:
            params["fail"] = "1"
        return urlencode(params)

    inputs = _distinct_inputs(count)
    async with faasflow.Engine(
        finally_hook.define, state_store=store_url, functions_dir=FUNCTIONS_DIR
    ) as engine:
        results = await asyncio.gather(
            *(
                engine.run(data, query=query(i), request_id=f"req-{i}")
                for i, data in enumerate(inputs)
            ),
            return_exceptions=True,
        )

    for i, (data, result) in enumerate(zip(inputs, results, strict=True)):
        events = _events(tmp_path / f"req-{i}.jsonl")
        assert {e["request_id"] for e in events} == {f"req-{i}"}
        finals = [e for e in events if e["event"] == "finally"]
        failures = [e for e in events if e["event"] == "failure"]
        assert len(finals) == 1, events
        assert finals[0]["commitsha"] == finally_hook.short_sha(data)
        if i in failing:
            assert isinstance(result, faasflow.RequestFailedError), result
            assert finals[0]["state"] == "failure"
            assert len(failures) == 1 and failures[0]["node"] == "sync", events
            assert events.index(failures[0]) < events.index(finals[0])
        else:
            assert result == finally_hook.expected(data, query(i))
            assert finals[0]["state"] == "success"
            assert failures == []


# -- the CLI -------------------------------------------------------------------------------


def _cli() -> list[str]:
    """The installed ``faasflow`` script of this interpreter, else ``python -m faasflow``."""
    script = shutil.which("faasflow", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "faasflow"]


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / "cache")}  # no store in ~/.cache
    env.pop("FAASFLOW_STORE", None)
    return subprocess.run(
        [*_cli(), *args], cwd=cwd, env=env, capture_output=True, timeout=60, check=False
    )


def test_cli_runs_greet(tmp_path: Path) -> None:
    done = _run_cli(
        "run",
        str(EXAMPLES_DIR / "greet.py"),
        "--data",
        "Adam",
        "--state",
        "memory://",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == b"Hello Adam"


def _cli_cases() -> Iterator[Any]:
    """Each example's first and last (largest) input."""
    for name, module in EXAMPLES.items():
        inputs = inputs_of(module)
        for index in sorted({0, len(inputs) - 1}):
            data, query = inputs[index]
            yield pytest.param(name, data, query, id=f"{name}-{index}")


@pytest.mark.parametrize(("name", "data", "query"), list(_cli_cases()))
def test_cli_runs_example_with_functions_next_to_it(
    name: str, data: bytes, query: str, tmp_path: Path
) -> None:
    # No --functions: the CLI uses the functions/ folder next to the example file.
    (tmp_path / "input").write_bytes(data)
    done = _run_cli(
        "run",
        str(EXAMPLES_DIR / f"{name}.py"),
        "--data-file",
        str(tmp_path / "input"),
        "--query",
        query,
        "--state",
        f"sqlite:///{tmp_path}/cli.db",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == EXAMPLES[name].expected(data, query)


def test_cli_failed_request_runs_the_hooks_and_exits_1(tmp_path: Path) -> None:
    log = tmp_path / "hooks.jsonl"
    done = _run_cli(
        "run",
        str(EXAMPLES_DIR / "finally_hook.py"),
        "--data",
        "ship it",
        "--query",
        urlencode({"log": str(log), "fail": "1"}),
        "--state",
        "memory://",
        "--request-id",
        "cli-bad",
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    assert done.stdout == b""
    assert b"sync" in done.stderr and b"asked to fail" in done.stderr
    assert [(e["event"], e.get("state"), e["request_id"]) for e in _events(log)] == [
        ("failure", None, "cli-bad"),
        ("finally", "failure", "cli-bad"),
    ]


# -- the docstrings' "Run it" sections say what the flow really prints -------------------


def _documented_runs() -> Iterator[Any]:
    """``faasflow run examples/X.py --data D [--query Q]`` lines of the example docstrings,
    each with the text of the ``# prints: ...`` comment at its end or on the next line
    (continued on the ``# ...`` lines that follow when ``# prints:`` itself is empty)."""
    for name, module in EXAMPLES.items():
        lines = [line.strip() for line in (module.__doc__ or "").splitlines()]
        for index, line in enumerate(lines):
            if not line.startswith("faasflow run "):
                continue
            command, inline, printed = line.partition("# prints:")
            following = lines[index + 1 :]
            if not inline:
                if not following or not following[0].startswith("# prints:"):
                    continue
                printed, following = following[0].removeprefix("# prints:"), following[1:]
            printed = printed.strip()
            if not printed:
                more = []
                for rest in following:
                    if not rest.startswith("#"):
                        break
                    more.append(rest.removeprefix("#").removeprefix(" "))
                printed = "\n".join(more)
            args = shlex.split(command)
            assert args[2] == f"examples/{name}.py", line
            options = dict(zip(args[3::2], args[4::2], strict=True))
            data = options["--data"].encode()
            query = options.get("--query", "")
            yield pytest.param(name, data, query, printed.encode(), id=f"{name}-{index}")


def test_every_example_documents_a_run() -> None:
    documented = {param.values[0] for param in _documented_runs()}
    missing = set(EXAMPLES) - documented
    assert not missing, (
        f"{sorted(missing)}: the docstring's 'Run it' needs a line "
        '`faasflow run examples/NAME.py --data "..."` followed by `# prints: ...`'
    )


@pytest.mark.parametrize(("name", "data", "query", "printed"), list(_documented_runs()))
def test_documented_output_is_the_real_one(
    name: str, data: bytes, query: str, printed: bytes
) -> None:
    # The oracle stands for the engine here: the matrix above proves they agree.
    assert EXAMPLES[name].expected(data, query) == printed


# -- the same examples on NATS workers with shared stores ---------------------------------

_flows = itertools.count()


@pytest.mark.parametrize(("name", "data", "query"), list(_cases()))
async def test_example_on_two_nats_workers(
    name: str, data: bytes, query: str, nats_url: str, redis_url: str
) -> None:
    module = EXAMPLES[name]
    # A flow name and a key namespace of this test's own on the session's servers.
    flow = f"{name}-{next(_flows)}"
    options: dict[str, Any] = {
        "flow_name": flow,
        "nats": nats_url,
        "state_store": f"{redis_url}?namespace={flow}:",
    }
    async with (
        Worker(module.define, functions_dir=FUNCTIONS_DIR, **options),
        Worker(module.define, functions_dir=FUNCTIONS_DIR, **options),
        Client(module.define, **options) as client,
    ):
        rid = await client.submit(data, query=query)
        out = await client.wait(rid, timeout=60, poll=0.02)
    assert out == module.expected(data, query)
