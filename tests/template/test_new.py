"""``faasflow new``: the files faas-cli new would write, with faasflow's parts filled in."""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from faasflow import config
from faasflow.cli.main import main
from faasflow.scaffold import templates
from faasflow.scaffold.files import CACHES

from .conftest import TEMPLATE, clean_env, template_files

# Settings config.py reads that a flow.yml has no business setting: where secrets are
# mounted (OpenFaaS decides) and the secrets' environment fallbacks (secrets are secrets).
NOT_IN_FLOW_YML = {
    "secret_mount_path", "faasflow_hmac_secret", "faasflow_control_token",
    # OpenTelemetry's own variables, documented in docs/tracing.md
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
}


def new(tmp_path: Path, *args: str) -> int:
    return main(["new", "--dir", str(tmp_path), *args])


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def commented_keys(path: Path) -> set[str]:
    """The keys of commented-out settings (``  # name: "value"``)."""
    return set(re.findall(r"^\s+# ([a-z_]+): ", path.read_text(), re.MULTILINE))


def written(tmp_path: Path) -> list[str]:
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                  if p.is_file())


def test_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new(tmp_path, "greet") == 0
    handler = tmp_path / "greet"
    # faas-cli new copies the template's function/ folder as the handler folder.
    assert sorted(p.name for p in handler.iterdir()) == ["handler.py", "requirements.txt"]
    for name in ("handler.py", "requirements.txt"):
        assert filecmp.cmp(handler / name, TEMPLATE / "function" / name, shallow=False)
    # The template itself, so that faas-cli build needs no template pull.
    copy = tmp_path / "template" / "faas-flow-python"
    for name in template_files():
        assert filecmp.cmp(copy / name, TEMPLATE / name, shallow=False), name
    assert written(tmp_path) == sorted(
        ["greet/handler.py", "greet/requirements.txt", "greet.yml", "flow.yml"]
        + [f"template/faas-flow-python/{name}" for name in template_files()]
    )
    out = capsys.readouterr().out
    assert "created greet/handler.py" in out and "created flow.yml" in out
    assert f"faas-cli secret create {config.HMAC_SECRET}" in out


def test_stack_file(tmp_path: Path) -> None:
    assert new(tmp_path, "greet", "--gateway", "http://gw.example:8080",
               "--description", 'Say "hello": ünïcode ✓') == 0
    stack = load_yaml(tmp_path / "greet.yml")
    assert stack["version"] == 1.0
    assert stack["provider"] == {"name": "openfaas", "gateway": "http://gw.example:8080"}
    assert list(stack["functions"]) == ["greet"]
    function = stack["functions"]["greet"]
    assert function["lang"] == "faas-flow-python"
    assert function["handler"] == "./greet"
    assert function["image"] == "greet:latest"
    # The label is the string "1" (OpenFaaS labels are strings); the dashboard finds
    # flows by it.
    assert function["labels"]["faas-flow"] == "1"
    # One replica while the state store is the container's SQLite file.
    assert function["labels"]["com.openfaas.scale.max"] == "1"
    assert function["annotations"] == {"faas-flow-desc": 'Say "hello": ünïcode ✓'}
    assert function["environment_file"] == ["flow.yml"]
    assert function["secrets"] == [config.HMAC_SECRET]
    assert config.CONTROL_TOKEN in (tmp_path / "greet.yml").read_text()  # as a hint


def test_flow_yml_uses_the_names_config_reads(tmp_path: Path, env_names: set[str]) -> None:
    assert new(tmp_path, "order-flow") == 0
    path = tmp_path / "flow.yml"
    environment = load_yaml(path)["environment"]
    assert environment["flow_name"] == "order-flow"
    assert environment["gateway"] == config.DEFAULT_GATEWAY
    assert all(isinstance(v, str) for v in environment.values())
    # One name per setting the flow server reads: the template's (its other names are
    # aliases, docs/configuration.md).
    assert env_names <= config.variables()
    settable = {s.template_name for s in config.SETTINGS if s.server} - NOT_IN_FLOW_YML
    assert set(environment) <= settable
    assert commented_keys(path) <= settable
    # Every setting config.py reads is there, set or commented with its default.
    assert set(environment) | commented_keys(path) == settable
    # And config.py accepts the file as it is.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / config.HMAC_SECRET).write_text("k")
    read = config.server_config({**environment, "secret_mount_path": str(secrets)})
    assert (read.flow_name, read.gateway, read.hmac_secret) == (
        "order-flow", config.DEFAULT_GATEWAY, b"k")
    # The commented defaults are config.py's defaults.
    for key, value in re.findall(r'^\s+# ([a-z_]+): "([^"]+)"', path.read_text(),
                                 re.MULTILINE):
        if key in ("faasflow_state", "faasflow_data"):
            continue  # examples, not defaults
        uncommented = config.server_config(
            {**environment, key: value, "secret_mount_path": str(secrets)})
        assert uncommented == read, key


