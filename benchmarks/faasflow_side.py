"""faasflow's side of ``benchmarks/distributed.py``: ``faasflow worker`` processes on NATS
JetStream, state and data in Redis, and a :class:`faasflow.workers.Client` in the harness.

Configuration, chosen for durability equal to or above Celery's (late acks there):

* hops are JetStream messages in a file-backed work queue, acknowledged only after the
  node's output, its done record and its successors are stored;
* Redis without persistence, as on Celery's side (the same ``redis-server`` flags);
* each worker runs up to 64 hops at once (``--concurrency``), on one event loop; Celery's
  solo worker runs one task at a time, which is its design for a process;
* the client learns of each request's end from the workers' announcement on NATS (and
  polls the store twice a second as a fallback), as Celery's client is told by its
  result backend.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from distributed_common import binary_version, nats_server, redis_server, stop_process
from faasflow_flows import define

if TYPE_CHECKING:
    from faasflow.workers import Client

HERE = Path(__file__).resolve().parent
FLOW = "bench"
READY_TIMEOUT = 60.0
WAIT = 600.0


class FaasflowSide:
    """``faasflow worker`` processes (NATS JetStream hops, Redis state and data)."""

    name = "faasflow"

    def __init__(self, concurrency: int = 64) -> None:
        self.concurrency = concurrency
        self._stack = ExitStack()
        self._servers: list[int] = []
        self._workers: list[subprocess.Popen[bytes]] = []
        self._client: Client | None = None

    async def start(self, workdir: Path, workers: int) -> None:
        """Start Redis, NATS and ``workers`` workers; return once each has run a hop."""
        from faasflow.workers import Client

        try:
            redis = self._stack.enter_context(redis_server(workdir, self._servers))
            nats = self._stack.enter_context(nats_server(workdir, self._servers))
            logs = []
            for index in range(workers):
                log = workdir / f"faasflow-worker{index}.log"
                logs.append(log)
                self._spawn(index, nats, redis, log)
            await self._wait_ready(logs)
            client = Client(define, flow_name=FLOW, nats=nats, state_store=redis)
            await client.start()
            self._client = client
            # Every worker's first hops import and warm what the following ones use.
            await self.concurrent(4 * workers, 2, b"warm")
        except BaseException:
            await self.stop()
            raise

    def _spawn(self, index: int, nats: str, redis: str, log: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        command = [
            sys.executable, "-m", "faasflow", "worker", str(HERE / "faasflow_flows.py"),
            "--name", FLOW, "--nats", nats, "--state", redis,
            "--concurrency", str(self.concurrency),
        ]  # fmt: skip
        with log.open("wb") as err:
            process = subprocess.Popen(
                command, cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            )  # fmt: skip
        self._workers.append(process)
        self._stack.callback(stop_process, process)

    async def _wait_ready(self, logs: list[Path]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for process, log in zip(self._workers, logs, strict=True):
            while b"ready" not in log.read_bytes():
                if process.poll() is not None:
                    raise RuntimeError(f"a faasflow worker exited:\n{log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"faasflow workers not ready in {READY_TIMEOUT} s")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Close the client, stop the workers (SIGTERM), then NATS and Redis."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._stack.close()
        self._workers.clear()
        self._servers.clear()

    async def _run(self, payload: bytes, shape: str, size: int) -> bytes:
        client = self._client
        assert client is not None, "start() first"
        rid = await client.submit(payload, query=f"shape={shape}&size={size}")
        return await client.wait(rid, WAIT)

    async def chain(self, n: int, payload: bytes) -> bytes:
        return await self._run(payload, "chain", n)

    async def fanout(self, width: int, payload: bytes) -> bytes:
        return await self._run(payload, "fanout", width)

    async def foreach(self, width: int, payload: bytes) -> bytes:
        return await self._run(payload, "foreach", width)

    async def concurrent(self, count: int, length: int, payload: bytes) -> list[bytes]:
        return list(
            await asyncio.gather(*(self._run(payload, "chain", length) for _ in range(count)))
        )

    def worker_pids(self) -> list[int]:
        return [process.pid for process in self._workers]

    def server_pids(self) -> list[int]:
        return list(self._servers)

    def versions(self) -> dict[str, str]:
        return {
            "faasflow": importlib.metadata.version("faasflow"),
            "nats-py": importlib.metadata.version("nats-py"),
            "redis-py": importlib.metadata.version("redis"),
            "redis-server": binary_version("redis-server"),
            "nats-server": binary_version("nats-server"),
        }

    def settings(self) -> dict[str, str]:
        return {
            "transport": "NATS JetStream work queue (file storage), ack after durable effects",
            "state/data": "Redis (no persistence, as for Celery)",
            "worker concurrency": f"{self.concurrency} hops per worker (one event loop)",
            "completion": "worker announces the end on NATS; client polls as a fallback",
        }
