"""Configuration read at the edge: one table of settings, and the functions that read them.

Every setting faasflow reads from the environment is a :class:`Setting` in
:data:`SETTINGS`: its variables (the canonical ``FAASFLOW_…`` name first, then aliases:
the OpenFaaS template's lowercase names such as ``faasflow_state`` or ``gateway``, and
deprecated names such as ``FAASFLOW_STORE``), its command-line option, its default and
its meaning. The command line, the flow server and the template read settings through
this module only; library classes (``Engine``, ``Worker``, the stores) take explicit
arguments. ``docs/configuration.md`` shows :func:`markdown_table`, and a test keeps the
two equal.

Rules every reader follows:

- a variable set to an empty string counts as unset;
- two names of one setting set to different values are an error, not a silent choice;
- every error names the variable (or option) it is about.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from faasflow.errors import ConfigurationError

__all__ = [
    "CONTROL_TOKEN",
    "DEFAULT_GATEWAY",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_SECRETS",
    "HMAC_SECRET",
    "SETTINGS",
    "ServerConfig",
    "Setting",
    "default_flow_name",
    "default_state_url",
    "get_bool",
    "get_int",
    "get_seconds",
    "get_text",
    "lookup",
    "markdown_table",
    "normalise_url",
    "parse_bool",
    "parse_float",
    "parse_int",
    "read_secret",
    "server_config",
    "setting",
    "shared_store_problem",
    "sqlite_default_url",
    "variables",
]

DEFAULT_GATEWAY = "http://gateway.openfaas:8080"
"""The gateway a flow server reaches when none is configured (inside OpenFaaS)."""
DEFAULT_SECRETS = "/var/openfaas/secrets/"
HMAC_SECRET = "faasflow-hmac-secret"
CONTROL_TOKEN = "faasflow-control-token"
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
"""The largest body a flow server (``max_body_size``) or the local gateway accepts."""
DEFAULT_TRACE_SERVER = "localhost:4318"
DEFAULT_NEW_GATEWAY = "http://127.0.0.1:8080"
"""faas-cli's own default gateway, for ``faasflow new``."""


@dataclass(frozen=True)
class Setting:
    """One setting: where it is read from, what it defaults to, what it means.

    Attributes:
        key: the name code uses (``state``).
        variables: environment variables, the canonical one first, then aliases.
        meaning: one sentence for the docs' table.
        default: the value when nothing is set (``None``: unset, or see ``default_text``).
        default_text: how the docs say the default, when it is computed or depends on
            the command; ``None`` shows ``default``.
        option: the command-line option that wins over the variables, if any.
        secret: the OpenFaaS secret (a file under ``secret_mount_path``) that wins over
            the variables, if any.
        deprecated: the variables of ``variables`` kept only for old set-ups.
        reader: the module that reads the setting, when it is not this one.
        server: the flow server (``faasflow serve``, the template) reads it.
    """

    key: str
    variables: tuple[str, ...]
    meaning: str
    default: str | int | float | bool | None = None
    default_text: str | None = None
    option: str | None = None
    secret: str | None = None
    deprecated: tuple[str, ...] = ()
    reader: str | None = None
    server: bool = False

    @property
    def variable(self) -> str:
        """The canonical variable."""
        return self.variables[0]

    @property
    def template_name(self) -> str:
        """The name the OpenFaaS template's ``flow.yml`` uses: the lowercase alias, if
        there is one, else the canonical variable."""
        return next((name for name in self.variables if name.islower()), self.variable)

    def shown_default(self) -> str:
        """The default as the docs' table shows it."""
        if self.default_text is not None:
            return self.default_text
        if self.default is None:
            return "—"
        if isinstance(self.default, bool):
            return f"`{'true' if self.default else 'false'}`"
        if isinstance(self.default, float):
            return f"`{self.default:g}`"
        return f"`{self.default}`"


