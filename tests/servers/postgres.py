"""A private PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a free port.

The cluster lives in its own directory, listens on 127.0.0.1 only, keeps its unix socket
inside that directory (never the system's ``/var/run/postgresql``) and trusts local
connections. ``fsync`` is off: a test cluster needs speed, not safety against power loss
(a commit still reaches the OS before it returns, so it survives ``pg_ctl stop -m
immediate``, which the tests use to take the server away).

``initdb`` and ``postgres`` refuse to run as root. As root (CI machines, containers) they
run as the ``postgres`` system user, in a directory made under the system temp dir and
handed to that user: pytest's own temp dirs are private to root, and ``postgres`` could
not even reach them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import free_port, require_binary

__all__ = ["PostgresCluster", "postgres_cluster", "postgres_server"]

USER = "faasflow"
DATABASE = "faasflow"
# Debian's layout, for when only some of the server's programs are on PATH.
_DEBIAN_BINDIR = Path("/usr/lib/postgresql/15/bin")


def _bindir() -> Path:
    """The directory of the cluster programs (``initdb``, ``pg_ctl``, ``createdb``)."""
    found = shutil.which("pg_ctl")
    if found is not None:
        return Path(os.path.realpath(found)).parent
    if (_DEBIAN_BINDIR / "pg_ctl").exists():
        return _DEBIAN_BINDIR
    return Path(require_binary("pg_ctl", "postgresql")).parent  # raises with the package


class PostgresCluster:
    """One initialised cluster that can be started, stopped and started again.

    Args:
        root: a directory for the cluster's data, socket and log; created if missing.
        port: the TCP port; a free one by default.
    """

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "postgres.log"
        self.bindir = _bindir()
        # As root, run the cluster's programs as the ``postgres`` system user.
        self._as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        """The URL of the test database."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [*self._as_user, str(self.bindir / program), *args]
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} exited with {done.returncode}:\n"
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
                f"{log}"
            )

    def init(self) -> None:
        """``initdb`` the data directory and create the test database (leaves it running)."""
        self.sockets.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run(
            "initdb", "--pgdata", str(self.data), "--username", USER, "--auth", "trust",
            "--encoding", "UTF8", "--locale", "C", "--no-sync",
        )
        self.start()
        self._run(
            "createdb", "--host", "127.0.0.1", "--port", str(self.port), "--username", USER,
            DATABASE,
        )

    def start(self) -> None:
        """Start the server and wait (``pg_ctl -w``) until it accepts connections."""
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.sockets}",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            "pg_ctl", "start", "--wait", "--timeout", "60", "--pgdata", str(self.data),
            "--log", str(self.log), "--options", options,
        )

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``): connections drop like in a crash."""
        self._run("pg_ctl", "stop", "--wait", "--mode", "immediate", "--pgdata", str(self.data))

    def running(self) -> bool:
        """Whether the server's postmaster is up (``pg_ctl status``)."""
        command = [*self._as_user, str(self.bindir / "pg_ctl"), "status", "--pgdata",
                   str(self.data)]
        return subprocess.run(command, capture_output=True, check=False).returncode == 0


@contextmanager
def postgres_cluster(workdir: Path, port: int | None = None) -> Iterator[PostgresCluster]:
    """A fresh, running cluster with the test database; stopped and removed at the end."""
    if os.geteuid() == 0:
        root = Path(tempfile.mkdtemp(prefix="faasflow-pg-"))
        owned = True
    else:
        root = workdir / "cluster"
        owned = False
    cluster = PostgresCluster(root, port)
    try:
        cluster.init()
        yield cluster
    finally:
        try:
            if cluster.running():
                cluster.stop()
        finally:
            if owned:
                shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """A private PostgreSQL server; yields ``postgresql://USER@127.0.0.1:PORT/DB``."""
    with postgres_cluster(workdir) as cluster:
        yield cluster.url
