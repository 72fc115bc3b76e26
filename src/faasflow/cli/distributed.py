"""Options shared by ``faasflow worker`` and the request commands (``submit``, ``status``…).

Each option falls back on an environment variable, so a deployment sets them once:
``FAASFLOW_NATS``, ``FAASFLOW_STATE`` (else ``FAASFLOW_STORE``) and ``FAASFLOW_DATA``.
"""

from __future__ import annotations

import argparse
import os

from faasflow.errors import ConfigurationError
from faasflow.runtime import default_store_url

__all__ = ["add_connection_options", "nats_url", "state_url"]


def add_connection_options(
    parser: argparse.ArgumentParser, *, nats: bool = True, data: bool = True
) -> None:
    """Declare ``--nats``, ``--state`` and ``--data-store`` (each with its variable)."""
    if nats:
        parser.add_argument(
            "--nats", metavar="URL", default=os.environ.get("FAASFLOW_NATS"),
            help="the NATS server, nats://host:4222 ($FAASFLOW_NATS)",
        )
    parser.add_argument(
        "--state", metavar="URL",
        default=os.environ.get("FAASFLOW_STATE") or os.environ.get("FAASFLOW_STORE"),
        help="the shared state store: redis://, etcd://, postgresql:// ($FAASFLOW_STATE)",
    )
    if data:
        parser.add_argument(
            "--data-store", metavar="URL", default=os.environ.get("FAASFLOW_DATA"),
            help="the shared data store: redis://, s3://, postgresql://, file:// "
            "(default: $FAASFLOW_DATA, else the state store's URL)",
        )


def state_url(args: argparse.Namespace, *, default: bool = False) -> str:
    """``--state``; else, with ``default``, the embedded default store (where
    ``faasflow run`` keeps requests); else a clear error naming the option and variable."""
    if not args.state and default:
        return default_store_url()
    if not args.state:
        raise ConfigurationError("no state store: pass --state URL or set FAASFLOW_STATE")
    value: str = args.state
    return value


def nats_url(args: argparse.Namespace) -> str:
    """``--nats``, or a clear error naming the option and its variable."""
    if not args.nats:
        raise ConfigurationError("no NATS server: pass --nats URL or set FAASFLOW_NATS")
    value: str = args.nats
    return value
