"""What the worker tests share: waiting with a deadline, and the environment of a
worker process that claims its own host name."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import faasflow

_SRC = str(Path(faasflow.__file__).resolve().parents[1])


async def until(check: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``check`` until it is true; fail the test when ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def process_env(host: str) -> dict[str, str]:
    """The environment of a faasflow process that goes by ``host`` in its claims, as if
    it ran on another machine."""
    return dict(
        os.environ,
        FAASFLOW_HOST=host,
        PYTHONPATH=os.pathsep.join([_SRC, os.environ.get("PYTHONPATH", "")]),
    )
