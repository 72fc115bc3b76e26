"""``scripts/test``, the README's test command, on a machine that lacks programs the tests
start: it installs them (as root, with apt-get) or stops before testing and says how.

The script runs with a ``PATH`` of stand-ins only, so that which programs exist, who
runs it and what apt-get does are the test's choice, and nothing is installed for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRESENT = ("dot", "redis-server", "nats-server", "openssl", "pg_ctl")
"""Programs the stand-in machine has; it lacks etcd and chromium."""


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def machine(tmp_path: Path, *, uid: int, apt_installs: bool) -> tuple[dict[str, str], Path]:
    """An environment whose PATH holds stand-ins: the programs of :data:`PRESENT`, ``id``
    answering ``uid``, an ``apt-get`` that logs its arguments (and, with
    ``apt_installs``, provides what it is asked for), and ruff, mypy and python that log
    that testing began."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    for tool in ("bash", "dirname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    for name in PRESENT:
        stub(bin_dir, name, "exit 0")
    stub(bin_dir, "id", f'echo {uid}')
    provides = {"etcd-server": "etcd", "chromium": "chromium"}
    install = "".join(
        f'[[ " $* " == *" {package} "* ]] && printf "#!/bin/bash\\n" > "{bin_dir}/{program}" '
        f'&& chmod +x "{bin_dir}/{program}"\n'
        for package, program in provides.items()
    ) if apt_installs else ""
    stub(bin_dir, "apt-get", f'echo "apt-get $*" >> "{log}"\n{install}exit 0')
    for tool in ("ruff", "mypy", "python"):
        stub(bin_dir, tool, f'echo "{tool} $*" >> "{log}"')
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}, log


def run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, str(ROOT / "scripts" / "test"), *args], env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )


def logged(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_as_root_it_installs_the_missing_packages_then_tests(tmp_path: Path) -> None:
    env, log = machine(tmp_path, uid=0, apt_installs=True)
    done = run_script(env, "-q", "-x")
    assert done.returncode == 0, done.stderr
    assert logged(log) == [
        "apt-get update -qq",
        "apt-get install -y -qq etcd-server chromium",
        "ruff check src tests examples benchmarks",
        "mypy ",
        "python -m pytest -q -x",
    ]
    assert "installing what the tests need: etcd-server chromium" in done.stderr


def test_as_root_it_stops_when_the_install_did_not_bring_them(tmp_path: Path) -> None:
    env, log = machine(tmp_path, uid=0, apt_installs=False)
    done = run_script(env)
    assert done.returncode == 3
    assert "still missing after apt-get install -y etcd-server chromium" in done.stderr
    assert not any(line.startswith(("ruff", "mypy", "python")) for line in logged(log))


def test_otherwise_it_says_what_to_run_and_tests_nothing(tmp_path: Path) -> None:
    env, log = machine(tmp_path, uid=1000, apt_installs=True)
    done = run_script(env)
    assert done.returncode == 3
    assert "    sudo apt-get install -y etcd-server chromium\n" in done.stderr
    assert logged(log) == []  # neither apt-get nor any test ran


def test_with_everything_present_it_only_tests(tmp_path: Path) -> None:
    env, log = machine(tmp_path, uid=1000, apt_installs=False)
    for name in ("etcd", "chromium"):
        stub(Path(env["PATH"]), name, "exit 0")
    done = run_script(env, "tests/cli")
    assert (done.returncode, done.stderr) == (0, "")
    assert logged(log) == [
        "ruff check src tests examples benchmarks", "mypy ", "python -m pytest tests/cli",
    ]


def test_ci_runs_the_readme_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -e '.[dev]' && scripts/test" in readme
    assert "-e '.[dev]'" in ci and "\nscripts/test" in ci
    assert "apt-get" not in ci  # one place installs the system programs: scripts/test
    assert os.access(ROOT / "scripts" / "test", os.X_OK)


def test_the_readme_says_which_extra_each_part_needs() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["optional-dependencies"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| part | extra |"):]
    table = table[:table.index("\n\n")]
    # Every extra that brings something is in the table (redis is an empty one kept
    # for old installs; dev is the test suite's).
    for extra, packages in extras.items():
        if extra != "dev" and packages:
            assert f"| `{extra}` |" in table, extra
