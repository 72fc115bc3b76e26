"""The Celery app and tasks of the Celery side of ``benchmarks/distributed.py``.

The workers import this module (``celery -A celery_tasks worker``) and so does the
client in the harness's process. The broker and the result backend are the URL in
``BENCH_CELERY_REDIS_URL`` (the side's private ``redis-server``); the other knobs come
from ``BENCH_CELERY_*`` variables too, so that the workers and the client agree without
a config file. :func:`configure` sets them in the client.

The configuration is what a user who wants speed without losing work would choose:

* ``task_acks_late``: a message is acknowledged after its task has run, so a worker that
  dies mid-task leaves it to be delivered again (at-least-once). This is the durable
  equivalent of faasflow acknowledging a JetStream message after the hop is settled.
  ``task_reject_on_worker_lost`` goes with it: without it a prefork child killed mid-task
  would have its message acknowledged anyway, and the work would be lost.
* ``worker_prefetch_multiplier`` (``BENCH_CELERY_PREFETCH``, 4 unless set, Celery's
  default): with late acks, prefetched messages stay unacknowledged in Redis and come
  back if the worker dies, so prefetching costs no durability; it saves broker round
  trips on short tasks.
* Results in Redis (every task's result stored, as Celery does by default: a chord
  needs its members' results, and it is the counterpart of faasflow's per-node state
  write); ordered chord joins (the Redis backend's default).
* JSON (``BENCH_CELERY_SERIALIZER``; Celery's default and safe; kombu carries ``bytes``
  as base64), or ``msgpack``.
* ``worker_disable_rate_limits``: no task has a rate limit, so the worker can skip the
  bookkeeping (Celery's "Optimizing" guide).
* The worker's command line (in ``celery_side.py``) adds ``--without-gossip
  --without-mingle --without-heartbeat``: cluster chatter that no benchmark needs and
  that has nothing to do with the durability of tasks.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task, chord, group
from distributed_common import foreach_items, step

URL_ENV = "BENCH_CELERY_REDIS_URL"
PREFETCH_ENV = "BENCH_CELERY_PREFETCH"
SERIALIZER_ENV = "BENCH_CELERY_SERIALIZER"

app = Celery("faasflow_bench")


def settings(url: str, prefetch: int, serializer: str) -> dict[str, Any]:
    """The configuration, for the workers and the client alike."""
    return {
        "broker_url": url,
        "result_backend": url,
        "broker_connection_retry_on_startup": True,
        "task_serializer": serializer,
        "result_serializer": serializer,
        "accept_content": [serializer],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": prefetch,
        "worker_disable_rate_limits": True,
    }


def configure(url: str, prefetch: int, serializer: str) -> None:
    """Point the app at ``url`` with these knobs (the client's side of the env vars)."""
    app.conf.update(settings(url, prefetch, serializer))


if URL_ENV in os.environ:
    configure(
        os.environ[URL_ENV],
        int(os.environ.get(PREFETCH_ENV, "4")),
        os.environ.get(SERIALIZER_ENV, "json"),
    )


@app.task(name="bench.work")
def work(data: bytes) -> bytes:
    """A node: the shared body."""
    return step(data)


@app.task(name="bench.aggregate")
def aggregate(results: list[bytes]) -> bytes:
    """A chord's body: the members' outputs, concatenated in header order."""
    return b"".join(results)


@app.task(name="bench.split")
def split(data: bytes, width: int) -> list[bytes]:
    """The foreach's split step: its items, in key order."""
    return list(foreach_items(data, width).values())


@app.task(bind=True, name="bench.expand")
def expand(self: Task, items: list[bytes]) -> Any:
    """Celery's dynamic map: replace this task by a chord built from its input. The
    chord's body takes this task's id, so the caller's result gets the join."""
    return self.replace(chord(group(work.s(item) for item in items), aggregate.s()))


@app.task(name="bench.ping")
def ping() -> str:
    """Proof that a worker consumes from the queue."""
    return "pong"
