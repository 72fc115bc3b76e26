"""faasflow: function composition for FaaS platforms.

Write ``define(flow, context)`` to compose functions into a DAG; run it embedded with
:func:`run` / :func:`arun` / :class:`Engine`, as an OpenFaaS function, or on workers.
"""

from faasflow._version import __version__ as __version__
from faasflow.dsl.graph import Dag, Node, Workflow
from faasflow.dsl.options import Retry
from faasflow.engine.context import Context
from faasflow.engine.views import FailureInfo, RequestInfo, RequestPage
from faasflow.errors import (
    ConfigurationError,
    DuplicateRequestError,
    FaasFlowError,
    FlowDefinitionError,
    FunctionError,
    FunctionHTTPError,
    FunctionNotFoundError,
    FunctionTimeoutError,
    NodeError,
    OperationError,
    RequestError,
    RequestFailedError,
    RequestStateError,
    RequestStoppedError,
    StoreError,
    TransportError,
    UnknownRequestError,
)
from faasflow.runtime.engine import Engine, arun, run

__all__ = [
    "ConfigurationError",
    "Context",
    "Dag",
    "DuplicateRequestError",
    "Engine",
    "FaasFlowError",
    "FailureInfo",
    "FlowDefinitionError",
    "FunctionError",
    "FunctionHTTPError",
    "FunctionNotFoundError",
    "FunctionTimeoutError",
    "Node",
    "NodeError",
    "OperationError",
    "RequestError",
    "RequestFailedError",
    "RequestInfo",
    "RequestPage",
    "RequestStateError",
    "RequestStoppedError",
    "Retry",
    "StoreError",
    "TransportError",
    "UnknownRequestError",
    "Workflow",
    "arun",
    "run",
]
