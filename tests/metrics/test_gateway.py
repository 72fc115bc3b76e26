"""``/metrics`` of the local gateway: OpenFaaS's metric names, after sync and async calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from faasflow.gateway import BackgroundServer, create_gateway

from .scrape import Scrape, parse

HANDLERS = {
    "hello": "def handle(event, context):\n    return 'Hello ' + event.body.decode()\n",
    "oops": "def handle(event, context):\n    return {'statusCode': 500, 'body': 'no'}\n",
    # waits until the file ``gate`` exists, after saying it started in ``entered``
    "slow": (
        "import pathlib, time\n"
        "HERE = pathlib.Path(__file__).parent\n"
        "def handle(event, context):\n"
        "    (HERE / 'entered').touch()\n"
        "    while not (HERE / 'gate').exists():\n"
        "        time.sleep(0.01)\n"
        "    return 'late'\n"
    ),
}


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    root = tmp_path / "functions"
    for name, code in HANDLERS.items():
        (root / name).mkdir(parents=True)
        (root / name / "handler.py").write_text(code)
    return root


@pytest.fixture
def gateway(functions: Path) -> Iterator[str]:
    server = BackgroundServer(create_gateway(functions_dir=functions, async_concurrency=1))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_invocations_are_counted_by_function_and_code(gateway: str) -> None:
    with httpx.Client(timeout=30) as http:
        assert http.post(f"{gateway}/function/hello", content=b"a").status_code == 200
        assert http.post(f"{gateway}/function/hello.openfaas-fn", content=b"b").status_code == 200
        assert http.post(f"{gateway}/function/oops", content=b"c").status_code == 500
        # unknown names are not counted: anyone may make them up
        assert http.post(f"{gateway}/function/nobody", content=b"d").status_code == 503
        assert http.post(f"{gateway}/async-function/hello", content=b"e").status_code == 202

        def async_call_ran() -> bool:
            return scrape(http, gateway).value(
                "gateway_function_invocation_total", function_name="hello.openfaas-fn",
                code="200",
            ) == 3

        wait_for(async_call_ran)
        final = scrape(http, gateway)

    assert final.labelled("gateway_function_invocation_total") == {
        frozenset({"function_name": "hello.openfaas-fn", "code": "200"}.items()): 3,
        frozenset({"function_name": "oops.openfaas-fn", "code": "500"}.items()): 1,
    }
    assert final.labelled("gateway_functions_seconds_count") == {
        frozenset({"function_name": "hello.openfaas-fn", "code": "200"}.items()): 3,
        frozenset({"function_name": "oops.openfaas-fn", "code": "500"}.items()): 1,
    }
    assert final.labelled("gateway_service_count") == {
        frozenset({"function_name": f"{name}.openfaas-fn"}.items()): 1 for name in HANDLERS
    }
    assert final.value("faasflow_gateway_queue_depth") == 0


def test_queue_depth_counts_async_calls_not_yet_running(gateway: str, functions: Path) -> None:
    with httpx.Client(timeout=30) as http:
        for _ in range(3):
            assert http.post(f"{gateway}/async-function/slow", content=b"").status_code == 202
        wait_for((functions / "slow" / "entered").exists)
        # one call runs (the queue has one worker), two wait
        assert scrape(http, gateway).value("faasflow_gateway_queue_depth") == 2
        (functions / "slow" / "gate").touch()

        def all_ran() -> bool:
            return scrape(http, gateway).value(
                "gateway_function_invocation_total", function_name="slow.openfaas-fn",
                code="200",
            ) == 3

        wait_for(all_ran)
        assert scrape(http, gateway).value("faasflow_gateway_queue_depth") == 0


def scrape(http: httpx.Client, gateway: str) -> Scrape:
    return parse(http.get(f"{gateway}/metrics"))
