"""The gateway's settings, checked once, each error naming its option."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from faasflow.config import DEFAULT_MAX_BODY_SIZE
from faasflow.errors import ConfigurationError
from faasflow.gateway.flows import FlowCommandBuilder, ServedFlow, flow_server_command
from faasflow.gateway.registry import FUNCTION_NAME


def check_function_name(name: str, option: str) -> str:
    """``name`` if it can be a function's name, else :class:`ConfigurationError`."""
    if not FUNCTION_NAME.match(name):
        raise ConfigurationError(
            f"{option}: {name!r} is not a function name (letters, digits, '-' and '_'; "
            "no dots, which start a namespace)"
        )
    return name


def check_upstream_url(url: str, option: str) -> str:
    """``url`` without a trailing ``/`` if it is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{option}: {url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


@dataclass(frozen=True)
class GatewayConfig:
    """Everything :func:`faasflow.gateway.create_gateway` takes.

    Attributes:
        functions_dir: a folder of ``python3-http`` handler folders.
        upstreams: function name → URL of a server that answers for it.
        flows: flows to run as ``faasflow serve`` subprocesses.
        basic_auth: ``(user, password)`` required on ``/system/*``; ``None``: open.
        async_concurrency: async calls running at once.
        async_queue_size: async calls that may wait; one more gets 429.
        labels: extra labels per function name (``--label NAME:k=v``).
        annotations: extra annotations per function name (``--annotation``).
        upstream_timeout: seconds a function may take to start answering.
        drain_timeout: seconds the queue may take to finish when the gateway stops.
        flow_start_timeout: seconds a flow server may take to become healthy.
        public_url: the gateway's own URL, given to flows (``None`` until known; the
            runners in :mod:`faasflow.gateway.server` set it from the bound socket).
        flow_command: builds each flow server's command line.
        max_body_size: the largest body, in bytes, of an async call (it is held in the
            queue) and of a ``/system/*`` call; a larger one gets 413.
    """

    functions_dir: Path | None = None
    upstreams: Mapping[str, str] = field(default_factory=dict)
    flows: Sequence[ServedFlow] = ()
    basic_auth: tuple[str, str] | None = None
    async_concurrency: int = 10
    async_queue_size: int = 1000
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    annotations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    upstream_timeout: float = 60.0
    drain_timeout: float = 30.0
    flow_start_timeout: float = 30.0
    public_url: str | None = None
    flow_command: FlowCommandBuilder = flow_server_command
    max_body_size: int = DEFAULT_MAX_BODY_SIZE

    def __post_init__(self) -> None:
        if self.functions_dir is not None and not Path(self.functions_dir).is_dir():
            raise ConfigurationError(f"--functions {str(self.functions_dir)!r} is not a directory")
        for name, url in self.upstreams.items():
            check_function_name(name, f"--register {name}={url}")
            check_upstream_url(url, f"--register {name}={url}")
        names = [spec.name for spec in self.flows]
        for name in names:
            if names.count(name) > 1 or name in self.upstreams:
                raise ConfigurationError(f"--flow {name}: the name is used twice")
        for option, value in (
            ("--async-concurrency", self.async_concurrency),
            ("--async-queue-size", self.async_queue_size),
            ("--max-body-size", self.max_body_size),
        ):
            if value < 1:
                raise ConfigurationError(f"{option}: must be at least 1, not {value}")
        for option, seconds in (
            ("--upstream-timeout", self.upstream_timeout),
            ("--drain-timeout", self.drain_timeout),
            ("--flow-start-timeout", self.flow_start_timeout),
        ):
            if not seconds > 0:
                raise ConfigurationError(f"{option}: must be > 0, not {seconds}")
        if self.basic_auth is not None and not self.basic_auth[0]:
            raise ConfigurationError("--basic-auth: the user name is empty")