SETTINGS: tuple[Setting, ...] = (
    # -- where requests live and how hops travel --------------------------------------
    Setting(
        "state", ("FAASFLOW_STATE", "faasflow_state", "FAASFLOW_STORE"),
        "the state store URL: `sqlite:///flows.db`, `memory://`, `redis://…`, `etcd://…`, "
        "`postgresql://…` (see [stores.md](stores.md)); workers and their clients, and a "
        "flow's replicas, must share one",
        default_text="a SQLite file, `$XDG_CACHE_HOME/faasflow/faasflow.db` "
        "(`~/.cache/faasflow/faasflow.db`); `faasflow worker` and `faasflow submit` "
        "need it set",
        option="--state", deprecated=("FAASFLOW_STORE",),
        server=True,
    ),
    Setting(
        "data", ("FAASFLOW_DATA", "faasflow_data"),
        "the data store URL (inputs, node outputs, context values, results); also "
        "`s3://bucket/prefix`, `file:///shared/folder`",
        default_text="the state store's URL", option="--data-store",
        server=True,
    ),
    Setting(
        "nats", ("FAASFLOW_NATS", "faasflow_nats"),
        "a NATS server with JetStream (`nats://host:4222`): hops go through it, run by "
        "`faasflow worker` processes (and by a flow server's replicas)",
        option="--nats",
        server=True,
    ),
    Setting(
        "flow_name", ("FAASFLOW_NAME", "flow_name"),
        "the flow's name: keys, history and NATS subjects carry it, and a flow server's "
        "hops go to its async route; every worker and client of a flow must agree on it",
        default_text="the flow file's stem (`flows/orders.py`: `orders`); the template: "
        "required",
        option="--name",
        server=True,
    ),
    Setting(
        "gateway", ("FAASFLOW_GATEWAY", "gateway"),
        "an OpenFaaS gateway (scheme optional) for `apply()` names that are neither "
        "local callables nor handler folders; a flow server's hops go through it too",
        default_text=f"none; a flow server: `{DEFAULT_GATEWAY}`", option="--gateway",
        server=True,
    ),
    # -- the flow server (faasflow serve, the template) --------------------------------
    Setting(
        "secret_mount_path", ("FAASFLOW_SECRET_MOUNT_PATH", "secret_mount_path"),
        "where the flow server reads its secrets, one file each (OpenFaaS mounts them "
        "there)",
        default=DEFAULT_SECRETS,
        server=True,
    ),
    Setting(
        "hmac_secret", ("FAASFLOW_HMAC_SECRET", "faasflow_hmac_secret"),
        "the key that signs every hop (HMAC-SHA256), and new requests with "
        "`authenticate_request`",
        default_text="— (a flow server hopping through the gateway refuses to start "
        "without it)",
        secret=HMAC_SECRET,
        server=True,
    ),
    Setting(
        "control_token", ("FAASFLOW_CONTROL_TOKEN", "faasflow_control_token"),
        "when set, a flow server's control and status routes need `Authorization: Bearer "
        "TOKEN`; the dashboard sends it to the flows of `--gateway`",
        secret=CONTROL_TOKEN, option="--control-token",
        server=True,
    ),
    Setting(
        "authenticate_request", ("FAASFLOW_AUTHENTICATE_REQUEST", "authenticate_request"),
        "`true`: new requests must carry `X-Hub-Signature-256`",
        default=False,
        server=True,
    ),
    Setting(
        "max_body_size", ("FAASFLOW_MAX_BODY_SIZE", "max_body_size"),
        "the largest input of a new request, in bytes, wherever it enters (a flow "
        "server's body, `faasflow run` and `submit`), and the largest hop body; a flow "
        "server or `faasflow gateway` answers a larger body with 413",
        default=DEFAULT_MAX_BODY_SIZE, default_text=f"`{DEFAULT_MAX_BODY_SIZE}` (16 MiB)",
        option="--max-body-size",
        server=True,
    ),
    Setting(
        "hop_max_age", ("FAASFLOW_HOP_MAX_AGE", "hop_max_age"),
        "seconds after which a signed hop is stale and refused",
        default=3600.0,
        server=True,
    ),
    Setting(
        "max_wait", ("FAASFLOW_MAX_WAIT", "max_wait"),
        "the longest `X-Faas-Flow-Wait` a flow server honours, in seconds",
        default=300.0,
        server=True,
    ),
    Setting(
        "callback_attempts", ("FAASFLOW_CALLBACK_ATTEMPTS", "callback_attempts"),
        "tries to deliver a completion callback (`X-Faas-Flow-Callback-Url`)",
        default=8,
        server=True,
    ),
    # -- tracing (read by faasflow.tracing) --------------------------------------------
    Setting(
        "enable_tracing", ("enable_tracing",),
        "`true`: export OpenTelemetry spans over OTLP/HTTP to `trace_server` (needs "
        "`faasflow[tracing]`, see [tracing.md](tracing.md))",
        default=False, reader="faasflow.tracing",
        server=True,
    ),
    Setting(
        "trace_server", ("trace_server",),
        "the OTLP/HTTP collector for `enable_tracing` (`host:port` or a URL)",
        default=DEFAULT_TRACE_SERVER, reader="faasflow.tracing",
        server=True,
    ),
    Setting(
        "otlp_endpoint", ("OTEL_EXPORTER_OTLP_ENDPOINT",),
        "OpenTelemetry's standard variable: when set, spans are exported to this "
        "collector (`OTEL_SERVICE_NAME` names the process; needs `faasflow[tracing]`)",
        reader="faasflow.tracing", server=True,
    ),
    Setting(
        "otlp_traces_endpoint", ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",),
        "the same, for traces only",
        reader="faasflow.tracing", server=True,
    ),
    # -- commands' own settings ------------------------------------------------------
    Setting(
        "metrics_port", ("FAASFLOW_METRICS_PORT",),
        "`faasflow worker` serves Prometheus metrics on this port (`/metrics`, "
        "`/healthz`); 9102 is the usual choice",
        default_text="— (off)", option="--metrics-port",
    ),
    Setting(
        "dashboard_token", ("FAASFLOW_DASHBOARD_TOKEN",),
        "the dashboard requires this token (`Authorization: Bearer`, or its sign-in form)",
        option="--token",
    ),
    Setting(
        "dashboard_basic_auth", ("FAASFLOW_DASHBOARD_BASIC_AUTH",),
        "the dashboard requires these HTTP Basic credentials, `USER:PASSWORD`",
        option="--basic-auth",
    ),
    Setting(
        "gateway_user", ("FAASFLOW_GATEWAY_USER",),
        "the dashboard's Basic-auth user for `--gateway`'s `/system/functions`",
        option="--gateway-user",
    ),
    Setting(
        "gateway_password", ("FAASFLOW_GATEWAY_PASSWORD",),
        "the dashboard's Basic-auth password for `--gateway`'s `/system/functions`",
        option="--gateway-password",
    ),
    Setting(
        "openfaas_url", ("OPENFAAS_URL",),
        "the gateway `faasflow new` writes into the stack file (faas-cli's own variable)",
        default=DEFAULT_NEW_GATEWAY, option="--gateway",
    ),
    Setting(
        "host", ("FAASFLOW_HOST",),
        "the host name a process gives in its claims; set it where host names repeat "
        "(containers sharing one)",
        default_text="the machine's host name", reader="faasflow.engine",
    ),
)
"""Every setting faasflow reads from the environment, in the order the docs show them."""

