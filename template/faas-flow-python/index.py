"""The flow function's entrypoint: of-watchdog starts ``python index.py`` (http mode).

It imports the user's ``function/handler.py``, reads the configuration the way every
faasflow flow server does (:func:`faasflow.config.server_config`: environment variables
and the secrets under ``secret_mount_path``), builds the faas-flow HTTP app and serves it
on ``127.0.0.1:5000``, where of-watchdog's ``upstream_url`` points.

``handler.py`` provides ``define(flow, context)`` and, optionally, ``state_store()`` and
``data_store()``: each returns a store object or a store URL, and ``None`` keeps the
default from the configuration (``faasflow_state`` / ``faasflow_data``).

The listening port comes from ``upstream_port``, else from ``upstream_url`` (the watchdog's
own setting, so the two cannot disagree), else 5000. ``port`` is deliberately not read:
of-watchdog listens on ``port`` itself, and this process inherits its environment.

Configuration problems (no ``faasflow-hmac-secret``, no ``flow_name``, a malformed value,
an invalid flow definition) print one ``error:`` line on stderr and exit with status 2,
before anything listens, so the watchdog's log says why the function is not ready.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORT = 5000
EXIT_CONFIG = 2


class StartupError(Exception):
    """The function cannot start; the message says why."""


def listen_port(env: Mapping[str, str]) -> int:
    """The port to serve on: ``upstream_port``, else ``upstream_url``'s port, else 5000."""
    raw = env.get("upstream_port", "").strip()
    if raw:
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StartupError(f"upstream_port: expected a port number, got {raw!r}")
        return int(raw)
    url = env.get("upstream_url", "").strip()
    if url:
        try:
            port = urlsplit(url).port
        except ValueError:
            raise StartupError(f"upstream_url: bad port in {url!r}") from None
        if port is not None:
            return port
    return DEFAULT_PORT


def store_overrides(handler: Any) -> dict[str, Any]:
    """The ``state_store`` / ``data_store`` engine options the handler overrides.

    Only hooks that exist and return something are passed on: engine options win over
    the configuration, so a ``None`` must not shadow ``faasflow_state``.
    """
    options: dict[str, Any] = {}
    for name in ("state_store", "data_store"):
        hook = getattr(handler, name, None)
        if hook is None:
            continue
        if not callable(hook):
            raise StartupError(f"function/handler.py: {name} must be a function")
        value = hook()
        if value is not None:
            options[name] = value
    return options


def build_app() -> Any:
    """Import the handler and build the flow server's app from the configuration."""
    # Imported here, not at the top, so that a missing faasflow or handler shows up as a
    # plain traceback while configuration problems get the one-line treatment below.
    from function import handler

    from faasflow import tracing
    from faasflow.config import server_config
    from faasflow.server.app import create_app

    define = getattr(handler, "define", None)
    if not callable(define):
        raise StartupError("function/handler.py must define define(flow, context)")
    config = server_config()
    # enable_tracing/trace_server (or OTEL_EXPORTER_OTLP_ENDPOINT): spans go to a collector.
    tracing.configure_from_env(config.flow_name)
    app = create_app(define, config=config, engine_options=store_overrides(handler))
    # A bad definition fails here, before the port is bound and the watchdog sees ready.
    app.state.flow_server.engine.describe()
    return app


def main() -> int:
    """Serve the flow; returns the exit status."""
    import uvicorn

    from faasflow.errors import FaasFlowError
    from faasflow.tracing import LogContext

    handler = logging.StreamHandler()
    handler.addFilter(LogContext())  # request and trace ids on every line
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s%(ids)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    try:
        port = listen_port(os.environ)
        app = build_app()
    except (StartupError, FaasFlowError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_CONFIG
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
