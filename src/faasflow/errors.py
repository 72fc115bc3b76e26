"""The exceptions faasflow raises.

Every error faasflow raises derives from :class:`FaasFlowError`; foreign exceptions
(sqlite3, httpx, and later redis, nats, botocore) are translated at the adapter that
talks to them, so callers catch one tree::

    FaasFlowError
    ├── FlowDefinitionError        the define() function built an invalid DAG
    ├── RequestError               a control call that does not fit the request
    │   ├── UnknownRequestError    no request with that id
    │   ├── RequestStateError      e.g. resume of a running request, stop of a finished one
    │   └── DuplicateRequestError  a client-chosen request id already in use
    ├── RequestFailedError         a request ended in failure (node, attempt, cause)
    │   └── RequestStoppedError    a request was stopped before it finished
    ├── NodeError                  one node failed (raised inside the engine, recorded)
    │   ├── FunctionError          a function call failed
    │   │   ├── FunctionNotFoundError   no local callable, handler folder or gateway function
    │   │   ├── FunctionHTTPError       the function answered with a non-2xx status
    │   │   └── FunctionTimeoutError    the call did not finish within its timeout
    │   └── OperationError         a modify/aggregator/forwarder/condition callable failed
    │                              or returned something other than bytes
    ├── StoreError                 a state or data store failed or cannot be reached
    ├── TransportError             a hop could not be handed to its transport
    └── ConfigurationError         a bad setting, naming the variable or option
"""

from __future__ import annotations


class FaasFlowError(Exception):
    """Root of every error faasflow raises."""


class FlowDefinitionError(FaasFlowError):
    """The flow definition is invalid; the message names the node or edge."""


class ConfigurationError(FaasFlowError):
    """A setting is missing or malformed; the message names the variable."""


class StoreError(FaasFlowError):
    """A state or data store failed, or cannot be reached."""


class TransportError(FaasFlowError):
    """A hop could not be handed to its transport (gateway, queue)."""


class RequestError(FaasFlowError):
    """A control call (pause, resume, stop, redrive, result) does not fit the request."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class UnknownRequestError(RequestError):
    """No request with that id exists (or it has expired)."""


class RequestStateError(RequestError):
    """The request is not in a state that allows the call."""


class DuplicateRequestError(RequestError):
    """A client-chosen request id is already in use."""


class NodeError(FaasFlowError):
    """A node failed.

    Attributes:
        node: the node's path in the flow (``"n2"``, ``"C[c1]/F[k]/n1"``).
        attempt: the attempt number that failed (1-based).
        cause: a one-line description of what went wrong.
    """

    def __init__(self, message: str, *, node: str = "", attempt: int = 0) -> None:
        super().__init__(message)
        self.node = node
        self.attempt = attempt

    @property
    def cause(self) -> str:
        return str(self)


class OperationError(NodeError):
    """A user callable (modify, aggregator, forwarder, condition, foreach) failed."""


class FunctionError(NodeError):
    """Calling a function (local, handler folder or gateway) failed."""

    def __init__(
        self,
        message: str,
        *,
        function: str = "",
        status: int | None = None,
        body: bytes = b"",
        node: str = "",
        attempt: int = 0,
    ) -> None:
        super().__init__(message, node=node, attempt=attempt)
        self.function = function
        self.status = status
        self.body = body


class FunctionNotFoundError(FunctionError):
    """No local callable, handler folder or gateway function has that name."""


class FunctionHTTPError(FunctionError):
    """The function answered with a non-2xx status; ``status`` and ``body`` hold it."""


class FunctionTimeoutError(FunctionError):
    """The function did not answer within its timeout."""


class RequestFailedError(FaasFlowError):
    """A request ended in failure.

    Attributes:
        request_id: the failed request.
        node: the node that failed (path), or ``""`` when the failure is not a node's.
        attempt: the attempt of that node that failed last.
        cause: what went wrong, one line.
    """

    def __init__(
        self, message: str, *, request_id: str, node: str = "", attempt: int = 0, cause: str = ""
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.node = node
        self.attempt = attempt
        self.cause = cause or message


class RequestStoppedError(RequestFailedError):
    """The request was stopped before it finished."""
