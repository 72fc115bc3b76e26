"""The files of a new flow function, as ``faas-cli new NAME --lang faas-flow-python`` lays them
out, plus the faasflow parts faas-cli leaves to the user:

- ``NAME/``: a copy of the template's ``function/`` folder (``handler.py``,
  ``requirements.txt``);
- ``NAME.yml``: the stack file, with the label ``faas-flow: "1"``, the annotation
  ``faas-flow-desc``, ``environment_file: [flow.yml]`` and the ``faasflow-hmac-secret``;
- ``flow.yml``: the flow server's environment, named as :mod:`faasflow.config` reads it;
- ``template/<lang>/``: the template itself, when the folder has none yet, so that
  ``faas-cli build`` finds it without ``faas-cli template pull`` and builds the template
  that matches this faasflow.

YAML is written as text (PyYAML is not a dependency), with every string value quoted
as JSON, which YAML reads unchanged.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from faasflow.config import CONTROL_TOKEN, DEFAULT_GATEWAY, HMAC_SECRET, setting
from faasflow.errors import ConfigurationError
from faasflow.scaffold.templates import DEFAULT_LANG, find_template

__all__ = [
    "CACHES",
    "FLOW_ENV_FILE",
    "NAME_PATTERN",
    "ExistingFilesError",
    "InvalidNameError",
    "Scaffold",
    "check_name",
    "flow_env_yaml",
    "scaffold",
    "stack_yaml",
]

FLOW_ENV_FILE = "flow.yml"
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""A DNS-1123 label: what Kubernetes (and so OpenFaaS) accepts as a function name."""
MAX_NAME = 63
CACHES = ("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache", ".pytest_cache")
"""Tool caches a checkout's template folder may hold; never copied."""
_SKIP = shutil.ignore_patterns(*CACHES)


class InvalidNameError(ConfigurationError):
    """The flow name is not a valid OpenFaaS function name."""


class ExistingFilesError(ConfigurationError):
    """Some of the files to write exist already; nothing was written."""


@dataclass(frozen=True)
class Scaffold:
    """What :func:`scaffold` wrote.

    Attributes:
        written: the files and folders created, in the order they were written.
        template: the template folder the handler was copied from.
        template_copied: whether ``template/<lang>/`` was added to the target folder.
    """

    written: list[Path]
    template: Path
    template_copied: bool


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid function name (lowercase letters, digits, ``-``).

    Raises:
        InvalidNameError: the message says what is wrong.
    """
    if not name or len(name) > MAX_NAME or not NAME_PATTERN.match(name):
        raise InvalidNameError(
            f"invalid flow name {name!r}: use at most {MAX_NAME} lowercase letters, digits "
            "and '-', starting and ending with a letter or digit (e.g. greet, order-flow)"
        )
    return name


def _quote(value: str) -> str:
    # A JSON string is a YAML double-quoted scalar; non-ASCII stays as is, because
    # escaped surrogate pairs would not survive a YAML reader.
    return json.dumps(value, ensure_ascii=False)


def stack_yaml(name: str, *, gateway: str, lang: str = DEFAULT_LANG,
               description: str | None = None) -> str:
    """The stack file ``NAME.yml`` for the flow ``name``."""
    desc = description if description is not None else f"{name}: a faasflow flow"
    return f"""\
version: 1.0
provider:
  name: openfaas
  gateway: {_quote(gateway)}
functions:
  {name}:
    lang: {lang}
    handler: ./{name}
    image: {name}:latest
    labels:
      # The faasflow dashboard lists the gateway's functions with this label.
      faas-flow: "1"
      # The default state store is a SQLite file inside the container: every replica
      # would have its own, so keep one until faasflow_state (in {FLOW_ENV_FILE}) names
      # a store all replicas share.
      com.openfaas.scale.max: "1"
    annotations:
      faas-flow-desc: {_quote(desc)}
    environment_file:
      - {FLOW_ENV_FILE}
    secrets:
      # Signs every hop; the function refuses to start without it:
      #   faas-cli secret create {HMAC_SECRET} --from-literal "$(openssl rand -hex 32)"
      - {HMAC_SECRET}
      # Optional: control routes (pause, resume, stop, redrive, state, result) then need
      # "Authorization: Bearer <token>".
      # - {CONTROL_TOKEN}
