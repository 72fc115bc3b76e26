"""Set-ups that cannot work fail at once with an error that says what to change, instead
of a worker or a client waiting forever: a store no other process can see, a NATS server
that is not there, a client whose hops no worker takes."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faasflow.cli.main import main
from servers import free_port, require_binary, stop_process, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
GREET = str(ROOT / "examples" / "greet.py")
_names = itertools.count()


def faasflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faasflow", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=False, env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("command", ["worker", "submit"])
def test_a_memory_store_is_refused_where_processes_share_requests(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command, GREET, "--nats", "nats://127.0.0.1:1", "--state", "memory://"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --state memory://: a memory store lives inside one process")
    assert main([command, GREET, "--nats", "nats://127.0.0.1:1", "--state", "redis://r/0",
                 "--data-store", "memory://"]) == 2
    assert capsys.readouterr().err.startswith("error: --data-store memory://: a memory store")


def test_the_error_names_the_variable_the_store_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAASFLOW_STATE", "memory://")
    assert main(["worker", GREET, "--nats", "nats://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.startswith("error: FAASFLOW_STATE memory://: a memory")


@pytest.mark.parametrize("command", ["worker", "submit"])
def test_nats_refusing_connections_fails_at_once(command: str, tmp_path: Path) -> None:
    port = free_port()
    began = time.monotonic()
    done = faasflow(command, GREET, "--state", f"sqlite:///{tmp_path / 'f.db'}",
                    env={"FAASFLOW_NATS": f"nats://127.0.0.1:{port}"})
    assert time.monotonic() - began < 8  # not after nats-py's 10 s of retries
    assert done.returncode == 1
    assert done.stderr == (
        f"error: cannot reach NATS at nats://127.0.0.1:{port} (FAASFLOW_NATS): connection "
        f"refused; is `nats-server -js` running at 127.0.0.1:{port}?\n"
    )


def test_a_client_whose_hops_no_worker_takes_says_so(
    nats_url: str, redis_url: str
) -> None:
    flow = f"lonely{next(_names)}"
    state = f"{redis_url}?namespace={flow}:"
    done = faasflow("submit", GREET, "--name", flow, "--data", "x", "--wait", "3",
                    "--request-id", "nobody-1", env={"FAASFLOW_NATS": nats_url,
                                                     "FAASFLOW_STATE": state})
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    hint = (f"no worker has taken request nobody-1 of flow {flow!r} yet: are workers "
            f"running with --name {flow}, --nats {nats_url} and --state {state}?")
    assert lines[0] == f"faasflow submit: {hint}"
    assert lines[-1] == f"error: request nobody-1 did not end within 3s; {hint}"


def test_a_nats_server_without_jetstream_is_named(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(  # no -js: JetStream off
        [require_binary("nats-server", "nats-server"), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def answers() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True

        wait_until_ready(server, answers, "nats-server")
        url = f"nats://127.0.0.1:{port}"
        for command, *extra in (("worker",), ("submit", "--data", "x")):
            done = faasflow(command, GREET, "--nats", url, "--state",
                            f"sqlite:///{tmp_path / 'f.db'}", *extra)
            assert done.returncode == 1, (command, done.stderr)
            assert done.stderr.rstrip().endswith(
                f"is `nats-server -js` (with JetStream) running at {url}?"
            ), (command, done.stderr)
    finally:
        stop_process(server)
