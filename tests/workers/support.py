"""What the worker tests share: waiting with a deadline, ``faasflow worker`` processes
(each its own host, or all on this one), counting a flow's node executions, and a
process started at a pid of the test's choosing."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import faasflow

_SRC = str(Path(faasflow.__file__).resolve().parents[1])
FLOWS = Path(__file__).parent / "flows"
FANOUT = FLOWS / "fanout.py"
_names = itertools.count()


async def until(check: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``check`` until it is true; fail the test when ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def process_env(host: str) -> dict[str, str]:
    """The environment of a faasflow process that goes by ``host`` in its claims, as if
    it ran on another machine."""
    return dict(
        os.environ,
        FAASFLOW_HOST=host,
        PYTHONPATH=os.pathsep.join([_SRC, os.environ.get("PYTHONPATH", "")]),
    )


class WorkerProcess:
    """One ``faasflow worker`` process on the fan-out flow (``flows/fanout.py``).

    Each goes by a host name of its own in its claims, as if on another machine, unless
    ``same_host``: then its pid is what other processes can check.
    """

    def __init__(
        self,
        flow: str,
        nats: str,
        state: str,
        tmp: Path,
        *extra: str,
        same_host: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = f"host-{next(_names)}"
        self.stderr = tmp / f"{self.host}.log"
        environment = process_env(self.host)
        if same_host:
            del environment["FAASFLOW_HOST"]
        environment.update(env or {})
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "faasflow", "worker", str(FANOUT), "--name", flow,
                 "--nats", nats, "--state", state, "--ack-wait", "1", "--concurrency", "8",
                 *extra],
                stdout=subprocess.DEVNULL, stderr=err, env=environment,
            )

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while b"ready" not in self.stderr.read_bytes():
            assert self.process.poll() is None, self.stderr.read_text()
            assert time.monotonic() < deadline, "worker not ready in time"
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(30)


def executions(log: Path) -> list[tuple[str, int]]:
    """``(node, pid)`` of every node execution the fan-out flow logged to ``log``."""
    lines = log.read_text().split() if log.exists() else []
    return [(lines[i], int(lines[i + 1])) for i in range(0, len(lines), 2)]


def start_at_pid(pid: int, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` as process ``pid`` (free by now): a pid reused by an unrelated
    process, as happens when a container restarts.

    As root, Linux's ``ns_last_pid`` names the pid the next process gets; elsewhere,
    processes are started until the pid counter comes round.
    """
    for _ in range(50):
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as last:
                last.write(str(pid - 1))
        except OSError:
            _cycle_pids_until(pid - 1)
        process = subprocess.Popen(argv)
        if process.pid == pid:
            return process
        process.kill()
        process.wait()
    raise RuntimeError(f"could not start a process as pid {pid}")


def _cycle_pids_until(target: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        process = subprocess.Popen(["true"])
        process.wait()
        if process.pid == target:
            return
    raise RuntimeError(f"the pid counter did not reach {target}")
