"""The template's entrypoint run as the container runs it: ``python index.py`` in a
shrinkwrapped build folder (template files + the handler in ``function/``), configured
by environment variables and a secrets folder, answering on loopback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from faasflow import config

from .conftest import FlowApp, Process, free_port, run_index, start, wait_ready

MULTI_NODE = '''
from faasflow import Context, Workflow


def define(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("n1").modify(lambda data: b"Hello " + data)
    dag.node("n2").modify(lambda data: data + b"!")
    dag.edge("n1", "n2")
'''

GATEWAY = [sys.executable, "-m", "faasflow", "gateway"]


def write_handler(app: FlowApp, source: str) -> None:
    (app.folder / "function" / "handler.py").write_text(textwrap.dedent(source))


def run_to_exit(app: FlowApp, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "index.py"], cwd=app.folder, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_greet_sync(flow_app: FlowApp, processes: list[Process]) -> None:
    port = free_port()
    # The port comes from upstream_url, as of-watchdog is configured.
    flow = run_index(flow_app, processes,
                     flow_app.env(upstream_url=f"http://127.0.0.1:{port}"), port)
    with httpx.Client(base_url=flow.url, timeout=10) as client:
        answer = client.post("/", content=b"Adam")
        assert answer.status_code == 200, answer.text
        assert answer.content == b"Hello Adam"
        rid = answer.headers["X-Faas-Flow-Reqid"]
        assert client.get(f"/flow/{rid}/result").content == b"Hello Adam"
        chosen = client.post("/", content=b"Eve", headers={"X-Faas-Flow-Reqid": "my-id-1"})
        assert (chosen.status_code, chosen.content) == (200, b"Hello Eve")
        assert chosen.headers["X-Faas-Flow-Reqid"] == "my-id-1"
        exported = client.get("/", params={"export-dag": "true"})
        assert exported.status_code == 200
        assert (exported.json()["flow"], exported.json()["sync"]) == ("greet", True)
    assert flow_app.state_db.exists()  # faasflow_state was honoured


def test_store_overrides(flow_app: FlowApp, processes: list[Process], tmp_path: Path) -> None:
    custom = tmp_path / "custom-state.db"
    write_handler(flow_app, f'''
        from faasflow import Context, Workflow


        def define(flow: Workflow, context: Context) -> None:
            flow.sync_node().modify(lambda data: data.upper())


        def state_store():
            return "sqlite:///{custom}"


        def data_store():
            return None  # the state store's URL, as configured
    ''')
    port = free_port()
    flow = run_index(flow_app, processes, flow_app.env(upstream_port=str(port)), port)
    answer = httpx.post(flow.url, content=b"adam", timeout=10)
    assert (answer.status_code, answer.content) == (200, b"ADAM")
    assert custom.exists()
    assert not flow_app.state_db.exists()  # the override won over faasflow_state


def test_refuses_to_start_without_the_secret(flow_app: FlowApp) -> None:
    (flow_app.secrets / config.HMAC_SECRET).unlink()
    done = run_to_exit(flow_app, flow_app.env(upstream_port=str(free_port())))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {config.HMAC_SECRET}:")
    assert "Traceback" not in done.stderr
    assert not flow_app.state_db.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flow_name": ""}, "error: flow_name:"),
        ({"max_wait": "soon"}, "error: max_wait:"),
        ({"upstream_port": "http"}, "error: upstream_port:"),
        ({"faasflow_control_token": "t\u00f6ken"}, "error: secret faasflow-control-token:"),
    ],
)
def test_bad_configuration(flow_app: FlowApp, change: dict[str, str], message: str) -> None:
    env = {**flow_app.env(upstream_port=str(free_port())), **change}
    done = run_to_exit(flow_app, env)
    assert done.returncode == 2
    assert done.stderr.startswith(message), done.stderr
    assert "Traceback" not in done.stderr


def test_bad_definition(flow_app: FlowApp) -> None:
    write_handler(flow_app, '''
        def define(flow, context):
            dag = flow.dag()
            dag.node("a")
            dag.node("b")
    ''')
    done = run_to_exit(flow_app, flow_app.env(upstream_port=str(free_port())))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "start node" in done.stderr
    assert "Traceback" not in done.stderr


def test_handler_without_define(flow_app: FlowApp) -> None:
    write_handler(flow_app, "VALUE = 1\n")
    done = run_to_exit(flow_app, flow_app.env(upstream_port=str(free_port())))
    assert done.returncode == 2
    assert done.stderr == "error: function/handler.py must define define(flow, context)\n"


def test_multi_node_through_the_gateway(flow_app: FlowApp, processes: list[Process]) -> None:
    write_handler(flow_app, MULTI_NODE)
    flow_port, gateway_port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    gateway = start(
        [*GATEWAY, "--port", str(gateway_port),
         "--register", f"greet=http://127.0.0.1:{flow_port}"],
        cwd=flow_app.folder.parent, env=flow_app.env(), url=gateway_url,
        logs=flow_app.folder.parent / "logs-gateway",
    )
    processes.append(gateway)
    wait_ready(gateway)
    run_index(flow_app, processes,
              flow_app.env(gateway=gateway_url, upstream_port=str(flow_port)), flow_port)

    function = "/function/greet"
    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        # A multi-node flow answers 202 with the request id; each hop goes through the
        # gateway's async route, signed.
        answer = client.post(function, content=b"Adam")
        assert answer.status_code == 202, answer.text
        rid = answer.headers["X-Faas-Flow-Reqid"]
        deadline = time.monotonic() + 30
        while True:
            result = client.get(f"{function}/flow/{rid}/result")
            if result.status_code == 200:
                break
            assert result.status_code == 404, result.text  # still running
            assert time.monotonic() < deadline, f"no result for {rid}"
            time.sleep(0.05)
        assert result.content == b"Hello Adam!"
        assert client.get(f"{function}/flow/{rid}/state").json()["status"] == "succeeded"
        # X-Faas-Flow-Wait: the answer is the result when the request ends in time.
        waited = client.post(function, content=b"Eve", headers={"X-Faas-Flow-Wait": "20"})
        assert (waited.status_code, waited.content) == (200, b"Hello Eve!")
