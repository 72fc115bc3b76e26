"""The fault matrix for the flow server behind the gateway (the OpenFaaS way).

One ``faasflow serve`` process runs the flow ``a → b → c`` (each node a call to the
test's gate server, which counts the calls), its state in a Redis of the test's own,
its hops through the gateway's async route (via a recording proxy, so a hop can be
delivered again). A failpoint holds the server at one phase of ``b``'s hop while the
test brings one fault about:

* ``killed``: the server is SIGKILLed and left unreaped, and a new process is started
  on the same port (as a platform restarts a function's container);
* ``pid reused``: the same, the dead server reaped and its pid given to an unrelated
  process first;
* ``store outage``: Redis is stopped for 3 s while the server goes on;
* ``duplicate``: the gateway delivers ``b``'s hop a second time.

OpenFaaS's queue worker calls a function once whatever it answers, so a hop that could
not run is sent again by the flow server itself, and a new process recovers what its
dead predecessor left. Every cell asserts that the request succeeds within 10 s of the
fault's end and that each node's function ran once, except one whose process died after
calling it: ``b`` at the ``settle`` phase of the killing faults, and ``c`` when the
process was killed while it ran ``c`` (after ``b``'s hop was answered).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import orjson
import pytest

from faasflow._failpoints import PHASES
from servers import free_port
from servers.redis import redis_server
from workers.support import start_at_pid

from .conftest import FlowFactory
from .harness import Capture, FlowClient, Gate, GatewayProcess, Process

FLOW = '''\
"""a -> b -> c, each a call to the test's gate server (which counts them, and notes the
process that called)."""

import os

from faasflow import Context, Workflow

GATE = {gate!r}


def define(flow: Workflow, context: Context) -> None:
    rid = {{"rid": context.request_id, "pid": str(os.getpid())}}
    dag = flow.dag()
    for name in "abc":
        dag.node(name).request(GATE + "/hit/" + name, query=rid)
    dag.edge("a", "b")
    dag.edge("b", "c")
'''

BOUND = 10.0
FAULTS = ["killed", "pid reused", "store outage", "duplicate"]


class PrivateRedis:
    """A Redis of the test's own that can be stopped and started again (same data)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.server: AbstractContextManager[str] | None = None

    def start(self) -> str:
        self.server = redis_server(self.folder, self.port, persist=True)
        return self.server.__enter__()

    def stop(self) -> None:
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    private = PrivateRedis(folder)
    private.start()
    try:
        yield private
    finally:
        private.stop()


async def _hold(folder: Path, phase: str, node: str) -> int:
    """Arm ``phase`` for ``node``; the pid of the process that holds there."""
    (folder / f"{phase}.arm").write_text(node)
    hit = folder / f"{phase}.hit"
    deadline = time.monotonic() + 30
    while not hit.exists():
        assert time.monotonic() < deadline, f"no hop of {node} reached {phase}"
        await asyncio.sleep(0.02)
    pid: int = orjson.loads(hit.read_bytes())["pid"]
    return pid


def _zombie(pid: int) -> bool:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2] == "Z"


async def _succeeded(flow: FlowClient, rid: str, timeout: float) -> float:
    """Wait until ``rid`` succeeds (asking again while the server or its store is
    away); when it ended (wall clock, from its history)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with_error = False
        try:
            answer = await flow.call("GET", f"/flow/{rid}/history")
        except httpx.HTTPError:
            with_error = True
        if not with_error and answer.status_code == 200:
            events = answer.json()
            ends = [e for e in events if e["kind"] == "request" and e["event"] != "started"]
            if ends:
                assert ends[-1]["event"] == "succeeded", events
                ended: float = ends[-1]["t"]
                return ended
        await asyncio.sleep(0.05)
    raise AssertionError(f"request {rid} did not end within {timeout:g}s")


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("phase", PHASES)
async def test_a_fault_at_each_phase_of_a_hop_on_the_flow_server(
    phase: str, fault: str, flows: FlowFactory, gate: Gate, capture: Capture,
    gateway: GatewayProcess, client: httpx.AsyncClient, redis: PrivateRedis, tmp_path: Path,
) -> None:  # fmt: skip
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    flow_file = tmp_path / "abc.py"
    flow_file.write_text(FLOW.format(gate=gate.url))
    server = flows(
        "faults", target=flow_file, hop_gateway=capture.url,
        options=["--transport", "gateway", "--state",
                 f"redis://127.0.0.1:{redis.port}/0?namespace=f:"],
        env={"FAASFLOW_FAILPOINTS": str(failpoints)},
    )  # fmt: skip
    flow = FlowClient(client, gateway.url, server.name)
    rid = await flow.submit(b"f")
    pid = await _hold(failpoints, phase, "b")
    go = failpoints / f"{phase}.go"
    dead: list[Process] = []
    strangers: list[subprocess.Popen[bytes]] = []
    try:
        if fault in ("killed", "pid reused"):
            assert server.process is not None and server.process.pid == pid
            os.kill(pid, signal.SIGKILL)
            while not _zombie(pid):  # noqa: ASYNC110 - another process changes
                await asyncio.sleep(0.01)
            dead.append(server.process)
            if fault == "pid reused":
                server.process.kill()  # reaped: its pid is free for a stranger
                strangers.append(start_at_pid(pid, ["sleep", "600"]))
            await asyncio.to_thread(server.start)  # the platform starts a new one
        elif fault == "store outage":
            redis.stop()
            go.touch()
            await asyncio.sleep(3)
            redis.start()
        else:
            (hop,) = [h for h in capture.hops if orjson.loads(h.body)["path"] == "b"]
            again = await client.post(gateway.url + hop.path, content=hop.body,
                                      headers=hop.headers)
            assert again.status_code == 202
            go.touch()
        over = time.time()
        ended = await _succeeded(flow, rid, BOUND + 30)
    finally:
        go.touch()
        for process in dead:
            process.kill()
        for stranger in strangers:
            stranger.kill()
            stranger.wait()
    result = await flow.result(rid)
    assert (result.status_code, result.content) == (200, b"f-a-b-c")
    assert ended - over <= BOUND, f"ended {ended - over:.1f}s after the fault's end"
    killing = fault in ("killed", "pid reused")
    runs_of_b = 2 if killing and phase == "settle" else 1
    # Once b's hop is answered (ack), c's hop is on its way: the process may have been
    # killed while c ran in it, and then c runs again (its worker died during the call).
    callers_of_c = gate.callers(rid, "c")
    died_in_c = killing and len(callers_of_c) == 2 and callers_of_c[0] == str(pid)
    assert [gate.hits(rid, node) for node in "abc"] == [1, runs_of_b, 2 if died_in_c else 1]
