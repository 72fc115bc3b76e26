"""Fixtures for the faas-cli template tests: paths, the names faasflow.config reads, and
the template's entrypoint run as a process, the way of-watchdog runs it in the container."""

from __future__ import annotations

import fnmatch
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from faasflow import config, tracing
from faasflow.scaffold.files import CACHES

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template" / "faas-flow-python"
DOCS = ROOT / "docs" / "openfaas.md"
SECRET = "template-test-hmac-key"


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._values[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def config_env_names(tmp_path: Path) -> set[str]:
    """Every environment variable :func:`faasflow.config.server_config` reads.

    Asked of config.py itself (not a copy of its table), with the secrets absent so that
    their environment fallbacks are read too.
    """
    env = RecordingEnv({"flow_name": "probe", "secret_mount_path": str(tmp_path / "none")})
    config.server_config(env)
    # The template's entrypoint also reads the tracing variables (trace_server only
    # when enable_tracing is on).
    tracing.export_endpoint(env)
    enabled = RecordingEnv({"enable_tracing": "true"})
    tracing.export_endpoint(enabled)
    return env.asked | enabled.asked


@pytest.fixture
def env_names(tmp_path: Path) -> set[str]:
    """The environment variables faasflow.config reads."""
    return config_env_names(tmp_path)


SECRET_NAMES = {config.HMAC_SECRET, config.CONTROL_TOKEN}
"""The OpenFaaS secrets faasflow.config reads (files under secret_mount_path)."""


def template_files() -> list[str]:
    """The template's files (relative paths), without the caches tools leave in a checkout."""
    return sorted(
        p.relative_to(TEMPLATE).as_posix() for p in TEMPLATE.rglob("*")
        if p.is_file() and not any(fnmatch.fnmatch(part, pattern) for part in p.parts
                                   for pattern in CACHES)
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """This process's environment without anything the flow server would read."""
    names = config_env_names(Path("/nonexistent")) | {"FAASFLOW_STORE", "upstream_port",
                                                      "upstream_url", "port"}
    return {k: v for k, v in os.environ.items() if k not in names}


@dataclass
class Process:
    """A process started by a test, its output going to files (no pipe to fill up)."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    url: str

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def start(args: list[str], *, cwd: Path, env: Mapping[str, str], url: str,
          logs: Path) -> Process:
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "stdout", logs / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(args, cwd=cwd, env=dict(env), stdout=stdout, stderr=stderr)
    return Process(popen, out, err, url)


def wait_ready(process: Process, path: str = "/healthz", timeout: float = 20.0) -> None:
    """Poll ``path`` until it answers (any status below 500), the process dies, or time
    runs out."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while True:
            if process.popen.poll() is not None:
                raise AssertionError(
                    f"{process.popen.args} exited with {process.popen.returncode}:\n"
                    + process.stderr
                )
            try:
                if client.get(process.url + path).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{process.url}{path} not ready:\n" + process.stderr)
            time.sleep(0.05)


@dataclass
class FlowApp:
    """The template laid out as faas-cli build --shrinkwrap would: template files plus
    the handler in function/."""

    folder: Path
    secrets: Path
    state_db: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **clean_env(),
            "flow_name": "greet",
            "gateway": "http://127.0.0.1:9",  # no hop may leave a sync flow
            "secret_mount_path": str(self.secrets),
            "faasflow_state": f"sqlite:///{self.state_db}",
            **extra,
        }


@pytest.fixture
def flow_app(tmp_path: Path) -> FlowApp:
    """A shrinkwrapped copy of the template with the template's own handler."""
    folder = tmp_path / "build" / "greet"
    shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns(*CACHES))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / config.HMAC_SECRET).write_text(SECRET + "\n")
    return FlowApp(folder, secrets, tmp_path / "state.db")


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Processes the test starts; every one is stopped at the end, whatever happens."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            process.stop()


def run_index(app: FlowApp, processes: list[Process], env: Mapping[str, str],
              port: int) -> Process:
    """Start ``python index.py`` in ``app`` (as fprocess) and wait for /healthz."""
    process = start([sys.executable, "index.py"], cwd=app.folder, env=env,
                    url=f"http://127.0.0.1:{port}", logs=app.folder.parent / f"logs-{port}")
    processes.append(process)
    wait_ready(process)
    return process
