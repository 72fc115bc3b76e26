"""Points in a hop's life where a fault test holds a process, to strike at an exact phase.

Off unless ``FAASFLOW_FAILPOINTS`` names a folder when the process starts; then each
point costs one attribute check. The phases of a hop, in order:

* ``claim``: the step's record is about to be claimed;
* ``call``: claimed, the node's work (its function calls) is about to run;
* ``settle``: the work is done, its output stored; the done record is about to be
  committed;
* ``announce``: committed; the successors are about to be announced;
* ``ack``: the hop's handler returned; the transport is about to acknowledge it.

A test arms a point by writing the file ``POINT.arm`` in that folder, holding a node
path. The first hop of that node to reach the point takes the arm (an atomic rename:
one process, one hop), writes ``POINT.hit`` (JSON: ``pid`` and ``hop``, the hop's wire
form) and waits until the file ``POINT.go`` exists: meanwhile the test brings its fault
about (kills the process, stops the store, delivers the hop again).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson

FOLDER = os.environ.get("FAASFLOW_FAILPOINTS") or None
"""Where armed points are found; ``None`` (the default) turns every point off."""

PHASES = ("claim", "call", "settle", "announce", "ack")


async def reach(point: str, path: str, hop: str) -> None:
    """Stop here if ``point`` is armed for the node at ``path``, until the test says go;
    ``hop`` is the hop's wire form."""
    assert FOLDER is not None
    folder = Path(FOLDER)
    arm = folder / f"{point}.arm"
    try:
        if arm.read_text().strip() != path:
            return
        arm.rename(folder / f"{point}.taken.{os.getpid()}")
    except FileNotFoundError:
        return  # not armed, or another hop took the arm first
    temp = folder / f"{point}.hit.{os.getpid()}"
    temp.write_bytes(orjson.dumps({"pid": os.getpid(), "hop": hop}))
    temp.rename(folder / f"{point}.hit")
    go = folder / f"{point}.go"
    while not go.exists():  # noqa: ASYNC110 - another process makes the file
        await asyncio.sleep(0.01)
