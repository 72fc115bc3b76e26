"""The template's files: template.yml, the Dockerfile's ENV lines, index.py's helpers and
the example handler."""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path

import pytest
import yaml

import faasflow
from faasflow import config
from faasflow.engine.context import Context
from faasflow.engine.definition import build_flow
from faasflow.stores.memory import MemoryDataStore

from .conftest import TEMPLATE, template_files

ENV_PAIR = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"$')


def load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) per logical line, continuations joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in (TEMPLATE / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [(words[0].upper(), words[1] if len(words) > 1 else "")
            for words in (line.strip().split(None, 1) for line in logical)]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction != "ENV":
            continue
        # Every pair is key="value": the original's `ENV read_timeout: 120` made a
        # variable named "read_timeout:" that nothing read.
        for token in re.findall(r'\S+="[^"]*"|\S+', arguments):
            match = ENV_PAIR.match(token)
            assert match, f"malformed ENV pair {token!r} in: ENV {arguments}"
            env[match[1]] = match[2]
    return env


def seconds(value: str) -> float:
    assert re.fullmatch(r"\d+(\.\d+)?s", value), value
    return float(value[:-1])


def test_template_yml() -> None:
    data = yaml.safe_load((TEMPLATE / "template.yml").read_text())
    assert data["language"] == "faas-flow-python" == TEMPLATE.name
    assert data["fprocess"] == "python index.py"
    welcome = data["welcome_message"]
    for needed in (config.HMAC_SECRET, "flow.yml", "faas-flow", "faas-flow-desc",
                   "environment_file", "flow_name", "faasflow new"):
        assert needed in welcome


def test_layout() -> None:
    assert template_files() == ["Dockerfile", "function/handler.py", "function/requirements.txt",
                     "index.py", "template.yml"]
    requirements = (TEMPLATE / "function" / "requirements.txt").read_text().splitlines()
    assert all(not line.strip() or line.startswith("#") for line in requirements)


def test_dockerfile_env_lines_are_well_formed() -> None:
    env = dockerfile_env()
    assert env["mode"] == "http"
    assert env["upstream_url"] == "http://127.0.0.1:5000"
    assert env["fprocess"] == yaml.safe_load((TEMPLATE / "template.yml").read_text())[
        "fprocess"]
    assert env["ready_path"] == "/healthz"
    exec_timeout = seconds(env["exec_timeout"])
    # A request held by X-Faas-Flow-Wait must fit within the watchdog's timeouts.
    assert exec_timeout >= config.ServerConfig.max_wait
    assert seconds(env["read_timeout"]) >= exec_timeout
    assert seconds(env["write_timeout"]) >= exec_timeout
    assert not any(name.endswith(":") for name in env)


def test_dockerfile_stages() -> None:
    instructions = dockerfile_instructions()
    froms = [arguments for instruction, arguments in instructions if instruction == "FROM"]
    assert len(froms) == 2
    assert re.fullmatch(
        r"--platform=\$\{TARGETPLATFORM:-linux/amd64\} ghcr\.io/openfaas/of-watchdog:"
        r"0\.10\.\d+ AS watchdog", froms[0])
    assert froms[1].split()[1] == "python:3.11-slim"
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users[-1] == "app"  # the function never runs as root
    assert instructions[-1] == ("CMD", '["fwatchdog"]')
    args = {arguments.split("=", 1)[0] for instruction, arguments in instructions
            if instruction == "ARG"}
    assert "FAASFLOW_SPEC" in args
    text = (TEMPLATE / "Dockerfile").read_text()
    # A faasflow wheel or sdist in the handler folder wins over the PyPI release.
    assert "faasflow-*.whl" in text and "faasflow-*.tar.gz" in text
    assert 'FAASFLOW_SPEC="faasflow[server]"' in text


def test_index_port() -> None:
    index = load(TEMPLATE / "index.py", "template_index")
    assert index.listen_port({}) == index.DEFAULT_PORT == 5000
    # The port comes from the watchdog's own upstream_url, so the two always agree...
    assert index.listen_port({"upstream_url": "http://127.0.0.1:6001"}) == 6001
    assert index.listen_port({"upstream_url": "http://127.0.0.1"}) == 5000
    # ...unless upstream_port says otherwise; `port` belongs to the watchdog.
    assert index.listen_port({"upstream_port": "6002", "upstream_url": "http://x:1"}) == 6002
    assert index.listen_port({"port": "8080"}) == 5000
    for bad in ("0", "70000", "abc", "-1"):
        with pytest.raises(index.StartupError, match="upstream_port"):
            index.listen_port({"upstream_port": bad})
    with pytest.raises(index.StartupError, match="upstream_url"):
        index.listen_port({"upstream_url": "http://127.0.0.1:99999"})


def test_index_store_overrides() -> None:
    index = load(TEMPLATE / "index.py", "template_index_overrides")
    bare = types.SimpleNamespace(define=lambda flow, context: None)
    assert index.store_overrides(bare) == {}
    none = types.SimpleNamespace(state_store=lambda: None, data_store=lambda: None)
    assert index.store_overrides(none) == {}  # None keeps faasflow_state / faasflow_data
    store = MemoryDataStore()
    both = types.SimpleNamespace(state_store=lambda: "memory://", data_store=lambda: store)
    assert index.store_overrides(both) == {"state_store": "memory://", "data_store": store}
    with pytest.raises(index.StartupError, match="state_store must be a function"):
        index.store_overrides(types.SimpleNamespace(state_store="memory://"))


def test_handler_builds_a_valid_flow() -> None:
    handler = load(TEMPLATE / "function" / "handler.py", "template_handler")
    spec = build_flow(handler.define, Context(request_id="check", flow_name="greet"))
    assert spec.is_sync  # a one-node flow answers within the caller's request
    assert faasflow.run(handler.define, b"Adam", state_store="memory://") == b"Hello Adam"
    # The overrides are documented, not active: the configuration decides by default.
    assert not hasattr(handler, "state_store") and not hasattr(handler, "data_store")
    source = (TEMPLATE / "function" / "handler.py").read_text()
    assert "def state_store()" in source and "def data_store()" in source
