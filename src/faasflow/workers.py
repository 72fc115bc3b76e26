"""Workers on NATS JetStream and a client for them (the ``nats`` extra).

The documented import path of :class:`~faasflow.runtime.workers.Worker` and
:class:`~faasflow.runtime.workers.Client`; see :mod:`faasflow.runtime.workers`.
"""

from faasflow.runtime.workers import Client, Worker

__all__ = ["Client", "Worker"]
