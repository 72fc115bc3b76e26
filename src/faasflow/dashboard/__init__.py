"""The dashboard: flows, their DAGs and their requests, live, in a browser (``faasflow
dashboard``).

::

    from faasflow.dashboard import GatewaySource, create_app

    app = create_app(GatewaySource("http://127.0.0.1:8080"))   # any ASGI server runs it

The names below load on first use, so that ``import faasflow.dashboard`` needs neither
Starlette nor uvicorn (the ``server`` extra) until an app is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faasflow.lazy import lazy_exports

if TYPE_CHECKING:
    from faasflow.dashboard.app import create_app
    from faasflow.dashboard.auth import Credentials
    from faasflow.dashboard.remote import GatewaySource
    from faasflow.dashboard.sessions import Sessions
    from faasflow.dashboard.sources import FlowSummary, LocalFlow, LocalSource, Source, SourceError
    from faasflow.dashboard.throttle import LoginThrottle

__all__ = [
    "Credentials",
    "FlowSummary",
    "GatewaySource",
    "LocalFlow",
    "LocalSource",
    "LoginThrottle",
    "Sessions",
    "Source",
    "SourceError",
    "create_app",
]

_HOME = {
    "Credentials": "auth",
    "FlowSummary": "sources",
    "GatewaySource": "remote",
    "LocalFlow": "sources",
    "LocalSource": "sources",
    "LoginThrottle": "throttle",
    "Sessions": "sessions",
    "Source": "sources",
    "SourceError": "sources",
    "create_app": "app",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOME, globals(), __all__)
