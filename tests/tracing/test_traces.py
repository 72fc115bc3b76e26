"""One request is one trace, across every process it touches (real processes, spans
received over OTLP/HTTP by a test receiver)."""

from __future__ import annotations

import itertools
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faasflow import tracing
from faasflow.errors import ConfigurationError
from gateway.test_cli import GatewayProcess
from servers import stop_process
from workers.support import process_env

from .flows import traced
from .receiver import Receiver, Span, otlp_receiver

ROOT = Path(__file__).resolve().parents[2]
FLOWS = Path(__file__).parent / "flows"
_names = itertools.count()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as found:
        yield found


def traced_env(receiver: Receiver, host: str) -> dict[str, str]:
    return process_env(host) | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within 50 ms, not 5 s
    }


def by_name(spans: list[Span]) -> dict[str, list[Span]]:
    found: dict[str, list[Span]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


NODES = ["node start", "node b0", "node b1", "node join"]


def complete(spans: list[Span]) -> bool:
    names = by_name(spans)
    return all(name in names for name in ["request traced", *NODES]) and len(
        names.get("call shout", [])) == 2


def assert_one_trace(spans: list[Span], parent: str = "") -> Span:
    """Request → node → call: every span in one trace, each at its place; returns the
    request span."""
    names = by_name(spans)
    (request,) = names["request traced"]
    assert {span.trace_id for span in spans} == {request.trace_id}
    assert request.parent_id == parent
    nodes = [span for name in NODES for span in names[name]]
    assert len(nodes) == 4  # each node ran (and was traced) once
    assert all(span.parent_id == request.span_id for span in nodes)
    node_ids = {span.attributes["faasflow.node"]: span.span_id for span in nodes}
    calls = names["call shout"]
    assert sorted(span.parent_id for span in calls) == sorted([node_ids["b0"], node_ids["b1"]])
    assert all(span.attributes["faasflow.request_id"] == request.attributes[
        "faasflow.request_id"] for span in nodes)
    assert not any(span.error for span in spans)
    return request


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "faasflow", "worker", str(FLOWS / "traced.py")],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )
    deadline = time.monotonic() + 30
    while b"ready" not in log.read_bytes():
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    return worker


def test_a_request_on_workers_is_one_trace(
    receiver: Receiver, nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    calls_log = tmp_path / "traceparents"
    shared = {
        "FAASFLOW_NATS": nats_url,
        "FAASFLOW_STATE": f"{redis_url}?namespace=trace{next(_names)}:",
        "TRACEPARENT_LOG": str(calls_log),
    }
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    workers = [
        start_worker(traced_env(receiver, f"host{i}") | shared, log) for i, log in enumerate(logs)
    ]
    try:
        submit = subprocess.run(
            [sys.executable, "-m", "faasflow", "submit", str(FLOWS / "traced.py"),
             "--data", " hi ", "--wait", "30"],
            cwd=ROOT, env=traced_env(receiver, "client") | shared, capture_output=True,
            timeout=60, check=False,
        )
        assert (submit.returncode, submit.stdout) == (0, traced.expected(b" hi ")), submit.stderr
        spans = receiver.wait_for(complete)
    finally:
        for worker in workers:
            stop_process(worker)
    request = assert_one_trace(spans)
    worker_pids = {worker.pid for worker in workers}
    # the request span in the submitting process, every node in a worker
    assert request.resource["process.pid"] not in worker_pids
    assert request.resource["service.name"] == "faasflow-submit"
    node_pids = {span.resource["process.pid"] for span in spans if span.name in NODES}
    assert node_pids <= worker_pids
    # each called function got its call span's traceparent: the trace goes on in it
    received = sorted(line.split("-")[1:3] for line in calls_log.read_text().split())
    calls = by_name(spans)["call shout"]
    assert received == sorted([c.trace_id, c.span_id] for c in calls)
    # the node's log line names its request and trace
    rid = request.attributes["faasflow.request_id"]
    line = f"WARNING traced [request {rid} trace {request.trace_id}]: b0 ran"
    assert any(line in log.read_text() for log in logs), [log.read_text() for log in logs]


def test_http_hops_through_a_gateway_continue_the_callers_trace(receiver: Receiver) -> None:
    env = traced_env(receiver, "gateway")  # its flow servers inherit the variables
    gateway = GatewayProcess(
        "--functions", str(FLOWS / "functions"), "--flow", f"traced={FLOWS / 'traced.py'}",
        env=env,
    )
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    try:
        with httpx.Client(timeout=60) as client:
            answer = client.post(
                f"{gateway.url}/function/traced", content=b" hi ",
                headers={"X-Faas-Flow-Wait": "30",
                         "traceparent": f"00-{caller_trace}-{caller_span}-01"},
            )
        assert (answer.status_code, answer.content) == (200, traced.expected(b" hi "))
        spans = receiver.wait_for(complete)
    finally:
        gateway.stop()
    request = assert_one_trace(spans, parent=caller_span)
    assert request.trace_id == caller_trace


def test_tracing_configuration_from_the_environment() -> None:
    assert not tracing.configure_from_env("x", env={})
    assert not tracing.configure_from_env("x", env={"enable_tracing": "false"})
    with pytest.raises(ConfigurationError, match="enable_tracing: expected true or false"):
        tracing.configure_from_env("x", env={"enable_tracing": "maybe"})
    assert not tracing.enabled()  # nothing was installed by the calls above


def test_without_a_tracer_provider_hops_carry_no_traceparent() -> None:
    with tracing.request_span("flow", "r1") as traceparent:
        assert traceparent is None
    assert tracing.current_traceparent() is None
