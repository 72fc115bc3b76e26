"""A private single-member ``etcd`` (3.4, Debian's etcd-server) on free ports."""

from __future__ import annotations

import http.client
import os
import platform
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from servers import free_port, require_binary, stop_process, wait_until_ready

# etcd 3.4 refuses to start on architectures it does not qualify unless this variable
# names Go's name for the architecture; amd64 and ppc64le need nothing.
_GOARCH = {"aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "i686": "386",
           "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64"}


def _ready(port: int, context: ssl.SSLContext | None) -> bool:
    """Whether the v3 JSON gateway answers a read (which needs an elected leader)."""
    conn = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=1, context=context)
        if context
        else http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    )
    try:
        conn.request("POST", "/v3/kv/range", body=b'{"key":"AA=="}')
        return conn.getresponse().status == 200
    finally:
        conn.close()


@contextmanager
def etcd_server(
    workdir: Path, *, tls: tuple[Path, Path] | None = None, extra: Sequence[str] = ()
) -> Iterator[str]:
    """An ``etcd`` keeping its data under ``workdir``; yields ``etcd://127.0.0.1:PORT``.

    ``tls`` is a self-signed (certificate, key) pair for 127.0.0.1: the client port then
    speaks TLS and the URL is ``etcds://``. ``extra`` adds command-line flags.
    """
    binary = require_binary("etcd", "etcd-server")
    client_port = free_port()
    peer_port = free_port()
    while peer_port == client_port:
        peer_port = free_port()
    scheme = "https" if tls else "http"
    client_url = f"{scheme}://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    args = [
        binary,
        "--name", "test",
        "--data-dir", str(workdir / "data"),
        "--listen-client-urls", client_url,
        "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"test={peer_url}",
        "--initial-cluster-state", "new",
        # Bounded history and database for a long session: every write is a revision.
        "--auto-compaction-mode", "revision",
        "--auto-compaction-retention", "10000",
        "--quota-backend-bytes", str(1 << 30),
        "--logger", "zap",
        "--log-level", "warn",
        *extra,
    ]
    context = None
    if tls:
        args += ["--cert-file", str(tls[0]), "--key-file", str(tls[1])]
        context = ssl.create_default_context(cafile=str(tls[0]))
    # Only our flags: ETCD_* variables of the caller's environment would shadow them.
    env = {name: value for name, value in os.environ.items() if not name.startswith("ETCD")}
    goarch = _GOARCH.get(platform.machine().lower())
    if goarch:
        env["ETCD_UNSUPPORTED_ARCH"] = goarch
    log_path = workdir / "etcd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        try:
            wait_until_ready(
                process, lambda: _ready(client_port, context), f"etcd on port {client_port}"
            )
        except RuntimeError as exc:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{exc}; its log ends with:\n{tail}") from None
        yield f"{'etcds' if tls else 'etcd'}://127.0.0.1:{client_port}"
    finally:
        stop_process(process)
