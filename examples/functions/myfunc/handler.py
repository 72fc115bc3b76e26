"""myfunc: sign the text with the caller's ``auth-token`` query parameter.

Answers ``<text> (signed: <token>)``, or 401 when the call carries no ``auth-token``:
the flow in ``examples/context_data.py`` passes the request's ``token`` query on to it.

An OpenFaaS ``python3-http`` handler: deploy it with ``faas-cli`` unchanged, or let
faasflow call it from this folder (``functions_dir=``).
"""

from typing import Any


def handle(event: Any, context: Any) -> dict[str, Any]:
    token = event.query.get("auth-token")
    if not token:
        return {"statusCode": 401, "body": "myfunc: missing auth-token"}
    text = event.body.decode("utf-8")
    return {"statusCode": 200, "body": f"{text} (signed: {token})"}
