"""The flow as an HTTP function (needs the ``server`` extra: Starlette and uvicorn)."""

from faasflow.server.app import create_app

__all__ = ["create_app"]
