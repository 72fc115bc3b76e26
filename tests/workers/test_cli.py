"""``faasflow worker`` and the request commands, as a user runs them."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import stop_process

from .support import process_env

ROOT = Path(__file__).resolve().parents[2]
FLOWS = Path(__file__).parent / "flows"
_names = itertools.count()


def faasflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faasflow", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture
def env(nats_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The variables a deployment sets, and one worker running the fan-out flow."""
    flow = f"cli{next(_names)}"
    variables = process_env("cli") | {
        "FAASFLOW_NATS": nats_url,
        "FAASFLOW_STATE": f"{redis_url}?namespace={flow}:",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "faasflow", "worker", str(FLOWS / "fanout.py")],
            cwd=ROOT, env=variables, stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in log.read_bytes():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        yield variables
    finally:
        stop_process(worker)


def test_submit_status_result_and_control(env: dict[str, str], tmp_path: Path) -> None:
    sys.path.insert(0, str(FLOWS))
    import fanout

    flow = str(FLOWS / "fanout.py")
    waited = faasflow("submit", flow, "--data", "in", "--wait", "30", env=env)
    assert (waited.returncode, waited.stdout) == (0, fanout.expected(b"in").decode())

    rid = "cli-request-1"
    faasflow("submit", flow, "--data", "x", "--request-id", rid, "--wait", "30", env=env)
    status = faasflow("status", rid, env=env)
    assert status.stdout.startswith(f"{rid}  flow fanout  succeeded\n")
    lines = status.stdout.splitlines()[1:]  # the node tree: one line per node here
    assert sorted(line.split()[0] for line in lines) == ["b0", "b1", "b2", "b3", "join", "start"]
    assert all(line.split()[1:4] == ["done", "attempt", "1"] for line in lines)
    assert faasflow("result", rid, env=env).stdout == fanout.expected(b"x").decode()

    # pause a request held at its gate, resume it, and it finishes
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    query = f"marker={marker}&gate={gate}"
    held = faasflow("submit", flow, "--data", "p", "--query", query, env=env).stdout.strip()
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    paused = faasflow("pause", held, env=env)
    assert (paused.returncode, paused.stderr) == (0, f"{held} paused\n")
    assert f"{held}  flow fanout  paused" in faasflow("status", held, env=env).stdout
    listed = faasflow("requests", "fanout", "--status", "paused", "--json", env=env)
    assert [r["request_id"] for r in json.loads(listed.stdout)["requests"]] == [held]
    gate.touch()  # b1 finishes while paused: its successor is held
    resumed = faasflow("resume", held, env=env)
    assert resumed.returncode == 0 and resumed.stderr.startswith(f"{held} resumed (")
    result = faasflow("result", held, env=env)
    while result.returncode != 0:
        assert time.monotonic() < deadline, result.stderr
        time.sleep(0.1)
        result = faasflow("result", held, env=env)
    assert result.stdout == fanout.expected(b"p").decode()

    listed = faasflow("requests", "fanout", "--limit", "2", env=env).stdout.splitlines()
    assert listed[0].split() == ["REQUEST", "STATUS", "CREATED", "TOOK", "FAILED", "AT"]
    # newest first (by creation, not by id: rid was chosen by the client)
    assert [line.split()[:2] for line in listed[1:3]] == [[held, "succeeded"], [rid, "succeeded"]]
    cursor = listed[-1].removeprefix("more: --before ")
    older = faasflow("requests", "fanout", "--before", cursor, "--json", env=env).stdout
    assert [r["status"] for r in json.loads(older)["requests"]] == ["succeeded"]  # the first
    assert json.loads(older)["next"] is None

    missing = faasflow("status", "no-such-request", env=env)
    assert (missing.returncode, missing.stderr) == (1, "error: no request 'no-such-request'\n")
