"""The façades users hold: :class:`~faasflow.runtime.engine.Engine` (embedded) and,
with the ``nats`` extra, :class:`~faasflow.runtime.workers.Worker` and
:class:`~faasflow.runtime.workers.Client` (also importable as :mod:`faasflow.workers`).

Each is composed of the engine's parts (:mod:`faasflow.runtime._core`); none subclasses
another.
"""

from faasflow.runtime._core import EngineOptions, Options
from faasflow.runtime._requests import (
    RequestsApi,
    Submitting,
    check_request_id,
    new_request_id,
)
from faasflow.runtime._runner import Runner
from faasflow.runtime.engine import Engine, arun, run

__all__ = [
    "Engine",
    "EngineOptions",
    "Options",
    "RequestsApi",
    "Runner",
    "Submitting",
    "arun",
    "check_request_id",
    "new_request_id",
    "run",
]
