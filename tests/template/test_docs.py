"""docs/openfaas.md documents every setting faasflow.config reads, and the template's."""

from __future__ import annotations

import re

from faasflow import config

from .conftest import DOCS, SECRET_NAMES, TEMPLATE
from .test_template import dockerfile_env


def documented() -> str:
    return DOCS.read_text(encoding="utf-8")


def test_every_config_variable_is_documented(env_names: set[str]) -> None:
    text = documented()
    missing = sorted(name for name in env_names | SECRET_NAMES if f"`{name}`" not in text)
    assert not missing, f"docs/openfaas.md does not mention {missing}"


def test_config_docstring_table_matches() -> None:
    # config.py's own table and the docs' table name the same settings.
    assert config.__doc__ is not None
    rows = [line for line in config.__doc__.splitlines() if line.startswith("| ``")]
    names = {name for row in rows for name in re.findall(r"``([^`]+)``", row.split("|")[1])}
    text = documented()
    assert names and all(f"`{name}`" in text for name in names), names


def test_template_settings_are_documented() -> None:
    text = documented()
    for name, value in dockerfile_env().items():
        if name.startswith("PYTHON") or name.startswith("PIP_"):
            continue  # Python's and pip's own switches
        assert f"`{name}`" in text, name
        assert f"`{value}`" in text, (name, value)
    assert "`upstream_port`" in text
    assert "`FAASFLOW_SPEC`" in text and "`ADDITIONAL_PACKAGE`" in text
    assert f"`{TEMPLATE.name}`" in text
    for header in ("X-Faas-Flow-Reqid", "X-Faas-Flow-Wait", "X-Faas-Flow-Callback-Url",
                   "X-Hub-Signature-256", "X-Faas-Flow-Signature"):
        assert f"`{header}" in text, header
