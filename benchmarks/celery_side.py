"""The Celery side of ``benchmarks/distributed.py``: Celery workers on a private Redis.

What runs:

* one private ``redis-server`` on a free loopback port (nothing on disk), the broker and
  the result backend;
* ``workers`` worker processes, ``celery -A celery_tasks worker`` (the app and tasks are
  in ``celery_tasks.py``, its docstring gives the configuration and why), by default
  ``--pool=solo``: each worker is one process that runs one task at a time in the
  process that consumes the messages. ``--pool=prefork --concurrency=1`` would run the
  same one task at a time, but in a child process, with every task and its result
  passing through a pipe between the consumer and the child: one more hop per task, and
  a second process per worker. Solo is the faster of the two for short tasks and is
  what one "worker process" means on the faasflow side too. The pool is a flag
  (``--celery-pool``) to check that claim;
* the client in the harness's process: the same app, its blocking calls run on one
  dedicated thread (so that one result-backend connection and its pub/sub subscription
  serve every call and stay warm) while the harness's event loop waits.

The canvas for each measurement (the work itself is in ``distributed_common.py``):

* chain: ``chain(work.s(payload), work.s(), ...)``, ``n`` tasks;
* fan-out: ``chord(group(work.s(payload) x width), aggregate.s())`` (the Redis backend's
  native chord: an atomic counter per chord, no ``chord_unlock`` polling);
* foreach: ``chain(split.s(payload, width), expand.s())``, where ``expand`` replaces
  itself with ``chord(group(work.s(item) for item in items), aggregate.s())``;
* concurrent: ``count`` chains of ``length`` sent one after the other by the client
  (Celery's client has no batch send), then every result awaited.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from distributed_common import STOP_TIMEOUT, binary_version, redis_server, stop_process

HERE = Path(__file__).resolve().parent
RESULT_TIMEOUT = 600.0  # a stuck run fails rather than hangs
READY_TIMEOUT = 60.0
T = TypeVar("T")


class CelerySide:
    """Celery 5 workers, Redis broker and Redis result backend.

    Args:
        pool: the workers' ``--pool`` (``solo``, ``prefork`` or ``threads``).
        concurrency: the workers' ``--concurrency`` (ignored by ``solo``).
        prefetch: ``worker_prefetch_multiplier``.
        serializer: ``json`` or ``msgpack``, for tasks and results.
    """

    name = "celery"

    def __init__(
        self,
        pool: str = "solo",
        concurrency: int = 1,
        prefetch: int = 4,
        serializer: str = "json",
    ) -> None:
        self.pool = pool
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.serializer = serializer
        self.url = ""
        self._stack = ExitStack()
        self._workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._servers: list[int] = []
        self._thread: ThreadPoolExecutor | None = None
        self._busy = 0  # calls on the client thread not yet answered

    # -- lifecycle -------------------------------------------------------------------
    async def start(self, workdir: Path, workers: int) -> None:
        """Start Redis and ``workers`` Celery workers; return once each consumes."""
        try:
            self.url = self._stack.enter_context(redis_server(workdir, self._servers))
            import celery_tasks

            celery_tasks.configure(self.url, self.prefetch, self.serializer)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="celery-client")
            for index in range(workers):
                self._spawn(workdir, index)
            await self._call(self._wait_ready)
        except BaseException:
            await self.stop()
            raise

    def _spawn(self, workdir: Path, index: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        env.update(
            BENCH_CELERY_REDIS_URL=self.url,
            BENCH_CELERY_PREFETCH=str(self.prefetch),
            BENCH_CELERY_SERIALIZER=self.serializer,
        )
        log = workdir / f"celery-worker{index}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
            f"--pool={self.pool}", f"--concurrency={self.concurrency}",
            "--loglevel=WARNING", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-n", f"bench{index}@%h", f"--logfile={log}",
        ]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=HERE, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C reaches the harness, which stops it in order.
            start_new_session=True,
        )  # fmt: skip
        self._workers.append(process)
        self._logs.append(log)
        self._stack.callback(stop_process, process, STOP_TIMEOUT)

    def _wait_ready(self) -> None:
        """Poll until every worker answers a control ping, then run one task per worker
        (each worker's first task imports and warms what the following ones use)."""
        import celery_tasks

        names = {f"bench{i}@" for i in range(len(self._workers))}
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            for process, log in zip(self._workers, self._logs, strict=True):
                if process.poll() is not None:
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RuntimeError(f"a Celery worker exited ({process.returncode}):\n{tail}")
            replies = celery_tasks.app.control.ping(timeout=0.5)
            seen = {name.split("@")[0] + "@" for reply in replies for name in reply}
            if names <= seen:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Celery workers not ready in {READY_TIMEOUT} s: saw {seen}")
        pings = [celery_tasks.ping.delay() for _ in range(4 * len(self._workers))]
        for result in pings:
            if result.get(timeout=RESULT_TIMEOUT) != "pong":
                raise RuntimeError("a Celery worker answered the ping task wrongly")

    async def stop(self) -> None:
        """Stop the workers (warm shutdown, SIGKILL after a timeout), then Redis."""
        if self._thread is not None:
            import celery_tasks

            if self._busy:
                # Interrupted mid-call: that thread may wait for an answer that will never
                # come once the workers are gone; do not wait for it.
                self._thread.shutdown(wait=False, cancel_futures=True)
            else:
                # The client's pools and the backend's pub/sub connection, on the thread
                # that opened them.
                await self._call(celery_tasks.app.close)
                self._thread.shutdown()
            self._thread = None
        # ExitStack unwinds in reverse: the workers first, then redis-server.
        self._stack.close()
        self._workers.clear()
        self._servers.clear()

    async def _call(self, function: Callable[[], T]) -> T:
        assert self._thread is not None, "start() first"
        self._busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, function)
        finally:
            self._busy -= 1

    # -- the measurements --------------------------------------------------------------
    async def chain(self, n: int, payload: bytes) -> bytes:
        """A chain of ``n`` tasks, from the client's send to its answer."""
        from celery import chain
        from celery_tasks import work

        def run() -> bytes:
            signature = chain(work.s(payload), *(work.s() for _ in range(n - 1)))
            return _bytes(signature.apply_async().get(timeout=RESULT_TIMEOUT))

        return await self._call(run)

    async def fanout(self, width: int, payload: bytes) -> bytes:
        """``chord(group(work x width), aggregate)``."""
        from celery import chord, group
        from celery_tasks import aggregate, work

        def run() -> bytes:
            signature = chord(group(work.s(payload) for _ in range(width)), aggregate.s())
            return _bytes(signature.apply_async().get(timeout=RESULT_TIMEOUT))

        return await self._call(run)

    async def foreach(self, width: int, payload: bytes) -> bytes:
        """``split | expand``, ``expand`` replacing itself with a chord over the items."""
        from celery_tasks import expand, split

        def run() -> bytes:
            signature = split.s(payload, width) | expand.s()
            return _bytes(signature.apply_async().get(timeout=RESULT_TIMEOUT))

        return await self._call(run)

    async def concurrent(self, count: int, length: int, payload: bytes) -> list[bytes]:
        """``count`` chains of ``length`` sent at once; every answer."""
        from celery import chain
        from celery_tasks import work

        def run() -> list[bytes]:
            results = [
                chain(work.s(payload), *(work.s() for _ in range(length - 1))).apply_async()
                for _ in range(count)
            ]
            return [_bytes(result.get(timeout=RESULT_TIMEOUT)) for result in results]

        return await self._call(run)

    # -- what the harness reports ----------------------------------------------------
    def worker_pids(self) -> list[int]:
        """The worker processes (their pool children are counted by the harness)."""
        return [process.pid for process in self._workers]

    def server_pids(self) -> list[int]:
        """``redis-server``."""
        return list(self._servers)

    def versions(self) -> dict[str, str]:
        """Celery and the packages and server under it."""
        return {
            "celery": importlib.metadata.version("celery"),
            "kombu": importlib.metadata.version("kombu"),
            "billiard": importlib.metadata.version("billiard"),
            "redis-py": importlib.metadata.version("redis"),
            "redis-server": binary_version("redis-server"),
        }

    def settings(self) -> dict[str, str]:
        """The choices that matter for speed and durability."""
        return {
            "workers": f"{len(self._workers)} x celery worker --pool={self.pool} "
            f"--concurrency={self.concurrency} --without-gossip/mingle/heartbeat",
            "broker / results": "private redis-server (no persistence), the same for both",
            "acks": "task_acks_late=True, task_reject_on_worker_lost=True",
            "prefetch": f"worker_prefetch_multiplier={self.prefetch}",
            "serializer": self.serializer,
            "chord": "Redis native chord (ordered join), no chord_unlock",
        }


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise AssertionError(f"Celery answered {type(value).__name__}, not bytes")
    return value
