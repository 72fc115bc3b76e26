"""Where the engine keeps things: every state and data key is named here, nowhere else.

Per request ``R`` the state store holds the request record ``r/R`` and everything under
``r/R/`` (node records, join sets, branch sets, pending and held hops), plus the history
``h/R``; the data store holds ``R/…`` (inputs, outputs, context values) and the result
``result:R``. A finished request is cleaned by deleting the two ``R`` prefixes; what stays
(record, history, result) expires.

Per flow, three kinds of ordered index (see :mod:`faasflow.stores.base`) make every read
cost its answer: ``f:FLOW`` (every request on record, by creation time), ``s:FLOW/STATUS``
(the requests in one status, by creation time), ``due:FLOW`` (running requests, by their
last progress) and ``retire:FLOW`` (failed ones, by when they failed): what a sweep reads.
Entries of expired requests are pruned by the sweep.
"""

from __future__ import annotations


def request(rid: str) -> str:
    return f"r/{rid}"


def request_prefix(rid: str) -> str:
    return f"r/{rid}/"


def node_record(rid: str, path: str) -> str:
    """A node instance's record: running, done (with its output refs) or failed."""
    return f"r/{rid}/n/{path}"


def expand_record(rid: str, path: str) -> str:
    """A dynamic node's expansion: the branch keys it chose."""
    return f"r/{rid}/x/{path}"


def branch_chunk(rid: str, path: str, token: str, number: int) -> str:
    """Chunk ``number`` of the branches a wide dynamic node chose (its attempt's
    ``token``): a page of ``(key, input ref)`` pairs."""
    return f"r/{rid}/c/{path}/{token}/{number}"


def lease(rid: str, record_key: str) -> str:
    """The lease of the running step whose record is at ``record_key`` (kept alive by
    its process while the step runs; expires when that process dies)."""
    return f"r/{rid}/l/{record_key[len(request_prefix(rid)):]}"


def engine_alive(owner: str) -> str:
    """An engine's heartbeat: present while the engine named ``owner`` is running (it
    renews it; it expires when the process dies or loses the store)."""
    return f"alive:{owner}"


def join_set(rid: str, path: str) -> str:
    """The parents that have reached the node at ``path``."""
    return f"r/{rid}/j/{path}"


def branch_set(rid: str, path: str) -> str:
    """The branches of the dynamic node at ``path`` that have finished."""
    return f"r/{rid}/b/{path}"


def dag_end_set(rid: str, prefix: str) -> str:
    """The end nodes of the DAG instance at ``prefix`` that have finished."""
    return f"r/{rid}/e/{prefix}"


def pending(rid: str, step: str = "") -> str:
    """Hops announced and not finished, one key per step (``kind:path``): the request's
    frontier, resent on recovery."""
    return f"r/{rid}/p/{step}"


def held(rid: str, step: str = "") -> str:
    """Hops kept back while the request is paused or failed, one key per step."""
    return f"r/{rid}/h/{step}"


def seen_hop(rid: str, signature: str) -> str:
    """A hop of request ``rid`` that was run, by its signature: a second delivery of it
    is a replay. Under the request's prefix, so it goes when the request ends."""
    return f"r/{rid}/s/{signature}"


def history(rid: str) -> str:
    return f"h/{rid}"


def flow_index(flow: str) -> str:
    """Every request of a flow still on record, scored by creation time."""
    return f"f:{flow}"


def status_index(flow: str, status: str) -> str:
    """The requests of a flow in ``status``, scored by creation time."""
    return f"s:{flow}/{status}"


def due_index(flow: str) -> str:
    """The running requests of a flow, scored by when they last made progress or were
    last looked at: a sweep takes those older than its own resend or stall time."""
    return f"due:{flow}"


def retire_index(flow: str) -> str:
    """The failed requests of a flow, scored by when they failed: a sweep retires those
    older than its ``failed_ttl``."""
    return f"retire:{flow}"


def sweep_lease(flow: str) -> str:
    """Held by the one process that sweeps a flow now."""
    return f"sweep:{flow}"


def data_prefix(rid: str) -> str:
    return f"{rid}/"


def request_input(rid: str, token: str) -> str:
    """A request's input, under a token of the submission: a second submission under
    the same id (refused) never overwrites the first one's."""
    return f"{rid}/in/{token}"


def node_output(rid: str, path: str, token: str, child: str = "") -> str:
    return f"{rid}/o/{path}/{token}" + (f">{child}" if child else "")


def branch_input(rid: str, path: str, token: str, index: int) -> str:
    return f"{rid}/i/{path}/{token}/{index}"


def context_value(rid: str, key: str) -> str:
    return f"{rid}/ctx/{key}"


def result(rid: str) -> str:
    return f"result:{rid}"