def test_default_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENFAAS_URL", raising=False)
    assert new(tmp_path / "a", "greet") == 0
    assert load_yaml(tmp_path / "a" / "greet.yml")["provider"]["gateway"] == (
        "http://127.0.0.1:8080")
    monkeypatch.setenv("OPENFAAS_URL", "gateway.example.com:31112")
    assert new(tmp_path / "b", "greet") == 0
    assert load_yaml(tmp_path / "b" / "greet.yml")["provider"]["gateway"] == (
        "http://gateway.example.com:31112")


@pytest.mark.parametrize("existing", ["greet/", "greet.yml", "flow.yml"])
def test_refuses_to_overwrite(tmp_path: Path, existing: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / existing
    if existing.endswith("/"):
        target.mkdir()
    else:
        target.write_text("mine\n")
    before = written(tmp_path)
    assert new(tmp_path, "greet") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: will not overwrite ")
    assert str(target).rstrip("/") in err
    assert written(tmp_path) == before  # nothing at all was written
    if not existing.endswith("/"):
        assert target.read_text() == "mine\n"


def test_keeps_an_existing_template(tmp_path: Path) -> None:
    pulled = tmp_path / "template" / "faas-flow-python"
    pulled.mkdir(parents=True)
    (pulled / "template.yml").write_text("language: faas-flow-python\n")
    assert new(tmp_path, "greet") == 0
    assert [p.name for p in pulled.iterdir()] == ["template.yml"]
    assert (pulled / "template.yml").read_text() == "language: faas-flow-python\n"
    assert new(tmp_path / "other", "greet", "--no-template-copy") == 0
    assert not (tmp_path / "other" / "template").exists()


@pytest.mark.parametrize(
    "name", ["Greet", "greet_flow", "-greet", "greet-", "", "a" * 64, "gr eet", "../x",
             "greet.v2", "grüß"],
)
def test_bad_names(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert new(tmp_path, "--", name) == 2  # "--": argparse would take "-greet" for an option
    assert capsys.readouterr().err.startswith(f"error: invalid flow name {name!r}")
    assert not tmp_path.exists() or written(tmp_path) == []


@pytest.mark.parametrize("name", ["a", "a" * 63, "order-flow-2", "0x"])
def test_good_names(tmp_path: Path, name: str) -> None:
    assert new(tmp_path, name) == 0
    assert (tmp_path / name / "handler.py").is_file()
    assert load_yaml(tmp_path / f"{name}.yml")["functions"][name]["handler"] == f"./{name}"


def test_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new(tmp_path, "greet", "--lang", "python3-http") == 2
    err = capsys.readouterr().err
    assert "no template 'python3-http'" in err and "faas-flow-python" in err
    assert new(tmp_path, "greet", "--gateway", "ftp://gw") == 2
    assert "--gateway" in capsys.readouterr().err
    assert not tmp_path.exists() or written(tmp_path) == []


def test_explicit_template_folder(tmp_path: Path) -> None:
    # The ./template folder faas-cli template pull writes, with a changed handler.
    pulled = tmp_path / "pulled" / "template"
    shutil.copytree(TEMPLATE, pulled / "faas-flow-python", ignore=shutil.ignore_patterns(*CACHES))
    (pulled / "faas-flow-python" / "function" / "handler.py").write_text("# pulled\n")
    out = tmp_path / "out"
    assert new(out, "greet", "--template", str(pulled)) == 0
    assert (out / "greet" / "handler.py").read_text() == "# pulled\n"
    # A template folder itself works too.
    assert new(tmp_path / "out2", "greet", "--template",
               str(pulled / "faas-flow-python")) == 0
    assert (tmp_path / "out2" / "greet" / "handler.py").read_text() == "# pulled\n"


def test_packaged_template_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An installed wheel carries the template as faasflow/template_data/<lang>/.
    package = tmp_path / "site-packages" / "faasflow"
    shutil.copytree(TEMPLATE, package / "template_data" / "faas-flow-python",
                    ignore=shutil.ignore_patterns(*CACHES))
    monkeypatch.setattr(templates, "_PACKAGE", package)
    assert templates.find_template() == package / "template_data" / "faas-flow-python"


def test_source_tree_template_is_the_only_copy() -> None:
    # From a checkout or an editable install the repository's template/ is used; the
    # package has no copy of its own (a wheel gets one at build time).
    assert templates.find_template() == TEMPLATE
    assert not (Path(templates.__file__).parents[1] / "template_data").exists()


def test_as_a_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "faasflow", "new", "greet", "--dir", str(tmp_path)],
        capture_output=True, timeout=60, check=False, env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "greet.yml").is_file()
    again = subprocess.run(
        [sys.executable, "-m", "faasflow", "new", "greet", "--dir", str(tmp_path)],
        capture_output=True, timeout=60, check=False, env=clean_env(),
    )
    assert again.returncode == 2
    assert again.stderr.decode().startswith("error: will not overwrite")
