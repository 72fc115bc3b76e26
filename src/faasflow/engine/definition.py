"""Turning a user's ``define(flow, context)`` into a validated :class:`FlowSpec`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faasflow.dsl.compile import compile_flow
from faasflow.dsl.graph import Workflow
from faasflow.dsl.spec import FlowSpec
from faasflow.engine.context import Context
from faasflow.errors import FaasFlowError, FlowDefinitionError

Define = Callable[[Workflow, Context], Any]


def build_flow(define: Define, context: Context) -> FlowSpec:
    """Call ``define`` for ``context`` and validate what it built.

    The one path every runtime and the export use, so a flow is checked the same way
    everywhere.

    Raises:
        FlowDefinitionError: ``define`` raised, or built an invalid flow.
    """
    flow = Workflow()
    try:
        define(flow, context)
    except FaasFlowError:
        raise
    except Exception as exc:
        raise FlowDefinitionError(f"define() raised {type(exc).__name__}: {exc}") from exc
    return compile_flow(flow)
