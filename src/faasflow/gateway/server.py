"""Serving the gateway (or any ASGI app) with uvicorn: in the foreground, or in a thread.

The socket is bound *before* the application starts, so that the gateway knows its own
URL (the flows it starts need it) even when the port is chosen by the system (port 0).
Uvicorn is configured to leave the wire to the application: no ``server`` header, no
second ``Date``, no rewriting of the client address from ``X-Forwarded-For``.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

from faasflow.errors import ConfigurationError
from faasflow.gateway.app import Gateway

DEFAULT_GRACEFUL_TIMEOUT = 30.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (``0``: any free port).

    Raises:
        ConfigurationError: the address cannot be bound (in use, not local).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigurationError(f"--host {host}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now: a client that connects before uvicorn accepts waits in the
        # backlog instead of being refused.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def socket_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` to reach ``sock`` from this machine."""
    host, port = sock.getsockname()[:2]
    # A wildcard address is reached through loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def uvicorn_config(app: ASGIApp, *, graceful_timeout: float) -> uvicorn.Config:
    """Uvicorn's settings for the gateway and the servers of the tests."""
    return uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,  # the host program configures logging
        access_log=False,
        server_header=False,
        date_header=False,  # the gateway adds Date itself, unless the function did
        proxy_headers=False,  # X-Forwarded-For is for the functions, not for us
        timeout_graceful_shutdown=math.ceil(graceful_timeout),
    )


class _Server(uvicorn.Server):
    """A uvicorn server that says when its startup is over, successful or not."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[bool], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        except SystemExit:
            # uvicorn exits the process when the lifespan startup fails; the runners
            # here raise the application's own error instead.
            self.should_exit = True
        finally:
            self._on_started(self.started)


def _adopt(app: ASGIApp, sock: socket.socket) -> None:
    if isinstance(app, Gateway) and app.public_url is None:
        app.public_url = socket_url(sock)


def _graceful(app: ASGIApp) -> float:
    return app.config.drain_timeout if isinstance(app, Gateway) else DEFAULT_GRACEFUL_TIMEOUT


async def serve(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then stop it gracefully.

    Args:
        app: the application; a :class:`Gateway` learns its URL from the socket.
        host: the address to listen on.
        port: the port; ``0`` picks a free one.
        on_ready: called with the URL once the application has started.

    Raises:
        ConfigurationError: the address cannot be bound, or a gateway's startup
            failed (a flow server did not start).
        RuntimeError: another application's startup failed.
    """
    sock = bind_socket(host, port)
    url = socket_url(sock)
    _adopt(app, sock)

    def started(ok: bool) -> None:
        if ok and on_ready is not None:
            on_ready(url)

    server = _Server(uvicorn_config(app, graceful_timeout=_graceful(app)), started)
    try:
        await _run(app, server, sock)
    finally:
        sock.close()
    _raise_startup_error(server)


async def _run(app: ASGIApp, server: uvicorn.Server, sock: socket.socket) -> None:
    # A gateway is started before uvicorn (its failure is raised as is, not logged as
    # a lifespan traceback) and stopped after it (the lifespan's stop then did it).
    gateway = app if isinstance(app, Gateway) else None
    if gateway is not None:
        await gateway.start()
    try:
        await server.serve(sockets=[sock])
    finally:
        if gateway is not None:
            await gateway.stop()


def _raise_startup_error(server: uvicorn.Server) -> None:
    if not server.started:
        raise RuntimeError("the application failed to start (see the log above)")


class BackgroundServer:
    """Serve an ASGI app with uvicorn on a thread of its own (tests, notebooks).

    The app runs on its own event loop, so the caller may block, or run another loop.
    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        gateway = create_gateway(functions_dir="functions")
        with BackgroundServer(gateway) as server:
            httpx.post(f"{server.url}/function/hello", content=b"Adam")

    Args:
        app: the application; a :class:`Gateway` learns its URL from the socket.
        host: the address to listen on.
        port: the port; ``0`` (the default) picks a free one.
        startup_timeout: seconds the application may take to start.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 60.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> str:
        """Start serving; returns the URL once the application has started.

        Raises:
            TimeoutError: the startup took longer than ``startup_timeout``.
            ConfigurationError: binding failed, or the gateway's startup did.
            RuntimeError: the application's startup failed otherwise.
        """
        sock = bind_socket(self.host, self.port)
        self.url = socket_url(sock)
        _adopt(self.app, sock)
        config = uvicorn_config(self.app, graceful_timeout=_graceful(self.app))
        self._server = _Server(config, lambda ok: self._started.set())
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"uvicorn {self.url}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(self.startup_timeout):
            self.stop()
            raise TimeoutError(f"{self.url} did not start within {self.startup_timeout:g}s")
        if not self._server.started:
            self._thread.join()
            self._raise_error()
            _raise_startup_error(self._server)
        return self.url

    def request_stop(self) -> None:
        """Ask the server to stop, without waiting (stop several at once, then
        :meth:`stop` each)."""
        if self._server is not None:
            self._server.should_exit = True

    def stop(self, timeout: float = 60.0) -> None:
        """Stop gracefully (the gateway drains its queue) and wait for the thread.

        Raises:
            TimeoutError: the server did not stop within ``timeout`` seconds even when
                forced.
        """
        if self._server is None or self._thread is None:
            return
        self.request_stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5.0)
            if self._thread.is_alive():
                raise TimeoutError(f"{self.url} did not stop within {timeout:g}s")
        self._server = None
        self._thread = None
        self._raise_error()

    def _run(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            asyncio.run(_run(self.app, self._server, sock))
        except BaseException as exc:  # reported to the caller's thread by stop()/start()
            self._error = exc
        finally:
            sock.close()
            self._started.set()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
