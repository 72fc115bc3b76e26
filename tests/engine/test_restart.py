"""A request interrupted by killing its process resumes after a restart (SQLite)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType

import faasflow

FLOW = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    WORK = Path(os.environ["FLOW_WORK"])

    def mark(name):
        def run(data):
            with open(WORK / "calls.log", "a") as log:
                log.write(name + "\\n")
            return data + name.encode()
        return run

    def blocker(data):
        mark("block")(b"")
        (WORK / "entered").touch()
        while not (WORK / "release").exists():
            time.sleep(0.01)
        return data + b"block"

    def define(flow, context):
        dag = flow.dag()
        dag.node("a").modify(mark("a"))
        dag.node("b").modify(mark("b"))
        dag.node("block").modify(blocker)
        dag.node("c", aggregator=lambda r: b"+".join(r.values())).modify(mark("c"))
        dag.edge("a", "b")
        dag.edge("a", "block")
        dag.edge("b", "c")
        dag.edge("block", "c")
    """
)

CHILD = textwrap.dedent(
    """
    import asyncio, importlib.util, sys
    import faasflow

    spec = importlib.util.spec_from_file_location("flow", sys.argv[1])
    flow = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flow)

    async def main():
        lease = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
        async with faasflow.Engine(flow.define, flow_name="restart", state_store=sys.argv[2],
                                   lease_ttl=lease) as e:
            await e.submit(b">", request_id="survivor")
            await asyncio.Event().wait()  # until killed

    asyncio.run(main())
    """
)


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("restart_flow", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(path: Path, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"child exited early: {process.stderr and process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.01)


async def restart_and_finish(module: ModuleType, store: str) -> None:
    async with faasflow.Engine(module.define, flow_name="restart", state_store=store) as e:
        info = await e.info("survivor", nodes=True)
        assert info.status == "running"
        assert info.nodes["block"]["state"] == "running"
        assert await e.recover() == ["survivor"]
        assert await e.wait("survivor", timeout=30) == b">ab+>ablockc"
        history = await e.history("survivor")
        block = [h for h in history if h["node"] == "block" and h["event"] == "finished"]
        assert block[0]["attempt"] == 2


def test_killed_process_request_resumes_after_restart(tmp_path: Path) -> None:
    flow_file = tmp_path / "flow.py"
    flow_file.write_text(FLOW)
    store = f"sqlite:///{tmp_path / 'state.db'}"
    env = {**os.environ, "FLOW_WORK": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(flow_file), store],
        env=env, stderr=subprocess.PIPE,
    )
    try:
        wait_for(tmp_path / "entered", child)
        # "b" runs concurrently with "block"; let it finish so the kill lands mid-"block".
        deadline = time.monotonic() + 30
        while "b" not in (tmp_path / "calls.log").read_text().split():
            assert time.monotonic() < deadline, "b never ran"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()

    (tmp_path / "release").touch()
    os.environ["FLOW_WORK"] = str(tmp_path)
    try:
        asyncio.run(restart_and_finish(load(flow_file), store))
    finally:
        del os.environ["FLOW_WORK"]
    calls = (tmp_path / "calls.log").read_text().split()
    # Finished nodes did not run again; the interrupted one ran twice.
    assert sorted(calls) == sorted(["a", "b", "block", "block", "c"])


def test_a_frozen_process_loses_its_request_and_step_when_its_leases_run_out(
    tmp_path: Path, redis_url: str
) -> None:
    # A process stopped with SIGSTOP still has its pid (not a zombie, not reused): a pid
    # is no proof of life. Its engine heartbeat and its step's lease run out, and another
    # engine takes the request and the step over within about a lease.
    flow_file = tmp_path / "flow.py"
    flow_file.write_text(FLOW)
    store = f"{redis_url}?namespace=frozen{os.getpid()}:"
    lease = 1.0
    env = {**os.environ, "FLOW_WORK": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(flow_file), store, str(lease)],
        env=env, stderr=subprocess.PIPE,
    )
    try:
        wait_for(tmp_path / "entered", child)
        time.sleep(lease)  # long enough for the step's lease key to be written too
        child.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        (tmp_path / "release").touch()
        os.environ["FLOW_WORK"] = str(tmp_path)
        try:
            taken_after = asyncio.run(_take_over_frozen(load(flow_file), store, lease, frozen))
        finally:
            del os.environ["FLOW_WORK"]
    finally:
        child.kill()
        child.wait()
        if child.stderr is not None:
            child.stderr.close()
    assert taken_after <= lease + 2, f"taken over {taken_after:.1f}s after the freeze"
    assert (tmp_path / "calls.log").read_text().split().count("block") == 2


async def _take_over_frozen(module: ModuleType, store: str, lease: float, frozen: float) -> float:
    """Recover the frozen process's request as soon as its engine counts as gone; the
    seconds from the freeze until then."""
    async with faasflow.Engine(module.define, flow_name="restart", state_store=store,
                               lease_ttl=lease) as e:
        while not await e.recover():
            assert time.monotonic() - frozen < 30, "never taken over"
            await asyncio.sleep(0.05)
        taken = time.monotonic() - frozen
        assert await e.wait("survivor", timeout=30) == b">ab+>ablockc"
        history = await e.history("survivor")
        block = [h for h in history if h["node"] == "block" and h["event"] == "finished"]
        assert block[0]["attempt"] == 2
        return taken