_BY_KEY = {item.key: item for item in SETTINGS}


def setting(key: str) -> Setting:
    """The setting called ``key`` (``state``, ``nats``…).

    Raises:
        KeyError: no such setting.
    """
    return _BY_KEY[key]


def variables() -> frozenset[str]:
    """Every environment variable of every setting (for scrubbing an environment)."""
    return frozenset(name for item in SETTINGS for name in item.variables)


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def lookup(key: str, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(variable, value)`` of setting ``key`` in ``env`` (default ``os.environ``), or
    ``None`` when none of its variables is set.

    Raises:
        ConfigurationError: two of its variables are set to different values.
    """
    env = _env(env)
    found: list[tuple[str, str]] = []
    for name in _BY_KEY[key].variables:
        value = env.get(name)
        if value is not None and value.strip():
            found.append((name, value.strip()))
    if not found:
        return None
    first_name, first = found[0]
    for name, value in found[1:]:
        if value != first:
            raise ConfigurationError(
                f"{first_name} and {name} are both set, to different values "
                f"({_masked(key, first)!r} and {_masked(key, value)!r}); they name the "
                f"same setting: set only {_BY_KEY[key].variable}"
            )
    return found[0]


def _masked(key: str, value: str) -> str:
    # Secrets must not end up in an error message (and a terminal's scrollback).
    return "***" if key in ("hmac_secret", "control_token", "dashboard_token",
                            "dashboard_basic_auth", "gateway_password") else value


def get_text(key: str, env: Mapping[str, str] | None = None) -> str | None:
    """Setting ``key`` as text, else its default (as text), else ``None``."""
    found = lookup(key, env)
    if found is not None:
        return found[1]
    default = _BY_KEY[key].default
    return None if default is None else str(default)


def get_bool(key: str, env: Mapping[str, str] | None = None) -> bool:
    """Setting ``key`` as a boolean (``true``/``false``, ``1``/``0``, ``yes``/``no``,
    ``on``/``off``), else its default.

    Raises:
        ConfigurationError: another value; the message names the variable.
    """
    found = lookup(key, env)
    if found is None:
        return bool(_BY_KEY[key].default)
    name, raw = found
    return parse_bool({name: raw}, name, False)


def get_int(key: str, env: Mapping[str, str] | None = None) -> int:
    """Setting ``key`` as a positive whole number, else its default.

    Raises:
        ConfigurationError: not a positive whole number; the message names the variable.
    """
    found = lookup(key, env)
    if found is None:
        default = _BY_KEY[key].default
        assert isinstance(default, int)
        return default
    name, raw = found
    return parse_int({name: raw}, name, 0)


def get_seconds(key: str, env: Mapping[str, str] | None = None) -> float:
    """Setting ``key`` as a positive number of seconds (a trailing ``s`` allowed), else
    its default.

    Raises:
        ConfigurationError: not a positive number; the message names the variable.
    """
    found = lookup(key, env)
    if found is None:
        default = _BY_KEY[key].default
        assert isinstance(default, int | float)
        return float(default)
    name, raw = found
    return parse_float({name: raw}, name, 0.0)


def sqlite_default_url(env: Mapping[str, str] | None = None) -> str:
    """The embedded default store: a SQLite file under the user's cache directory
    (``$XDG_CACHE_HOME/faasflow``, else ``~/.cache/faasflow``), whose folder is created.

    Raises:
        ConfigurationError: the folder cannot be created; the message says what to set.
    """
    env = _env(env)
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "faasflow"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"FAASFLOW_STATE: no state store is set and the default folder {cache} cannot "
            f"be created ({exc.strerror}); set FAASFLOW_STATE (or pass --state), e.g. "
            "sqlite:////tmp/faasflow.db"
        ) from exc
    return f"sqlite:///{cache / 'faasflow.db'}"


def default_state_url(env: Mapping[str, str] | None = None) -> str:
    """The state store when none is passed: ``FAASFLOW_STATE`` (or its aliases
    ``faasflow_state``, ``FAASFLOW_STORE``), else :func:`sqlite_default_url`.

    What ``faasflow.Engine`` and ``faasflow.run`` use without ``state_store=``, and
    where ``faasflow run``, ``status`` and ``requests`` look without ``--state``.

    Raises:
        ConfigurationError: the variables disagree, or the default folder cannot be made.
    """
    found = lookup("state", env)
    return found[1] if found is not None else sqlite_default_url(env)


def shared_store_problem(url: str, option: str) -> str | None:
    """Why a store at ``url`` cannot be shared with other processes, or ``None``.

    ``memory://`` lives in one process: workers, their clients and a flow's replicas
    would each see a store of their own, and requests would wait forever for hops that
    nobody can see. A SQLite file is shared by the processes of one machine, so it is
    allowed (workers on several machines need Redis, etcd or PostgreSQL).
    """
    if url.strip().lower().startswith("memory:"):
        return (
            f"{option} {url}: a memory store lives inside one process, so no other worker "
            "or client could see its requests; use a store they share: redis://, etcd://, "
            "postgresql:// (or sqlite:///FILE for processes on this machine only)"
        )
    return None


def default_flow_name(define: Callable[..., object]) -> str:
    """The name a flow goes by when none is given: the stem of the file that defines
    ``define``, as ``faasflow worker FILE`` names it; ``flow`` when that file is unknown."""
    try:
        source = inspect.getsourcefile(define)
    except TypeError:
        source = None
    if not source or source.startswith("<"):
        return "flow"
    return Path(source).stem


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
        ConfigurationError: a value is malformed, missing or contradicted by another
            name of the same setting; the message names the variable.
    """
    env = _env(env)
    given = {k: v for k, v in overrides.items() if v is not None}
    mount = Path(get_text("secret_mount_path", env) or DEFAULT_SECRETS)
    flow_name = str(given.pop("flow_name", None) or get_text("flow_name", env) or "")
    if not flow_name:
        raise ConfigurationError(
            "flow_name: set the flow's name (environment variable flow_name or "
            "FAASFLOW_NAME, or serve --name)"
        )
    secret = read_setting_secret("hmac_secret", mount, env)
    gateway = lookup("gateway", env)
    values: dict[str, object] = {
        "flow_name": flow_name,
        "gateway": normalise_url(gateway[1], gateway[0]) if gateway else DEFAULT_GATEWAY,
        "hmac_secret": secret.encode() if secret else None,
        "authenticate_requests": get_bool("authenticate_request", env),
        "control_token": read_setting_secret("control_token", mount, env),
        "state_url": get_text("state", env),
        "data_url": get_text("data", env),
        "nats_url": get_text("nats", env),
        "max_body_size": get_int("max_body_size", env),
        "hop_max_age": get_seconds("hop_max_age", env),
        "max_wait": get_seconds("max_wait", env),
        "callback_attempts": get_int("callback_attempts", env),
    }
    values.update(given)
    if "gateway" in given:
        values["gateway"] = normalise_url(str(given["gateway"]), "--gateway")
    return ServerConfig(**values)  # type: ignore[arg-type]


def read_setting_secret(key: str, mount: Path, env: Mapping[str, str]) -> str | None:
    """The secret of setting ``key``: its file under ``mount``, else its variables."""
    item = _BY_KEY[key]
    assert item.secret is not None
    path = mount / item.secret
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        found = lookup(key, env)
        return found[1] if found is not None else None
    except OSError as exc:
        raise ConfigurationError(f"secret {item.secret}: cannot read {path}: {exc}") from exc
    return value or None


def read_secret(name: str, mount: Path, env: Mapping[str, str]) -> str | None:
    """The secret ``name`` (``faasflow-hmac-secret``) from ``mount``/name, else from its
    setting's variables (``FAASFLOW_HMAC_SECRET``, ``faasflow_hmac_secret``), else
    ``None``."""
    for item in SETTINGS:
        if item.secret == name:
            return read_setting_secret(item.key, mount, env)
    raise KeyError(name)


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
    """Variable ``name`` of ``env`` as a boolean, else ``default``; an error names it."""
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
    """Variable ``name`` of ``env`` as a positive whole number, else ``default``."""
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
    """Variable ``name`` of ``env`` as a positive number of seconds, else ``default``."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw.strip().rstrip("s"))
    except ValueError:
        raise ConfigurationError(f"{name}: expected seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name}: must be positive, got {value}")
    return value


def markdown_table() -> str:
    """The settings as the Markdown table of ``docs/configuration.md``."""
    lines = [
        "| setting | variables | option | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for item in SETTINGS:
        lines.append(
            f"| {item.key} | {_shown_variables(item)} | "
            f"{f'`{item.option}`' if item.option else '—'} | {item.shown_default()} | "
            f"{item.meaning} |"
        )
    return "\n".join(lines) + "\n"


def _shown_variables(item: Setting) -> str:
    names = [f"`{item.variable}`"]
    aliases = [f"`{n}`" for n in item.variables[1:] if n not in item.deprecated]
    if aliases:
        names.append(f"(also {', '.join(aliases)})")
    if item.deprecated:
        names.append(f"({', '.join(f'`{n}`' for n in item.deprecated)}: deprecated)")
    if item.secret:
        names.insert(0, f"secret `{item.secret}`, else")
    return " ".join(names)


if __name__ == "__main__":  # python -m faasflow.config: print the docs' table
    print(markdown_table(), end="")