"""


def _default(key: str) -> str:
    """The default of setting ``key`` as flow.yml would spell it."""
    value = setting(key).default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def flow_env_yaml(name: str) -> str:
    """``flow.yml``: the flow server's environment (names from :mod:`faasflow.config`)."""
    return f"""\
# faasflow settings for the flow {_quote(name)}, read from the environment by the flow
# server (every setting is in docs/configuration.md, under these names or their
# FAASFLOW_ ones). Values are strings, as OpenFaaS passes them.
environment:
  # The flow's name on the gateway: each hop is posted to
  # {{gateway}}/async-function/{{flow_name}}/flow/{{id}}/forward. Never guessed from a Host
  # header. A second flow needs its own value.
  flow_name: {_quote(name)}
  # The gateway as the function reaches it: hops and apply("function") calls go there.
  gateway: {_quote(DEFAULT_GATEWAY)}
  # "true": new requests must carry X-Hub-Signature-256: sha256=<HMAC of the body> made
  # with the {HMAC_SECRET} secret.
  authenticate_request: "{_default("authenticate_request")}"
  # The state store URL. By default a SQLite file inside the container: one replica,
  # gone with the container (use "sqlite:////tmp/faasflow.db" with a read-only root
  # filesystem). Shared stores (Redis, etcd, PostgreSQL) are what lets a flow scale.
  # faasflow_state: "sqlite:////tmp/faasflow.db"
  # The data store URL (node outputs, context values); the state store's by default.
  # faasflow_data: ""
  # A NATS server (nats://nats.openfaas:4222): hops go through JetStream instead of the
  # gateway's async route, run by every replica and by any `faasflow worker` of the flow.
  # Needs a shared faasflow_state.
  # faasflow_nats: ""
  # The largest request or hop body accepted, in bytes.
  # max_body_size: "{_default("max_body_size")}"
  # Seconds after which a hop is stale and refused.
  # hop_max_age: "{_default("hop_max_age")}"
  # The longest X-Faas-Flow-Wait honoured, in seconds (keep the watchdog's and the
  # gateway's timeouts above it).
  # max_wait: "{_default("max_wait")}"
  # Tries to deliver a completion callback (X-Faas-Flow-Callback-Url).
  # callback_attempts: "{_default("callback_attempts")}"
  # OpenTelemetry: export spans over OTLP/HTTP to trace_server (host:port or URL;
  # default localhost:4318). Needs faasflow[tracing] in requirements.txt.
  # enable_tracing: "false"
  # trace_server: "otel-collector.openfaas:4318"
"""


def scaffold(
    name: str,
    directory: Path,
    *,
    gateway: str = "http://127.0.0.1:8080",
    lang: str = DEFAULT_LANG,
    description: str | None = None,
    template_dir: Path | None = None,
    copy_template: bool = True,
) -> Scaffold:
    """Write a new flow function ``name`` into ``directory``.

    Nothing is overwritten: if any file or folder to write exists, nothing is written.
    An existing ``template/<lang>/`` is kept as it is (it may be a pulled one).

    Args:
        name: the function's name (a DNS-1123 label).
        directory: where to write; created if missing.
        gateway: the gateway faas-cli talks to (the stack's ``provider.gateway``).
        lang: the template language.
        description: the ``faas-flow-desc`` annotation.
        template_dir: a template or templates folder to use instead of the packaged one.
        copy_template: add ``template/<lang>/`` to ``directory`` when it is missing.

    Raises:
        InvalidNameError: ``name`` is not a valid function name.
        TemplateNotFoundError: no template for ``lang``.
        ExistingFilesError: some target exists; the message lists them.
    """
    check_name(name)
    template = find_template(lang, template_dir)
    handler_dir = directory / name
    stack = directory / f"{name}.yml"
    env_file = directory / FLOW_ENV_FILE
    existing = [p for p in (handler_dir, stack, env_file) if p.exists() or p.is_symlink()]
    if existing:
        raise ExistingFilesError(
            "will not overwrite " + ", ".join(str(p) for p in existing)
            + ": choose another name or --dir, or remove them"
        )
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template / "function", handler_dir, ignore=_SKIP)
    written = sorted(p for p in handler_dir.rglob("*") if p.is_file())
    stack.write_text(stack_yaml(name, gateway=gateway, lang=lang, description=description),
                     encoding="utf-8")
    env_file.write_text(flow_env_yaml(name), encoding="utf-8")
    written += [stack, env_file]
    local_template = directory / "template" / lang
    copied = False
    if copy_template and not local_template.exists():
        shutil.copytree(template, local_template, ignore=_SKIP)
        written.append(local_template)
        copied = True
    return Scaffold(written=written, template=template, template_copied=copied)
