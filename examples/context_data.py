"""Use of context: per-request data shared between nodes, and the request's query.

The "Use of context" section of the original faas-flow README, spread over three nodes
so that the data really travels between hops (each node may run in another process)::

    n1: modify  -> context.set("commitsha", <sha1 of the input, 7 hex digits>)
     |
    n2: apply("myfunc", query={"auth-token": <the request's ?token=...>})
     |
    n3: modify -> context.get("commitsha"), the token, context.node

- ``context.set/get/delete`` store JSON-able values or bytes for the rest of the request;
  they block, so they are for ``def`` callables (which faasflow runs on worker threads).
  An ``async def`` callable uses ``await context.aset/aget/adelete`` instead.
- ``context.query`` holds the request's query parameters (name -> list of values);
  ``context.query_value(name, default)`` gives the first value. ``define`` is called
  for each request, so it can read the query too, e.g. to pass it on to a function.
- ``context.request_id``, ``context.flow_name``, ``context.node`` and ``context.state``
  say what the request is and where it stands.

``myfunc`` (``examples/functions/myfunc``) answers 401 without an ``auth-token``; the flow
passes ``anonymous`` when the request has no ``token``.

Run it::

    faasflow run examples/context_data.py --data "fix typo" --query token=s3cret
    # prints: fix typo (signed: s3cret) | commit b21efcb | token s3cret | node n3

or from Python::

    faasflow.run(define, b"fix typo", functions_dir="examples/functions", query="token=s3cret")
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs

from faasflow import Context, Workflow

INPUTS: list[tuple[bytes, str]] = [
    (b"fix typo", "token=s3cret"),
    (b"fix typo", ""),
    (b"", "token=a&token=b"),
    ("répare l'accent ✓".encode(), "token=%C3%A9t%C3%A9"),
    (b"refactor: " + b"long commit message " * 200, "token=t0k3n&other=1"),
]


def short_sha(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:7]


def define(flow: Workflow, context: Context) -> None:
    token = context.query_value("token", "anonymous")

    def remember_commit(data: bytes) -> bytes:
        # A plain def runs on a worker thread, so the blocking context.set is fine here.
        # In an ``async def`` callable it would be ``await context.aset(...)``.
        context.set("commitsha", short_sha(data))
        return data

    def annotate(data: bytes) -> bytes:
        # Set in n1, read in n3: context data outlives the hop that wrote it.
        commitsha = context.get("commitsha")
        return data + f" | commit {commitsha} | token {token} | node {context.node}".encode()

    dag = flow.dag()
    dag.node("n1").modify(remember_commit)
    dag.node("n2").apply("myfunc", query={"auth-token": token})  # pass the query on
    dag.node("n3").modify(annotate)
    dag.edge("n1", "n2")
    dag.edge("n2", "n3")


def expected(data: bytes, query: str = "") -> bytes:
    """What the flow answers, computed without faasflow."""
    token = parse_qs(query).get("token", ["anonymous"])[0]
    signed = data.decode("utf-8") + f" (signed: {token})"  # myfunc
    return f"{signed} | commit {short_sha(data)} | token {token} | node n3".encode()
