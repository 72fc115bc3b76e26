"""Who owns a claim: a pid proves a process dead, never alive (zombies, reused pids)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faasflow.engine._owners import owner_dead, process_owner

sys.path.insert(0, str(Path(__file__).parents[1]))
from workers.support import start_at_pid

OWNER_OF_CHILD = (
    "from faasflow.engine._owners import process_owner; import sys, time; "
    "print(process_owner(), flush=True); time.sleep(600)"
)


@pytest.fixture
def child() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A live process of this host and the owner name it gives itself."""
    process = subprocess.Popen([sys.executable, "-c", OWNER_OF_CHILD], stdout=subprocess.PIPE)
    assert process.stdout is not None
    owner = process.stdout.readline().decode().strip()
    yield process, owner
    process.kill()
    process.wait()
    process.stdout.close()


def _state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


def test_this_process_and_a_live_one_are_not_dead(
    child: tuple[subprocess.Popen[bytes], str],
) -> None:
    assert not owner_dead(process_owner())
    assert not owner_dead(child[1])


def test_a_zombie_is_dead(child: tuple[subprocess.Popen[bytes], str]) -> None:
    process, owner = child
    os.kill(process.pid, signal.SIGKILL)  # not waited for: a zombie until reaped
    deadline = time.monotonic() + 10
    while _state(process.pid) != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert owner_dead(owner)


def test_a_reaped_process_is_dead(child: tuple[subprocess.Popen[bytes], str]) -> None:
    process, owner = child
    process.kill()
    process.wait()
    assert owner_dead(owner)


def test_a_pid_given_to_another_process_does_not_keep_the_owner_alive(
    child: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, owner = child
    process.kill()
    process.wait()
    stranger = start_at_pid(process.pid, ["sleep", "600"])
    try:
        assert stranger.pid == process.pid
        assert owner_dead(owner)
    finally:
        stranger.kill()
        stranger.wait()


def test_a_process_of_another_host_or_an_unknown_name_is_not_known_dead() -> None:
    host, pid, start, boot = process_owner().rsplit(":", 3)
    assert not owner_dead(f"elsewhere:{pid}:{start}:{boot}")
    assert not owner_dead(f"elsewhere:999999:0:{boot}")
    assert not owner_dead("")
    assert not owner_dead("not an owner")
    # An earlier boot of this very pid (the process restarted under the same pid).
    assert owner_dead(f"{host}:{pid}:{start}:00000000.1")
