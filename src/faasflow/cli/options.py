"""The options commands share, declared once as argparse parents, and how they resolve.

Each function below returns a parent parser; a command lists the parents it takes
(``parents=[options.flow_file(), options.stores()]``). An option that is a setting of
:mod:`faasflow.config` takes its default from the setting's variables (the canonical
name or an alias); the value then remembers which variable it came from, so an error
names it (``FAASFLOW_STATE memory://: ...``) rather than an option nobody typed.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from faasflow import config
from faasflow.errors import ConfigurationError, RequestError, TransportError
from faasflow.runtime import check_request_id

__all__ = [
    "Conflicting",
    "FromEnv",
    "check_defaults",
    "check_nats",
    "env_default",
    "flow_file",
    "functions",
    "given",
    "nats",
    "nats_trouble",
    "nats_url",
    "whole_number",
    "request_input",
    "shared_stores",
    "source",
    "state_url",
    "stores",
    "verbose",
]

NATS_PORT = 4222


class FromEnv(str):
    """An option's value taken from an environment variable, which :attr:`variable`
    names (it is a ``str`` for everything else)."""

    variable: str

    def __new__(cls, value: str, variable: str) -> FromEnv:
        made = super().__new__(cls, value)
        made.variable = variable
        return made


class Conflicting(FromEnv):
    """The default of an option whose variables disagree: an error unless the option is
    given (:func:`check_defaults` raises it after parsing)."""

    problem: ConfigurationError


def env_default(key: str) -> FromEnv | None:
    """The default of the option of setting ``key``: its variable's value, if set.

    When two names of the setting disagree, the default is a :class:`Conflicting`
    value: the option, given, settles the question; not given, :func:`check_defaults`
    reports it.
    """
    try:
        found = config.lookup(key)
    except ConfigurationError as exc:
        conflict = Conflicting(f"<{key}: conflicting variables>", config.setting(key).variable)
        conflict.problem = exc
        return conflict
    return None if found is None else FromEnv(found[1], found[0])


def check_defaults(args: argparse.Namespace) -> None:
    """Raise the error of a setting whose variables disagree and whose option was not
    given.

    Raises:
        ConfigurationError: naming both variables.
    """
    for value in vars(args).values():
        if isinstance(value, Conflicting):
            raise value.problem


def whole_number(text: str) -> int:
    """An argparse type: a whole number; when the value came from a variable, the error
    names it (the command checks the range)."""
    try:
        return int(text)
    except ValueError:
        where = f"{text.variable}: " if isinstance(text, FromEnv) else ""
        raise argparse.ArgumentTypeError(
            f"{where}expected a whole number, got {str(text)!r}"
        ) from None


def source(value: object, option: str) -> str:
    """Where ``value`` came from, for an error message: its variable, or ``option``."""
    return value.variable if isinstance(value, FromEnv) else option


def given(value: Any) -> Any:
    """``value`` if it was given on the command line, ``None`` if it came from the
    environment (for readers of the environment that name their variables themselves)."""
    return None if isinstance(value, FromEnv) else value


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def flow_file(*, many: bool = False) -> argparse.ArgumentParser:
    """``FILE[:define]`` (or several, with ``many``) and ``--name``."""
    parser = _parent()
    what = ("flow files, each FILE[:define]: the file and the name of its "
            "define(flow, context) after a colon (default: define)")
    if many:
        parser.add_argument("targets", metavar="FILE[:define]", nargs="*", help=what)
    else:
        parser.add_argument(
            "target", metavar="FILE[:define]",
            help="the flow file and the name of its define(flow, context) after a colon "
            "(default: define)",
        )
    parser.add_argument(
        "--name", metavar="FLOW", default=env_default("flow_name"),
        help="the flow's name, which every worker and client of a flow must agree on "
        "(default: $FAASFLOW_NAME or $flow_name, else FILE's stem"
        + ("; only with one FILE)" if many else ")"),
    )
    return parser


def _request_id(text: str) -> str:
    try:
        return check_request_id(text)
    except RequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def request_input() -> argparse.ArgumentParser:
    """``--data`` or ``--data-file`` (the request's input), ``--request-id``, ``--query``."""
    parser = _parent()
    source_group = parser.add_mutually_exclusive_group()
    source_group.add_argument(
        "--data", metavar="TEXT",
        help="the request's input (default: standard input when it is not a terminal, "
        "else empty)",
    )
    source_group.add_argument(
        "--data-file", metavar="PATH", help="read the request's input from PATH ('-': stdin)"
    )
    parser.add_argument("--request-id", metavar="ID", type=_request_id,
                        help="choose the request's id (default: a new unique one)")
    parser.add_argument("--query", metavar="QS", default="",
                        help="the request's query string, a=1&b=2 (default: none)")
    return parser


def functions(*, gateway: str | None = None) -> argparse.ArgumentParser:
    """``--functions`` and ``--gateway``: where ``apply()`` calls go; ``gateway`` says
    what else the command does with ``--gateway``."""
    parser = _parent()
    parser.add_argument(
        "--functions", metavar="DIR",
        help="a folder of OpenFaaS python3-http handler folders (NAME/handler.py) for "
        "apply() (default: functions/ next to FILE, when it exists)",
    )
    parser.add_argument(
        "--gateway", metavar="URL", default=env_default("gateway"),
        help=(gateway or "an OpenFaaS gateway for the other apply() names")
        + " (default: $FAASFLOW_GATEWAY or $gateway; none)",
    )
    return parser


def stores(*, data: bool = True, shared: bool = False) -> argparse.ArgumentParser:
    """``--state`` (and ``--data-store``). ``shared``: the command's processes share
    the store, so it has no default (worker, submit)."""
    parser = _parent()
    default = ("required: every worker and client of the flow must use the same"
               if shared else "else a SQLite file in ~/.cache/faasflow")
    parser.add_argument(
        "--state", metavar="URL", default=env_default("state"),
        help="the state store: sqlite:///FILE, redis://, etcd://, postgresql://, memory:// "
        f"(default: $FAASFLOW_STATE or $faasflow_state; {default}; see "
        "docs/configuration.md)",
    )
    if data:
        parser.add_argument(
            "--data-store", metavar="URL", default=env_default("data"),
            help="the data store: the same kinds, s3://, file:/// (default: $FAASFLOW_DATA "
            "or $faasflow_data, else the state store's URL)",
        )
    return parser


class _DeprecatedDataStore(argparse.Action):
    """``--data URL`` where a store is meant: the old spelling of ``--data-store``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option: str | None = None) -> None:
        sys.stderr.write("warning: --data is deprecated for a store: use --data-store\n")
        namespace.data_store = values


def deprecated_data_option(parser: argparse.ArgumentParser) -> None:
    """Accept ``--data URL`` as ``--data-store`` (hidden; warns)."""
    parser.add_argument("--data", metavar="URL", action=_DeprecatedDataStore,
                        help=argparse.SUPPRESS)


def nats() -> argparse.ArgumentParser:
    """``--nats``."""
    parser = _parent()
    parser.add_argument(
        "--nats", metavar="URL", default=env_default("nats"),
        help="a NATS server with JetStream, nats://host:4222, comma-separated for a "
        "cluster (default: $FAASFLOW_NATS or $faasflow_nats)",
    )
    return parser


def verbose() -> argparse.ArgumentParser:
    """``-v``."""
    parser = _parent()
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="print each node's events with timings on stderr, and the traceback of a "
        "callable that raised",
    )
    return parser


def state_url(args: argparse.Namespace, *, default: bool) -> str:
    """``--state`` (or its variable); else, with ``default``, the embedded default store
    (where ``faasflow run`` keeps requests); else an error naming option and variable."""
    if args.state:
        return str(args.state)
    if default:
        return config.sqlite_default_url()
    raise ConfigurationError("no state store: pass --state URL or set FAASFLOW_STATE")


def shared_stores(args: argparse.Namespace) -> tuple[str, str | None]:
    """The state and data stores of processes that share requests (workers, their
    clients): required, and never ``memory://``, which no other process can see.

    Raises:
        ConfigurationError: no state store, or one that cannot be shared.
    """
    state = state_url(args, default=False)
    data = getattr(args, "data_store", None)
    for value, option in ((args.state, "--state"), (data, "--data-store")):
        if value:
            problem = config.shared_store_problem(str(value), source(value, option))
            if problem is not None:
                raise ConfigurationError(problem)
    return state, str(data) if data else None


def nats_url(args: argparse.Namespace) -> str:
    """``--nats`` (or its variable), or an error naming the option and the variable."""
    if not args.nats:
        raise ConfigurationError("no NATS server: pass --nats URL or set FAASFLOW_NATS")
    return str(args.nats)


def check_nats(url: str, shown: str, timeout: float = 2.0) -> None:
    """Fail at once when no server of ``url`` accepts a connection, rather than after
    the client library's retries; ``shown`` says where the URL came from.

    Raises:
        TransportError: every server refused or did not answer; the message says what
            to start.
    """
    problems: list[tuple[str, str]] = []
    for server in (part.strip() for part in url.split(",") if part.strip()):
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        if parts.scheme not in ("nats", "tls"):
            return  # websockets and the like: leave them to the client
        host = parts.hostname or "127.0.0.1"
        try:
            port = parts.port or NATS_PORT
        except ValueError:
            raise ConfigurationError(f"{shown}: bad port in {server!r}") from None
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return
        except ConnectionRefusedError:
            problems.append((f"{host}:{port}", "connection refused"))
        except OSError as exc:
            problems.append((f"{host}:{port}", exc.strerror or str(exc)))
    if problems:
        where = ", ".join(address for address, _ in problems)
        why = "; ".join(dict.fromkeys(reason for _, reason in problems))
        origin = f" ({shown})" if shown != "--nats" else ""
        raise TransportError(
            f"cannot reach NATS at {url}{origin}: {why}; is `nats-server -js` running at "
            f"{where}?"
        )


def nats_trouble(exc: TransportError, url: str) -> str:
    """The message for a NATS connection that failed after it was reached (JetStream
    off, say): the transport's words and what to check."""
    return f"{exc}; is `nats-server -js` (with JetStream) running at {url}?"
