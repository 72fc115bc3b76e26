"""The docs name every setting the flow server reads (docs/configuration.md, the one
table) and the template's own settings (docs/openfaas.md)."""

from __future__ import annotations

from .conftest import DOCS, ROOT, SECRET_NAMES, TEMPLATE
from .test_template import dockerfile_env

CONFIGURATION = ROOT / "docs" / "configuration.md"


def documented() -> str:
    return DOCS.read_text(encoding="utf-8")


def test_every_config_variable_is_documented(env_names: set[str]) -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    missing = sorted(name for name in env_names | SECRET_NAMES if f"`{name}`" not in text)
    assert not missing, f"docs/configuration.md does not mention {missing}"


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
