"""Without the optional client libraries (the extras), faasflow still runs, and the
commands that need one say which extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A child process in which importing the extras' libraries fails, as on a bare install.
WITHOUT_EXTRAS = """
import sys
for name in ("nats", "asyncpg", "botocore"):
    sys.modules[name] = None  # import raises ModuleNotFoundError
from faasflow.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def faasflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )


def test_run_needs_no_extra() -> None:
    done = faasflow("run", "examples/greet.py", "--data", "Adam", "--state", "memory://")
    assert (done.returncode, done.stdout) == (0, "Hello Adam")


def test_a_worker_without_nats_py_names_the_extra() -> None:
    done = faasflow("worker", "examples/greet.py", "--nats", "nats://127.0.0.1:1",
                    "--state", "memory://")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: workers need the nats package: pip install 'faasflow[nats]'"
    )


def test_a_store_without_its_client_names_the_extra() -> None:
    for url, extra in (("postgresql://u@127.0.0.1/db", "postgres"),):
        done = faasflow("run", "examples/greet.py", "--data", "x", "--state", url)
        assert done.returncode == 2
        assert f"pip install 'faasflow[{extra}]'" in done.stderr
    done = faasflow("run", "examples/greet.py", "--data", "x", "--state", "memory://",
                    "--data-store", "s3://bucket/p?endpoint=http://127.0.0.1:1")
    assert done.returncode == 2
    assert "pip install 'faasflow[s3]'" in done.stderr
