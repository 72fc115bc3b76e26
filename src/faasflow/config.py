"""Configuration read at the edge: environment variables and OpenFaaS secrets, typed.

Library classes take explicit arguments; only the CLI and the flow server read the
environment, through :func:`server_config`. Every error names the variable.

| variable | default | meaning |
|---|---|---|
| ``flow_name`` | — (or ``--name``) | the flow name; hops go to its async route |
| ``gateway`` | ``http://gateway.openfaas:8080`` | the OpenFaaS gateway (scheme optional) |
| ``secret_mount_path`` | ``/var/openfaas/secrets/`` | where OpenFaaS mounts secrets |
| secret ``faasflow-hmac-secret`` | — (required with the gateway transport) | signs every hop |
| ``authenticate_request`` | ``false`` | new requests must carry ``X-Hub-Signature-256`` |
| secret ``faasflow-control-token`` | — | when set, control routes need ``Authorization: Bearer`` |
| ``faasflow_state`` | ``$FAASFLOW_STORE`` or a SQLite file | state store URL |
| ``faasflow_data`` | the state store URL | data store URL |
| ``faasflow_nats`` | — | NATS server: hops go through JetStream, run by replicas and workers |
| ``max_body_size`` | ``16777216`` (16 MiB) | largest request or hop body accepted |
| ``hop_max_age`` | ``3600`` | seconds after which a hop is stale and refused |
| ``max_wait`` | ``300`` | the longest ``X-Faas-Flow-Wait`` honoured, seconds |
| ``callback_attempts`` | ``8`` | tries to deliver a completion callback |
| ``enable_tracing``, ``trace_server`` | off | OTLP trace export (read by :mod:`faasflow.tracing`) |

Each secret may also be given as an environment variable with ``-`` replaced by ``_``
(``faasflow_hmac_secret``), for running outside OpenFaaS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from faasflow.errors import ConfigurationError

DEFAULT_GATEWAY = "http://gateway.openfaas:8080"
DEFAULT_SECRETS = "/var/openfaas/secrets/"
HMAC_SECRET = "faasflow-hmac-secret"
CONTROL_TOKEN = "faasflow-control-token"
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
"""The largest body a flow server (``max_body_size``) or the local gateway accepts."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything the flow server needs to know besides the flow itself."""

    flow_name: str
    gateway: str = DEFAULT_GATEWAY
    hmac_secret: bytes | None = None
    authenticate_requests: bool = False
    control_token: str | None = None
    state_url: str | None = None
    data_url: str | None = None
    nats_url: str | None = None
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    hop_max_age: float = 3600.0
    max_wait: float = 300.0
    callback_attempts: int = 8

    def __post_init__(self) -> None:
        if self.control_token is not None and not _is_header_text(self.control_token):
            # A client sends it in a header, which carries ASCII only: with any other
            # character no call could match it.
            raise ConfigurationError(
                f"secret {CONTROL_TOKEN}: the token must be printable ASCII (it travels in "
                "an Authorization: Bearer header)"
            )


def _is_header_text(value: str) -> bool:
    return value.isascii() and value.isprintable()


def server_config(
    env: Mapping[str, str] | None = None, **overrides: object
) -> ServerConfig:
    """Read the flow server's configuration from ``env`` (default ``os.environ``).

    ``overrides`` (from command-line options) win over the environment; ``None``
    values are ignored.

    Raises:
        ConfigurationError: a value is malformed; the message names the variable.
    """
    env = os.environ if env is None else env
    given = {k: v for k, v in overrides.items() if v is not None}
    mount = Path(env.get("secret_mount_path", DEFAULT_SECRETS))
    flow_name = str(given.pop("flow_name", env.get("flow_name", "")))
    if not flow_name:
        raise ConfigurationError(
            "flow_name: set the flow's name (environment variable flow_name, or serve --name)"
        )
    secret = read_secret(HMAC_SECRET, mount, env)
    values: dict[str, object] = {
        "flow_name": flow_name,
        "gateway": normalise_url(env.get("gateway", DEFAULT_GATEWAY), "gateway"),
        "hmac_secret": secret.encode() if secret else None,
        "authenticate_requests": parse_bool(env, "authenticate_request", False),
        "control_token": read_secret(CONTROL_TOKEN, mount, env),
        "state_url": env.get("faasflow_state") or None,
        "data_url": env.get("faasflow_data") or None,
        "nats_url": env.get("faasflow_nats") or None,
        "max_body_size": parse_int(env, "max_body_size", DEFAULT_MAX_BODY_SIZE),
        "hop_max_age": parse_float(env, "hop_max_age", 3600.0),
        "max_wait": parse_float(env, "max_wait", 300.0),
        "callback_attempts": parse_int(env, "callback_attempts", 8),
    }
    values.update(given)
    if "gateway" in given:
        values["gateway"] = normalise_url(str(given["gateway"]), "--gateway")
    return ServerConfig(**values)  # type: ignore[arg-type]


def read_secret(name: str, mount: Path, env: Mapping[str, str]) -> str | None:
    """The secret ``name`` from ``mount``/name, else from the environment, else ``None``."""
    path = mount / name
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = env.get(name.replace("-", "_"), "").strip()
    except OSError as exc:
        raise ConfigurationError(f"secret {name}: cannot read {path}: {exc}") from exc
    return value or None


def normalise_url(value: str, name: str) -> str:
    """``gateway.openfaas:8080`` → ``http://gateway.openfaas:8080`` (no trailing slash)."""
    value = value.strip().rstrip("/")
    if not value:
        raise ConfigurationError(f"{name}: empty URL")
    if "://" not in value:
        value = "http://" + value
    if not value.startswith(("http://", "https://")):
        raise ConfigurationError(f"{name}: {value!r} is not an http(s) URL")
    return value


def parse_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}: expected true or false, got {raw!r}")


def parse_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}: expected a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name}: must be positive, got {value}")
    return value


def parse_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw.rstrip("s"))
    except ValueError:
        raise ConfigurationError(f"{name}: expected seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name}: must be positive, got {value}")
    return value
