"""A private ``redis-server`` on a free port."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import free_port, require_binary, stop_process, wait_until_ready


def _pong(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


@contextmanager
def redis_server(workdir: Path, port: int | None = None, *, persist: bool = False) -> Iterator[str]:
    """A ``redis-server``; yields its URL.

    It keeps nothing on disk unless ``persist``: then every write is in its append-only
    file before it answers (``appendfsync always``), and a server started again on the
    same ``workdir`` has it all. ``port`` lets a test start it again where it listened.
    """
    binary = require_binary("redis-server", "redis-server")
    port = port or free_port()
    durability = ["--appendonly", "yes", "--appendfsync", "always"] if persist else [
        "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *durability,
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_until_ready(process, lambda: _pong(port), f"redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)
