"""What every side of ``benchmarks/distributed.py`` shares: the work and its expected
answers, and the private servers (``redis-server``, ``nats-server -js``) a side starts.

Kept apart from the harness so that a side, and the worker processes it starts, can
import it: the harness's own file is named ``distributed.py``, and importing that by
name from ``benchmarks/`` would shadow Dask's ``distributed`` package.

The work, identical on every side (every node runs the same body, :func:`step`):

* ``chain(n)``: ``payload -> step -> step -> ... (n times)``; answer
  :func:`expected_chain`.
* ``fanout(width)``: ``width`` parallel branches, each ``step(payload)``, then one
  aggregator that concatenates the branch outputs in branch order (a side whose DAG needs
  a single root may put a pass-through source node in front: the answer is the same);
  answer :func:`expected_fanout`.
* ``foreach(width)``: a split step turns ``payload`` into ``width`` items
  (:func:`foreach_items`, decided at run time from its input), each item runs ``step``,
  an aggregator joins the outputs in key order (:func:`join_in_key_order`); answer
  :func:`expected_foreach`.
* ``concurrent(count, length)``: ``count`` chains of ``length`` submitted at once; every
  answer is :func:`expected_chain` of ``length``.

The servers follow ``tests/servers`` (benchmarks must not import tests): a free loopback
port, poll for readiness with a deadline, nothing kept on disk beyond a temporary
directory, SIGTERM then SIGKILL on the way out.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PAYLOAD = b"x" * 100
STEP_SUFFIX = b"."


# -- the work --------------------------------------------------------------------------
def step(data: bytes) -> bytes:
    """Every node's body: hand the data on with one byte appended, so that the answer
    proves that each node ran exactly once."""
    return data + STEP_SUFFIX


def foreach_items(data: bytes, width: int) -> dict[str, bytes]:
    """The foreach's split: ``width`` items keyed ``00000``, ``00001``, ...; each item is
    its key, a colon and the input, so that a lost, duplicated or reordered item shows."""
    return {f"{i:05d}": f"{i:05d}:".encode() + data for i in range(width)}


def join_in_key_order(results: dict[str, bytes]) -> bytes:
    """The aggregator: the outputs concatenated in the order of their keys."""
    return b"".join(results[key] for key in sorted(results))


def expected_chain(n: int, payload: bytes = PAYLOAD) -> bytes:
    """The answer of a chain of ``n`` nodes."""
    return payload + STEP_SUFFIX * n


def expected_fanout(width: int, payload: bytes = PAYLOAD) -> bytes:
    """The answer of a fan-out of ``width`` branches and a concatenating fan-in."""
    return step(payload) * width


def expected_foreach(width: int, payload: bytes = PAYLOAD) -> bytes:
    """The answer of a foreach over ``width`` items."""
    return b"".join(step(item) for item in foreach_items(payload, width).values())


# -- servers ---------------------------------------------------------------------------
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def require_binary(name: str, package: str) -> str:
    """The path of program ``name``, or a clear error naming the Debian package."""
    binary = shutil.which(name)
    if binary is None:
        raise RuntimeError(f"{name} is not installed (apt-get install {package})")
    return binary


def binary_version(name: str) -> str:
    """``name --version``'s version number, or ``"absent"``."""
    binary = shutil.which(name)
    if binary is None:
        return "absent"
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"v=?(\d+\.\d+\.\d+)", done.stdout + done.stderr)
    return found.group(1) if found else (done.stdout + done.stderr).strip()


def wait_until_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    what: str,
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll ``ready`` until it is true; fail if the process exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready within {timeout} s")
        time.sleep(0.02)


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Terminate ``process`` (kill it if it lingers) and close its pipes."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _redis_pong(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


@contextmanager
def redis_server(workdir: Path, pids: list[int] | None = None) -> Iterator[str]:
    """A private ``redis-server`` keeping nothing on disk; yields its URL.

    Args:
        workdir: its working directory (a temporary one).
        pids: if given, the server's pid is appended (for CPU accounting).
    """
    binary = require_binary("redis-server", "redis-server")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_ready(process, lambda: _redis_pong(port), f"redis-server on port {port}")
        if pids is not None:
            pids.append(process.pid)
        yield f"redis://{HOST}:{port}/0"
    finally:
        stop_process(process)


def _nats_healthy(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=0.5) as sock:
        sock.sendall(b"GET /healthz?js-enabled-only=true HTTP/1.0\r\n\r\n")
        status = sock.recv(64).split(b"\r\n", 1)[0]
        return status.startswith(b"HTTP/") and b" 200" in status


@contextmanager
def nats_server(workdir: Path, pids: list[int] | None = None) -> Iterator[str]:
    """A private ``nats-server -js`` (JetStream storage in ``workdir``); yields its URL.

    Args:
        workdir: where JetStream keeps its files (a temporary directory).
        pids: if given, the server's pid is appended (for CPU accounting).
    """
    binary = require_binary("nats-server", "nats-server")
    port, monitor = free_port(), free_port()
    store = workdir / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "-js", "-a", HOST, "-p", str(port), "-m", str(monitor), "-sd", str(store)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_ready(process, lambda: _nats_healthy(monitor), f"nats-server on port {port}")
        if pids is not None:
            pids.append(process.pid)
        yield f"nats://{HOST}:{port}"
    finally:
        stop_process(process)
