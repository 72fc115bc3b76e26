"""A private ``nats-server -js`` on a free port, its JetStream store in a folder."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import free_port, require_binary, stop_process, wait_until_ready


def _answers(port: int) -> bool:
    # The server greets every client with an INFO line.
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        return sock.recv(5) == b"INFO "


@contextmanager
def nats_server(workdir: Path, port: int | None = None) -> Iterator[str]:
    """A JetStream-enabled ``nats-server`` storing under ``workdir``; yields its URL.

    Start it again with the same ``workdir`` and ``port`` to restart it with its streams.
    """
    binary = require_binary("nats-server", "nats-server")
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(process, lambda: _answers(port), f"nats-server on port {port}")
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop_process(process)
