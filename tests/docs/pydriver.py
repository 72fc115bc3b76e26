"""Runs a docs page's Python blocks, in one namespace, as ``snippets.PythonSession`` sends
them: one JSON line per block on stdin (``file``, ``line``, ``code``), one JSON line per
result (``ok``, ``error``) on the file descriptor given as the only argument.

A block is compiled with its page's line numbers, so tracebacks point into the page, and
may ``await`` at top level: it then runs on one event loop kept for the whole page.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import sys
import traceback
from typing import Any


def main() -> None:
    results = os.fdopen(int(sys.argv[1]), "w")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    for message in sys.stdin:
        block = json.loads(message)
        # Blank lines up to the fence, so the block's line numbers are the page's.
        source = "\n" * block["line"] + block["code"]
        try:
            code = compile(source, block["file"], "exec",
                           flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            outcome = eval(code, namespace)
            if inspect.iscoroutine(outcome):
                loop.run_until_complete(outcome)
            reply: dict[str, Any] = {"ok": True}
        except BaseException:  # SystemExit too: a block must not end the page
            reply = {"ok": False, "error": traceback.format_exc()}
        sys.stdout.flush()
        sys.stderr.flush()
        results.write(json.dumps(reply) + "\n")
        results.flush()
    loop.close()


if __name__ == "__main__":
    main()
