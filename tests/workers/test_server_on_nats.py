"""The flow server with the NATS transport: HTTP in, hops on JetStream, run by any replica
or ``faasflow worker`` of the flow."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers import free_port, stop_process

from .support import process_env, until

FLOWS = Path(__file__).parent / "flows"
_names = itertools.count()

sys.path.insert(0, str(FLOWS))
import fanout  # noqa: E402


@pytest.fixture
def system(tmp_path: Path, nats_url: str, redis_url: str) -> Iterator[str]:
    """Two flow-server replicas and one worker on NATS and Redis; yields a replica's URL."""
    flow = f"srv{next(_names)}"
    state = f"{redis_url}?namespace={flow}:"
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "faasflow", "serve", str(FLOWS / "fanout.py"), "--name", flow,
             "--port", str(port), "--nats", nats_url, "--state", state],
            env=process_env(f"replica-{port}"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "faasflow", "worker", str(FLOWS / "fanout.py"), "--name", flow,
         "--nats", nats_url, "--state", state],
        env=process_env("worker"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    ))
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "flow server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{ports[0]}"
        for process in processes:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
    finally:
        for process in processes:
            stop_process(process)


async def test_requests_over_http_run_on_replicas_and_workers(system: str) -> None:
    async with httpx.AsyncClient(base_url=system, timeout=60) as client:
        waited = [
            client.post("/", content=f"in{i}".encode(), headers={"X-Faas-Flow-Wait": "30"})
            for i in range(20)
        ]
        responses = await asyncio.gather(*waited)
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert response.content == fanout.expected(f"in{i}".encode())


async def test_pause_and_resume_over_http(system: str, tmp_path: Path) -> None:
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    async with httpx.AsyncClient(base_url=system, timeout=60) as client:
        started = await client.post(
            "/", content=b"p", params={"marker": str(marker), "gate": str(gate)}
        )
        assert started.status_code == 202
        rid = started.headers["X-Faas-Flow-Reqid"]
        await until(marker.exists)
        assert (await client.post(f"/flow/{rid}/pause")).status_code == 200
        gate.touch()  # b1 finishes while paused: the join is held, not run
        await asyncio.sleep(0.5)
        state = (await client.get(f"/flow/{rid}/state")).text
        assert "paused" in state
        assert (await client.get(f"/flow/{rid}/result")).status_code == 404
        assert (await client.post(f"/flow/{rid}/resume")).status_code == 200
        deadline = time.monotonic() + 30
        while (result := await client.get(f"/flow/{rid}/result")).status_code != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert result.content == fanout.expected(b"p")
