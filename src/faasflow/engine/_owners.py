"""Who runs what: the names of engines and processes, and the proof that one has ended.

An engine's owner name, ``host:pid:start:boot.N``, is what it writes into the claims it
makes and the requests it creates. A pid alone may later name another process (pids are
reused, zombies keep theirs), so the process's start time rides along, and a pid can
only ever prove an owner dead (:func:`owner_dead`), never alive: that is the leases' job
(:mod:`faasflow.engine._claims`).
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
from pathlib import Path

from faasflow.config import get_text

_HOST = get_text("host") or socket.gethostname()
"""The name this process goes by in claims: the host name unless ``FAASFLOW_HOST`` says
otherwise (two containers may share a host name; set it to the pod or node name)."""
_BOOT = secrets.token_hex(4)
_TOKENS = itertools.count(1)


def new_token() -> str:
    """A token unique to this execution (process boot + counter): output keys never clash."""
    return f"{_BOOT}{next(_TOKENS):x}"


def _process_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time)`` of process ``pid`` from ``/proc`` (Linux), ``None`` when
    there is no such process; raises ``OSError`` where ``/proc`` cannot tell."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        raise
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _own_start() -> int:
    try:
        stat = _process_stat(os.getpid())
    except (OSError, ValueError, IndexError):
        return 0
    return stat[1] if stat else 0


_START = _own_start()
"""This process's start time (clock ticks since boot; 0 where ``/proc`` is missing): with
the pid it names this process, where a pid alone may later name another."""
_ENGINES = itertools.count(1)


def process_owner() -> str:
    """``host:pid:start:boot.N``, unique to each engine of this process: who claims a
    node or a request. Two engines in one process are told apart, so neither takes the
    other's running step for its own finished one."""
    return f"{_HOST}:{os.getpid()}:{_START}:{_BOOT}.{next(_ENGINES)}"


def owner_dead(owner: str) -> bool:
    """Whether the process named ``owner`` has provably ended.

    Only a process on this host can be checked, and only death can be proven: its pid is
    gone, is a zombie nobody reaped yet, or names a process started at another time (the
    pid was reused). ``False`` means "not known to be dead", never "alive": whether a
    claim still holds is decided by its lease.
    """
    parts = owner.rsplit(":", 3)
    if len(parts) != 4 or parts[0] != _HOST or not parts[1].isdigit():
        return False
    _, pid_text, start_text, boot = parts
    pid = int(pid_text)
    if pid == os.getpid():
        return boot.partition(".")[0] != _BOOT
    try:
        stat = _process_stat(pid)
    except (OSError, ValueError, IndexError):
        # No /proc here: the pid can still be proven gone, not proven to be ours.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    if stat is None:
        return True
    state, start = stat
    return state in ("Z", "X") or (start_text.isdigit() and int(start_text) not in (0, start))
