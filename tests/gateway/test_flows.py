"""``--flow``: flow servers the gateway starts, lists and stops."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from faasflow.errors import ConfigurationError
from faasflow.gateway import (
    BackgroundServer,
    FlowCommand,
    ServedFlow,
    create_gateway,
    flow_server_command,
)
from faasflow.gateway.flows import FlowCommandBuilder

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# A stand-in for `faasflow serve`: answers /healthz, and anything else with what it was
# started with.
FAKE_FLOW_SERVER = """
import http.server, json, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        if self.path == "/healthz":
            body = b"ok"
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.dumps({
                "argv": sys.argv[2:],
                "gateway": os.environ.get("gateway"),
                "has_secret": bool(os.environ.get("faasflow_hmac_secret")),
                "pid": os.getpid(),
                "path": self.path,
            }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

FLOW_FILE = '''"""Greets people, politely.

More words that are not the description.
"""

def define(flow, context):
    flow.sync_node().modify(lambda data: b"Hello " + data)
'''


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "greeter.py"
    path.write_text(FLOW_FILE)
    return path


def fake_command(script: Path) -> FlowCommandBuilder:
    def command(spec: ServedFlow, port: int, gateway_url: str, secret: str) -> FlowCommand:
        real = flow_server_command(spec, port, gateway_url, secret)
        return FlowCommand(
            argv=(sys.executable, str(script), str(port), *real.argv[3:]),
            url=real.url,
            health_url=real.health_url,
            env=real.env,
        )

    return command


def test_serve_command_line(flow_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("faasflow_hmac_secret", raising=False)
    spec = ServedFlow.parse("greeter", str(flow_file))
    command = flow_server_command(spec, 9123, "http://127.0.0.1:8080", "s3")
    assert command.argv == (
        sys.executable, "-m", "faasflow", "serve", f"{flow_file}:define",
        "--name", "greeter", "--host", "127.0.0.1", "--port", "9123",
        "--gateway", "http://127.0.0.1:8080",
    )  # fmt: skip
    assert command.env == {"gateway": "http://127.0.0.1:8080", "faasflow_hmac_secret": "s3"}
    assert command.url == "http://127.0.0.1:9123"
    assert command.health_url == "http://127.0.0.1:9123/healthz"
    assert spec.description() == "Greets people, politely."
    assert ServedFlow.parse("g", f"{flow_file}:other").target == f"{flow_file}:other"
    with pytest.raises(ConfigurationError, match="no file"):
        ServedFlow.parse("g", str(flow_file.with_name("missing.py")))
    with pytest.raises(ConfigurationError, match="not a function name"):
        ServedFlow.parse("a.b", str(flow_file))


def test_flows_are_started_listed_called_and_stopped(
    tmp_path: Path, flow_file: Path, client: httpx.Client
) -> None:
    script = tmp_path / "fake_flow_server.py"
    script.write_text(FAKE_FLOW_SERVER)
    gateway = create_gateway(
        flows=[ServedFlow.parse("greeter", str(flow_file))],
        flow_command=fake_command(script),
        labels={"greeter": {"extra": "yes"}},
    )
    with BackgroundServer(gateway) as server:
        answer = client.post(f"{server.url}/function/greeter.openfaas-fn/flow/x", content=b"")
        assert answer.status_code == 200
        started = answer.json()
        assert started["gateway"] == server.url
        assert started["has_secret"] is True
        assert started["path"] == "/flow/x"
        assert started["argv"] == [
            "serve", f"{flow_file}:define", "--name", "greeter", "--host", "127.0.0.1",
            "--port", started["argv"][7], "--gateway", server.url,
        ]  # fmt: skip
        (listed,) = client.get(f"{server.url}/system/functions").json()
        assert listed["name"] == "greeter"
        assert listed["labels"] == {"faas-flow": "1", "extra": "yes"}
        assert listed["annotations"] == {"faas-flow-desc": "Greets people, politely."}
        assert listed["invocationCount"] == 1
    with pytest.raises(ProcessLookupError):  # stopped and reaped with the gateway
        os.kill(started["pid"], 0)


def test_a_flow_that_does_not_start_fails_the_gateway(tmp_path: Path, flow_file: Path) -> None:
    script = tmp_path / "exits.py"
    script.write_text("import sys\nsys.exit(3)\n")
    gateway = create_gateway(
        flows=[ServedFlow.parse("greeter", str(flow_file))],
        flow_command=fake_command(script),
    )
    with pytest.raises(ConfigurationError, match="exited with status 3"):
        BackgroundServer(gateway).start()
    assert not gateway.ready


def test_real_flow_server_with_hops_through_the_async_route(client: httpx.Client) -> None:
    # `faasflow serve` itself: every node after the first is a hop posted back to the
    # gateway's /async-function/chain/flow/ID/forward and run by the queue worker.
    gateway = create_gateway(flows=[ServedFlow.parse("chain", str(EXAMPLES / "async_chain.py"))])
    with BackgroundServer(gateway) as server:
        answer = client.post(
            f"{server.url}/function/chain",
            content=b"hello world",
            headers={"X-Faas-Flow-Wait": "30"},
        )
        assert (answer.status_code, answer.content) == (200, b"[DLROW_OLLEH]")
        assert answer.headers["X-Faas-Flow-Reqid"]
        assert gateway.registry.invocations("chain") >= 3  # the request and its hops
