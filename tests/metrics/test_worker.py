"""``faasflow worker --metrics-port``: a real worker process, scraped over loopback."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from faasflow.workers import Client
from servers import free_port, stop_process
from workers.support import process_env
from workers.support import until as until_true

from .scrape import Scrape, parse, until

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "tests" / "workers" / "flows"
_names = itertools.count()

sys.path.insert(0, str(FLOWS))
import fanout  # noqa: E402  (the flow the worker runs; the client needs it too)


@pytest.fixture
def setup(nats_url: str, redis_url: str) -> dict[str, str]:
    flow = f"metrics{next(_names)}"
    return {"flow": flow, "nats": nats_url, "state": f"{redis_url}?namespace={flow}:"}


@pytest.fixture
def worker(setup: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A worker of the fan-out flow with its metrics port; yields the port's URL."""
    port = free_port()
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "faasflow", "worker", str(FLOWS / "fanout.py"),
             "--name", setup["flow"], "--nats", setup["nats"], "--state", setup["state"],
             "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
            cwd=ROOT, env=process_env("metrics"), stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in log.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


async def test_a_worker_serves_its_metrics(
    setup: dict[str, str], worker: str, tmp_path: Path
) -> None:
    flow = {"flow": setup["flow"]}
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    async with (
        Client(fanout.define, flow_name=setup["flow"], nats=setup["nats"],
               state_store=setup["state"]) as client,
        httpx.AsyncClient(timeout=30) as http,
    ):
        assert (await http.get(worker + "/healthz")).text == "ok\n"
        done = await client.submit(b"in")
        assert await client.wait(done, timeout=60) == fanout.expected(b"in")

        # b1 waits at its gate: one step runs; paused meanwhile, b1's successor is held
        held = await client.submit(b"h", query=urlencode({"marker": marker, "gate": gate}))
        await until_true(marker.exists)
        running = parse(await http.get(worker + "/metrics"))
        assert running.value("faasflow_hops_in_flight", **flow) == 1
        await client.pause(held)
        gate.touch()

        async def scrape() -> Scrape:
            return parse(await http.get(worker + "/metrics"))

        async def join_held() -> bool:
            # the count is cached for a few seconds after the scrape above
            return (await scrape()).value("faasflow_held_hops", **flow) == 1

        await until(join_held)
        await client.resume(held)
        assert await client.wait(held, timeout=60) == fanout.expected(b"h")

        async def both_succeeded() -> bool:
            found = (await scrape()).value("faasflow_requests_total", **flow, status="succeeded")
            return found == 2

        await until(both_succeeded)
        final = await scrape()

    # The client started the requests: the worker recorded how they ended.
    assert final.value("faasflow_requests_total", **flow, status="started") is None
    nodes = final.labelled("faasflow_node_duration_seconds_count")
    assert nodes == {
        frozenset({**flow, "node": node, "outcome": "done"}.items()): 2
        for node in ["start", *fanout.BRANCHES, "join"]
    }
    assert final.value("faasflow_hops_in_flight", **flow) == 0


def run_worker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faasflow", "worker", str(FLOWS / "fanout.py"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )


def test_a_bad_metrics_port_is_a_usage_error(setup: dict[str, str]) -> None:
    env = process_env("metrics") | {
        "FAASFLOW_NATS": setup["nats"], "FAASFLOW_STATE": setup["state"],
        "FAASFLOW_METRICS_PORT": "ninety",
    }
    bad = run_worker(env=env)
    assert bad.returncode == 2
    assert "--metrics-port ($FAASFLOW_METRICS_PORT) must be a port number, got 'ninety'" in (
        bad.stderr
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_worker("--metrics-port", str(port), "--metrics-host", "127.0.0.1", env=env)
    assert busy.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr


def test_metrics_listen_on_loopback_unless_told(setup: dict[str, str]) -> None:
    env = process_env("metrics") | {
        "FAASFLOW_NATS": setup["nats"], "FAASFLOW_STATE": setup["state"],
    }
    # The port taken on loopback: the error names the address the worker tried.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_worker("--metrics-port", str(port), env=env)
    assert busy.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
