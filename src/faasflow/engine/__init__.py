"""The engine: a pure planner and an executor that runs hops through three ports.

The runtimes (:mod:`faasflow.runtime`) compose it; what they and the other packages
use of it is here, and in :mod:`faasflow.engine.views` (the public views of requests),
:mod:`faasflow.engine.observers` (the observer interface) and
:mod:`faasflow.engine.executor`. Modules whose names start with ``_`` are internal.
"""

from faasflow.engine._records import HistoryEntry, RequestRecord, StepRecord

__all__ = ["HistoryEntry", "RequestRecord", "StepRecord"]
