"""Real servers the test suite starts on free loopback ports, and stops.

One module per service; each exposes a context manager that yields the service's URL.
In CI a service that cannot start is a failure, never a skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable

__all__ = ["free_port", "require_binary", "stop_process", "wait_until_ready"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_binary(name: str, package: str) -> str:
    """The path of program ``name``, or a clear error naming the Debian package."""
    binary = shutil.which(name)
    if binary is None:
        raise RuntimeError(f"{name} is not installed (apt-get install {package})")
    return binary


def wait_until_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, timeout: float = 30
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


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
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
