"""Without the optional client libraries (the extras), faasflow still runs, and the
commands that need one say which extra to install, with one exit status (3)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A child process in which importing the extras' libraries fails, as on a bare install.
WITHOUT_EXTRAS = """
import sys
for name in ("nats", "asyncpg", "botocore", "starlette", "uvicorn"):
    sys.modules[name] = None  # import raises ModuleNotFoundError
from faasflow.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

RETRIED = '''
from pathlib import Path


def define(flow, context):
    def once_allowed(data: bytes) -> bytes:
        if not Path(context.query_value("allow")).exists():
            raise RuntimeError("not yet")
        return data + b"!"

    dag = flow.dag()
    dag.node("a").modify(lambda data: data.upper())
    dag.node("b").modify(once_allowed)
    dag.edge("a", "b")
'''


def faasflow(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "XDG_CACHE_HOME": str(cwd / "cache")},
    )


def test_run_needs_no_extra() -> None:
    done = faasflow("run", "examples/greet.py", "--data", "Adam", "--state", "memory://")
    assert (done.returncode, done.stdout) == (0, "Hello Adam")


def test_a_worker_without_nats_py_names_the_extra() -> None:
    done = faasflow("worker", "examples/greet.py", "--nats", "nats://127.0.0.1:1",
                    "--state", "sqlite:///flows.db")
    assert done.returncode == 3
    assert done.stderr.strip() == (
        "error: workers need the nats package: pip install 'faasflow[nats]'"
    )


def test_a_store_without_its_client_names_the_extra() -> None:
    for url, extra in (("postgresql://u@127.0.0.1/db", "postgres"),):
        done = faasflow("run", "examples/greet.py", "--data", "x", "--state", url)
        assert done.returncode == 3
        assert f"pip install 'faasflow[{extra}]'" in done.stderr
    done = faasflow("run", "examples/greet.py", "--data", "x", "--state", "memory://",
                    "--data-store", "s3://bucket/p?endpoint=http://127.0.0.1:1")
    assert done.returncode == 3
    assert "pip install 'faasflow[s3]'" in done.stderr


def test_the_servers_without_the_server_extra_name_it() -> None:
    for argv in (["serve", "examples/greet.py"], ["gateway"],
                 ["dashboard", "examples/greet.py"]):
        done = faasflow(*argv)
        assert done.returncode == 3, (argv, done.stderr)
        assert done.stderr.startswith(f"error: faasflow {argv[0]} needs Starlette and uvicorn")
        assert done.stderr.rstrip().endswith("pip install 'faasflow[server]'")
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_reading_a_local_store_needs_no_extra(
    flows: Path, tmp_path: Path
) -> None:
    state = f"sqlite:///{tmp_path / 'flows.db'}"
    ran = faasflow("run", str(flows), "--data", "Ann", "--request-id", "r1", "--state", state)
    assert ran.returncode == 0, ran.stderr
    status = faasflow("status", "r1", "--state", state)
    assert (status.returncode, status.stderr) == (0, "")
    assert status.stdout.startswith("r1  flow flows  succeeded\n")
    result = faasflow("result", "r1", "--state", state)
    assert (result.returncode, result.stdout) == (0, "Hello Ann!")
    listed = faasflow("requests", "flows", "--state", state)
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].startswith("r1 ")


def test_redrive_on_a_local_store_runs_the_request_here(
    write_file: Callable[[str, str], Path], tmp_path: Path
) -> None:
    flow = write_file("retried.py", RETRIED)
    allow = tmp_path / "allow"
    state = f"sqlite:///{tmp_path / 'flows.db'}"
    failed = faasflow("run", str(flow), "--data", "hi", "--request-id", "r2",
                      "--query", f"allow={allow}", "--state", state, cwd=tmp_path)
    assert failed.returncode == 1
    assert "failed at node 'b'" in failed.stderr
    allow.touch()
    redriven = faasflow("redrive", "r2", "--flow", str(flow), "--state", state, cwd=tmp_path)
    assert (redriven.returncode, redriven.stdout) == (0, "HI!"), redriven.stderr
    assert re.fullmatch(r"r2 redriven \(\d+ hop\(s\) sent\)\n", redriven.stderr)
    result = faasflow("result", "r2", "--state", state, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "HI!")
    # Without the flow file there is nothing to run the hops with, and no NATS to send
    # them to: say so.
    again = faasflow("redrive", "r2", "--state", state, cwd=tmp_path)
    assert again.returncode == 2
    assert "--flow FILE" in again.stderr and "--nats" in again.stderr


def test_a_python_client_reads_a_store_without_nats_py(tmp_path: Path) -> None:
    # faasflow.workers.Client without a NATS URL reads and controls requests with the
    # stores alone; only a client (or worker) that talks to NATS needs nats-py.
    script = f"""
import asyncio, sys
for name in ("nats",):
    sys.modules[name] = None
import faasflow
from faasflow.workers import Client, Worker

def define(flow, context):
    flow.dag().node("a").modify(lambda d: d + b"!")

store = "sqlite:///{tmp_path / 'state.db'}"

async def main():
    async with faasflow.Engine(define, flow_name="f", state_store=store) as engine:
        rid = await engine.submit(b"x")
        await engine.wait(rid, timeout=10)
    async with Client(define, flow_name="f", state_store=store) as client:
        print((await client.info(rid)).status, (await client.result(rid)).decode())
    try:
        Worker(define, nats="nats://127.0.0.1:1", state_store=store)
    except Exception as exc:
        print(exc)

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "succeeded x!",
        "workers need the nats package: pip install 'faasflow[nats]'",
    ]
