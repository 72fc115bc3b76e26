"""``faasflow gateway`` as a real process."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faasflow.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PREFIX = "faasflow gateway listening on "


class GatewayProcess:
    """``python -m faasflow gateway ...`` with its URL read from its first stdout line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "faasflow", "gateway", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        lines: queue.Queue[bytes] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        # A reader thread, so that waiting for the line has a deadline.
        self._reader = threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True)
        self._reader.start()
        try:
            line = lines.get(timeout=60).decode()
        except queue.Empty:
            self.stop(signal.SIGKILL)
            raise AssertionError("the gateway did not say where it listens") from None
        assert line.startswith(PREFIX), line
        self.url = line[len(PREFIX) :].strip()

    def stop(self, how: signal.Signals = signal.SIGTERM) -> tuple[int, bytes]:
        self.process.send_signal(how)
        _, err = self.process.communicate(timeout=60)
        self._reader.join(5)
        return self.process.returncode, err


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    root = tmp_path / "functions"
    (root / "hello").mkdir(parents=True)
    (root / "hello" / "handler.py").write_text(
        "def handle(event, context):\n    return 'Hello ' + event.body.decode()\n"
    )
    return root


@pytest.fixture
def gateway(functions: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        "--functions", str(functions),
        "--flow", f"chain={EXAMPLES / 'async_chain.py'}",
        "--basic-auth", "admin:s3cret",
        "--label", "hello:team=blue",
        "--annotation", "hello:faas-flow-desc=Says hello",
        "--async-concurrency", "4",
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.stop(signal.SIGKILL)


def test_gateway_process(gateway: GatewayProcess) -> None:
    url = gateway.url
    with httpx.Client(timeout=60) as client:
        assert client.get(f"{url}/healthz").status_code == 200
        answer = client.post(f"{url}/function/hello.openfaas-fn", content=b"Adam")
        assert (answer.status_code, answer.content) == (200, b"Hello Adam")
        assert answer.headers["X-Call-Id"]
        chain = client.post(
            f"{url}/function/chain", content=b"hello world", headers={"X-Faas-Flow-Wait": "30"}
        )
        assert (chain.status_code, chain.content) == (200, b"[DLROW_OLLEH]")
        missing = client.post(f"{url}/function/nope", content=b"")
        assert (missing.status_code, missing.content) == (
            503,
            b"No endpoints available for: nope.\n",
        )
        assert client.get(f"{url}/system/functions").status_code == 401
        listed = {
            f["name"]: f
            for f in client.get(f"{url}/system/functions", auth=("admin", "s3cret")).json()
        }
    assert set(listed) == {"chain", "hello"}
    assert listed["hello"]["labels"] == {"team": "blue"}
    assert listed["hello"]["annotations"] == {"faas-flow-desc": "Says hello"}
    assert listed["hello"]["invocationCount"] == 1
    assert listed["chain"]["labels"] == {"faas-flow": "1"}
    assert listed["chain"]["annotations"]["faas-flow-desc"].startswith("Async chain:")
    status, err = gateway.stop()
    assert status == 0, err.decode()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--register", "x"], "error: --register 'x': expected NAME=URL"),
        (["--register", "a.b=http://h"], "is not a function name"),
        (["--register", "x=ftp://h"], "is not an http:// or https:// URL"),
        (["--flow", "x=/no/such/file.py"], "error: --flow x=/no/such/file.py: no file"),
        (["--label", "x=y"], "expected NAME:KEY=VALUE"),
        (["--basic-auth", "nocolon"], "--basic-auth: expected USER:PASS"),
        (["--async-concurrency", "0"], "--async-concurrency: must be at least 1"),
        (["--max-body-size", "0"], "--max-body-size: must be at least 1"),
        (["--functions", "/no/such/dir"], "is not a directory"),
    ],
)
def test_bad_options(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", *args]) == 2
    assert message in capsys.readouterr().err
