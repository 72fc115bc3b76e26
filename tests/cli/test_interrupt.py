"""Ctrl-C during ``faasflow run``, and ``faasflow recover``: real processes, a SQLite store.

The flow's node ``b`` is a synchronous callable that waits for a gate file, so Ctrl-C
lands while a worker thread runs user code that nothing can cancel. Every node appends
its name to ``calls.log``, so a test can count executions across processes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

FLOW = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    WORK = Path(os.environ["FLOW_WORK"])


    def mark(name):
        def run(data):
            with open(WORK / "calls.log", "a") as log:
                log.write(name + "\\n")
            return data + b"|" + name.encode()

        return run


    def gated(data):
        out = mark("b")(data)
        (WORK / "entered").touch()
        while not (WORK / "gate").exists():
            time.sleep(0.02)
        if (WORK / "gate").read_text() == "fail":
            raise ValueError("gate says no")
        return out


    def define(flow, context):
        dag = flow.dag()
        dag.node("a").modify(mark("a"))
        dag.node("b").modify(gated)
        dag.node("c").modify(mark("c"))
        dag.edge("a", "b")
        dag.edge("b", "c")
    """
)

INTERRUPTED = re.compile(
    r"^interrupted: request (\S+) is still running; continue it with "
    r"`faasflow recover (.+)`, see it with `faasflow status \1(.*)`$",
    re.MULTILINE,
)


class Work:
    """The flow file, its store and its marker files in one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.flow = root / "flow.py"
        self.flow.write_text(FLOW)
        self.store = f"sqlite:///{root / 'state.db'}"
        self.env = {**os.environ, "FLOW_WORK": str(root)}

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "faasflow", *args], env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def faasflow(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "faasflow", *args], env=self.env, capture_output=True,
            timeout=60, check=False,
        )  # fmt: skip

    def calls(self) -> Counter[str]:
        return Counter((self.root / "calls.log").read_text().split())

    def wait_entered(self, process: subprocess.Popen[bytes]) -> None:
        """Until node ``b`` runs (its thread is then stuck at the gate)."""
        deadline = time.monotonic() + 30
        while not (self.root / "entered").exists():
            if process.poll() is not None:
                raise AssertionError(f"faasflow run exited early: {process.communicate()}")
            assert time.monotonic() < deadline, "node b never started"
            time.sleep(0.01)

    def interrupt(self, process: subprocess.Popen[bytes], times: int = 1) -> tuple[int, str]:
        """Ctrl-C (``times`` in a row); the exit status and stderr, within a few seconds."""
        for _ in range(times):
            process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise AssertionError("faasflow run did not exit within 10 s of Ctrl-C") from None
        return process.returncode, err.decode()


@pytest.fixture
def work(tmp_path: Path) -> Work:
    return Work(tmp_path)


def interrupted_run(work: Work, times: int = 1) -> str:
    """``faasflow run`` interrupted in node ``b``; returns the request id it printed."""
    process = work.start("run", str(work.flow), "--state", work.store, "--data", "x")
    try:
        work.wait_entered(process)
        status, err = work.interrupt(process, times)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert status == 130, err
    assert "Traceback" not in err, err
    found = INTERRUPTED.search(err)
    assert found is not None, err
    rid, recover, status_options = found.groups()
    # The commands it prints are the ones to type: the same flow file and store.
    assert recover == f"{work.flow} --state {work.store}"
    assert status_options == f" --state {work.store}"
    return rid


def test_ctrl_c_names_the_request_and_recover_finishes_it(work: Work) -> None:
    rid = interrupted_run(work)
    shown = work.faasflow("status", rid, "--state", work.store)
    assert shown.returncode == 0, shown.stderr
    assert "running" in shown.stdout.decode()

    (work.root / "gate").write_text("open")
    done = work.faasflow("recover", str(work.flow), "--state", work.store)
    assert (done.returncode, done.stdout.decode(), done.stderr) == (0, f"{rid} succeeded\n", b"")
    result = work.faasflow("result", rid, "--state", work.store)
    assert (result.returncode, result.stdout) == (0, b"x|a|b|c")
    # b ran again: the first process was stopped in it, before its output was stored.
    assert work.calls() == {"a": 1, "b": 2, "c": 1}

    again = work.faasflow("recover", str(work.flow), "--state", work.store)
    assert (again.returncode, again.stdout) == (0, b"")
    assert again.stderr.decode() == "nothing to recover: no unfinished request of flow 'flow' " \
        "was left by a process that ended\n"


def test_a_second_ctrl_c_exits_at_once_without_a_traceback(work: Work) -> None:
    interrupted_run(work, times=2)


def test_recover_reports_a_failed_request(work: Work) -> None:
    rid = interrupted_run(work)
    (work.root / "gate").write_text("fail")
    done = work.faasflow("recover", str(work.flow), "--state", work.store)
    assert done.returncode == 1
    assert done.stdout.decode() == f"{rid} failed\n"
    err = done.stderr.decode()
    assert err.startswith(f"error: request {rid} failed at node 'b' (attempt 2): "), err
    assert "gate says no" in err
    assert work.calls() == {"a": 1, "b": 2}


def test_ctrl_c_during_recover_leaves_the_requests_to_the_next_one(work: Work) -> None:
    rid = interrupted_run(work)
    (work.root / "entered").unlink()
    process = work.start("recover", str(work.flow), "--state", work.store)
    try:
        work.wait_entered(process)  # b runs again, and is stuck at the gate again
        status, err = work.interrupt(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert status == 130, err
    assert "Traceback" not in err, err
    assert err == (
        f"interrupted: request(s) {rid} still running; continue with "
        f"`faasflow recover {work.flow} --state {work.store}`\n"
    )
    (work.root / "gate").write_text("open")
    done = work.faasflow("recover", str(work.flow), "--state", work.store)
    assert (done.returncode, done.stdout.decode()) == (0, f"{rid} succeeded\n")
    assert work.calls() == {"a": 1, "b": 3, "c": 1}
