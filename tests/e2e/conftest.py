"""Fixtures of the end-to-end tests: real processes on loopback, always stopped.

One ``faasflow gateway`` serves the whole session (``examples/functions`` as handler
folders, every example flow registered with ``--register``); each example flow runs in
its own ``faasflow serve`` process (session-wide too). Tests that need a flow of their
own start it with :func:`flows`, which registers it with ``POST /system/register`` and
stops it afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from .harness import (
    EXAMPLES,
    EXAMPLES_DIR,
    GATE_FLOW,
    Capture,
    FlowServer,
    Gate,
    GatewayProcess,
    Receiver,
    free_port,
    stop_all,
)

GATEWAY_OPTIONS = (
    "--async-concurrency", "64",  # the 200-request test keeps many hops in flight
    "--async-queue-size", "20000",
    "--drain-timeout", "5",
    # A request held by X-Faas-Flow-Wait may take up to the flow's max_wait (300 s) on a
    # busy machine (test_concurrency.py); the gateway must not cut it short.
    "--upstream-timeout", "300",
)  # fmt: skip

_names = itertools.count(1)


@pytest.fixture(scope="session")
def e2e_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def example_ports() -> dict[str, int]:
    """The port of each example's flow server, chosen before the gateway starts."""
    return {name: free_port() for name in EXAMPLES}


@pytest.fixture(scope="session")
def gateway(e2e_home: Path, example_ports: Mapping[str, int]) -> Iterator[GatewayProcess]:
    """``faasflow gateway --functions examples/functions --register EXAMPLE=URL ...``."""
    gateway = GatewayProcess(
        e2e_home,
        register={name: f"http://127.0.0.1:{port}" for name, port in example_ports.items()},
        options=GATEWAY_OPTIONS,
    )
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.process.terminate()


@pytest.fixture(scope="session")
def example_servers(
    gateway: GatewayProcess, e2e_home: Path, example_ports: Mapping[str, int]
) -> Iterator[dict[str, FlowServer]]:
    """A ``faasflow serve`` per example, on the port the gateway was told."""
    servers = {
        name: FlowServer(
            name=name,
            target=EXAMPLES_DIR / f"{name}.py",
            home=e2e_home / "examples",
            gateway_url=gateway.url,
            port=port,
        )
        for name, port in example_ports.items()
    }
    processes = [server.spawn() for server in servers.values()]
    try:
        for server in servers.values():
            assert server.process is not None
            server.process.wait_healthy(server.url + "/healthz")
        yield servers
    finally:
        stop_all(processes)


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """The callback receiver; at the end, no request may have had two callbacks."""
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
    twice = {rid: len(calls) for rid, calls in receiver.deliveries.items() if len(calls) != 1}
    assert not twice, f"callbacks delivered more than once: {twice}"


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    gate.start()
    try:
        yield gate
    finally:
        gate.stop()


@pytest.fixture
def capture(gateway: GatewayProcess) -> Iterator[Capture]:
    capture = Capture(gateway.url)
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()


class FlowFactory:
    """Starts flow servers for one test and registers them with the gateway."""

    def __init__(self, gateway: GatewayProcess, gate: Gate, home: Path) -> None:
        self.gateway = gateway
        self.gate = gate
        self.home = home
        self.servers: list[FlowServer] = []

    def gate_flow(self) -> Path:
        """The gate flow (``a`` -> ``b`` held at the gate -> ``c``) as a file."""
        path = self.home / "gate_flow.py"
        path.write_text(GATE_FLOW.format(gate=self.gate.url), encoding="utf-8")
        return path

    def __call__(
        self,
        prefix: str = "gated",
        *,
        target: Path | None = None,
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        hop_gateway: str | None = None,
    ) -> FlowServer:
        server = FlowServer(
            name=f"{prefix}-{next(_names)}",
            target=target or self.gate_flow(),
            home=self.home,
            gateway_url=self.gateway.url,
            hop_gateway=hop_gateway,
            options=options,
            env=dict(env or {}),
        )
        self.servers.append(server)
        server.start()
        assert server.register() == 201
        return server

    def close(self) -> None:
        self.gate.open_all()  # a held node would keep its server from stopping
        stop_all(server.process for server in self.servers if server.process is not None)
        for server in self.servers:
            server.unregister()


@pytest.fixture
def flows(gateway: GatewayProcess, gate: Gate, tmp_path: Path) -> Iterator[FlowFactory]:
    factory = FlowFactory(gateway, gate, tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Idle connections are dropped before the servers (uvicorn: 5 s) would close them,
    # so that no request is sent on a connection the server is closing.
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400,
                          keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(90.0), limits=limits) as http:
        yield http
