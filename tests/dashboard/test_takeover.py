"""A dashboard that runs its flows' hops and is killed: the next one finishes its requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from e2e.harness import Process, child_env, faasflow_argv, free_port

from .conftest import FLOWS, HEADERS


def dashboard(home: Path, store: str, port: int) -> Process:
    env = child_env(home, DASHBOARD_GATE_DIR=str(home / "gates"))
    argv = faasflow_argv("dashboard", str(FLOWS / "gated.py"), "--state", store,
                         "--port", str(port))
    process = Process("faasflow dashboard", argv, env=env, log=home / "dashboard.log")
    process.start()
    process.wait_healthy(f"http://127.0.0.1:{port}/healthz")
    return process


def request_of(url: str, rid: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/api/flows/gated/requests/{rid}", timeout=10)
    assert answer.status_code == 200, answer.text
    request: dict[str, Any] = answer.json()["request"]
    return request


def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_killed_dashboards_requests_are_finished_by_the_next(tmp_path: Path) -> None:
    (tmp_path / "gates").mkdir()
    store = f"sqlite:///{tmp_path / 'flows.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = dashboard(tmp_path, store, port)
    try:
        answer = httpx.post(f"{url}/api/flows/gated/requests", content=b"x", headers=HEADERS)
        assert answer.status_code in (200, 201, 202), answer.text
        rid = answer.json()["request_id"]
        until(lambda: request_of(url, rid)["nodes"].get("wait", {}).get("state") == "running")
    finally:
        first.kill()  # SIGKILL: node "wait" is left running, on record as this process's
    (tmp_path / "gates" / rid).touch()

    second = dashboard(tmp_path, store, port)
    try:
        until(lambda: request_of(url, rid)["status"] == "succeeded")
        nodes = request_of(url, rid)["nodes"]
        assert nodes["wait"]["attempt"] == 2  # taken over from the dead process
        assert [nodes[n]["state"] for n in ("wait", "b", "c")] == ["done"] * 3
        result = httpx.get(f"{url}/api/flows/gated/requests/{rid}/result", timeout=10)
        assert result.content == b"x wait b c"
    finally:
        second.kill()
