"""A local OpenFaaS-compatible gateway, for development and tests (``faasflow gateway``).

It answers the routes of the OpenFaaS gateway the way the real one does on the wire
(``/function/NAME``, ``/async-function/NAME``, ``/system/*``, ``/healthz``), for
functions that are registered HTTP servers, flows it runs itself, or handler folders.
What differs from the real gateway is listed in ``docs/gateway.md``.

::

    from faasflow.gateway import BackgroundServer, create_gateway

    gateway = create_gateway(functions_dir="functions", upstreams={"echo": url})
    with BackgroundServer(gateway) as server:
        ...  # server.url is the gateway

The names below load on first use, so that ``import faasflow.gateway`` (the CLI does)
needs neither Starlette nor uvicorn (the ``server`` extra) until a gateway is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasflow.lazy import lazy_exports

if TYPE_CHECKING:
    from faasflow.gateway.app import Gateway, create_gateway
    from faasflow.gateway.config import GatewayConfig
    from faasflow.gateway.flows import FlowCommand, ServedFlow, flow_server_command
    from faasflow.gateway.queue import QUEUE_WORKER_USER_AGENT
    from faasflow.gateway.registry import NAMESPACE, FunctionEntry, Kind
    from faasflow.gateway.server import BackgroundServer, serve

__all__ = [
    "BackgroundServer",
    "FlowCommand",
    "FunctionEntry",
    "Gateway",
    "GatewayConfig",
    "Kind",
    "NAMESPACE",
    "QUEUE_WORKER_USER_AGENT",
    "ServedFlow",
    "create_gateway",
    "flow_server_command",
    "serve",
]

_HOME = {
    "NAMESPACE": "registry",
    "QUEUE_WORKER_USER_AGENT": "queue",
    "BackgroundServer": "server",
    "FlowCommand": "flows",
    "ServedFlow": "flows",
    "FunctionEntry": "registry",
    "Gateway": "app",
    "GatewayConfig": "config",
    "Kind": "registry",
    "create_gateway": "app",
    "flow_server_command": "flows",
    "serve": "server",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOME, globals(), __all__)
