"""Flows the gateway runs itself: ``--flow NAME=FILE[:define]``.

Each flow is a ``faasflow serve`` subprocess on a free loopback port, told the
gateway's URL so that its hops come back through the gateway's async route, as in
OpenFaaS. The gateway waits for its ``/healthz`` before it reports ready, lists it with
the label ``faas-flow: "1"`` and the first line of the flow module's docstring as the
annotation ``faas-flow-desc``, and stops it when it stops.

The command line is made by one function, :func:`flow_server_command`; pass another
one to :func:`faasflow.gateway.create_gateway` to run flows differently.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from faasflow.config import lookup
from faasflow.errors import ConfigurationError
from faasflow.gateway.registry import FUNCTION_NAME
from faasflow.runtime.flowfile import DEFAULT_ATTRIBUTE, split_target

logger = logging.getLogger(__name__)

FLOW_HOST = "127.0.0.1"
"""Where flow servers listen: loopback only, the gateway is their one client."""

HEALTH_PATH = "/healthz"

HMAC_SECRET_ENV = "faasflow_hmac_secret"
"""The flow server reads its hop-signing secret from this variable outside OpenFaaS."""

STOP_TIMEOUT = 10.0
"""Seconds a flow server gets to exit after SIGTERM before it is killed."""


@dataclass(frozen=True)
class ServedFlow:
    """A flow for the gateway to run.

    Attributes:
        name: the function name it is served under.
        file: the flow file.
        attribute: the ``define`` function's name in it.
    """

    name: str
    file: Path
    attribute: str = DEFAULT_ATTRIBUTE

    @classmethod
    def parse(cls, name: str, target: str) -> ServedFlow:
        """Build from ``NAME`` and ``FILE[:define]`` (the ``--flow`` option's parts).

        Raises:
            ConfigurationError: a bad name, or the file does not exist.
        """
        if not FUNCTION_NAME.match(name):
            raise ConfigurationError(
                f"--flow {name}={target}: {name!r} is not a function name "
                "(letters, digits, '-' and '_')"
            )
        file_text, attribute = split_target(target)
        file = Path(file_text).expanduser()
        if not file.is_file():
            raise ConfigurationError(f"--flow {name}={target}: no file {file_text!r}")
        return cls(name=name, file=file.resolve(), attribute=attribute)

    @property
    def target(self) -> str:
        """``FILE:define`` as ``faasflow serve`` takes it."""
        return f"{self.file}:{self.attribute}"

    def description(self) -> str | None:
        """The first line of the flow module's docstring, read without importing it."""
        try:
            tree = ast.parse(self.file.read_bytes(), filename=str(self.file))
        except (OSError, SyntaxError, ValueError):
            return None  # the server will report the problem when it loads the file
        doc = ast.get_docstring(tree)
        if not doc:
            return None
        first = doc.strip().splitlines()[0].strip()
        return first or None


@dataclass(frozen=True)
class FlowCommand:
    """How to start one flow server.

    Attributes:
        argv: the program and its arguments.
        env: variables set on top of the gateway's own environment.
        health_url: polled until it answers 200.
        url: where the gateway sends the flow's calls.
    """

    argv: tuple[str, ...]
    url: str
    health_url: str
    env: Mapping[str, str] = field(default_factory=dict)


FlowCommandBuilder = Callable[[ServedFlow, int, str, str], FlowCommand]
"""``(spec, port, gateway_url, hmac_secret) -> FlowCommand``."""


def flow_server_command(
    spec: ServedFlow, port: int, gateway_url: str, hmac_secret: str
) -> FlowCommand:
    """The ``faasflow serve`` command line for ``spec`` on ``port``.

    ``python -m faasflow serve FILE:define --name NAME --host 127.0.0.1 --port PORT
    --gateway GATEWAY_URL``, with ``gateway`` (the template's variable) and
    ``faasflow_hmac_secret`` (one secret per gateway run, shared by its flows) in the
    environment. A ``faasflow_hmac_secret`` already in the gateway's environment wins.
    """
    url = f"http://{FLOW_HOST}:{port}"
    argv = (
        sys.executable, "-m", "faasflow", "serve", spec.target,
        "--name", spec.name,
        "--host", FLOW_HOST,
        "--port", str(port),
        "--gateway", gateway_url,
    )  # fmt: skip
    env = {"gateway": gateway_url}
    if lookup("hmac_secret") is None:  # any of the secret's variables, as the server reads it
        env[HMAC_SECRET_ENV] = hmac_secret
    return FlowCommand(argv=argv, url=url, health_url=url + HEALTH_PATH, env=env)


def new_hmac_secret() -> str:
    """A fresh hop-signing secret for the flows of one gateway run."""
    return secrets.token_hex(32)


def free_port(host: str = FLOW_HOST) -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class FlowProcess:
    """One running flow server.

    Args:
        spec: the flow.
        command: how to start it.
    """

    def __init__(self, spec: ServedFlow, command: FlowCommand) -> None:
        self.spec = spec
        self.command = command
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """Where the flow's function calls go."""
        return self.command.url

    async def start(self, client: httpx.AsyncClient, timeout: float) -> None:
        """Spawn the server and wait until its health check answers 200.

        Raises:
            ConfigurationError: it cannot be spawned, exits, or is not healthy within
                ``timeout`` seconds (it is stopped then).
        """
        logger.info("starting flow %s: %s", self.spec.name, " ".join(self.command.argv))
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.command.argv,
                env={**os.environ, **self.command.env},
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise ConfigurationError(
                f"--flow {self.spec.name}: cannot start {self.command.argv[0]}: {exc}"
            ) from exc
        try:
            await self._wait_healthy(client, timeout)
        except BaseException:
            await self.stop()
            raise

    async def _wait_healthy(self, client: httpx.AsyncClient, timeout: float) -> None:
        assert self._process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._process.returncode is not None:
                raise ConfigurationError(
                    f"--flow {self.spec.name}: the flow server exited with status "
                    f"{self._process.returncode} before it was ready (its output is above)"
                )
            with contextlib.suppress(httpx.HTTPError):
                answer = await client.get(self.command.health_url, timeout=1.0)
                if answer.status_code == 200:
                    logger.info("flow %s ready at %s", self.spec.name, self.url)
                    return
            if loop.time() >= deadline:
                raise ConfigurationError(
                    f"--flow {self.spec.name}: {self.command.health_url} did not answer 200 "
                    f"within {timeout:g}s"
                )
            # Polling with a deadline: a child process offers nothing to wait on.
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Terminate the server (kill it after :data:`STOP_TIMEOUT`) and reap it."""
        process = self._process
        if process is None or process.returncode is not None:
            if process is not None:
                await process.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            logger.warning("flow %s did not stop within %gs: killed", self.spec.name, STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
