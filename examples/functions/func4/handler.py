"""func4: wrap the text in square brackets (``abc`` -> ``[abc]``).

An OpenFaaS ``python3-http`` handler: deploy it with ``faas-cli`` unchanged, or let
faasflow call it from this folder (``functions_dir=``).
"""

from typing import Any


def handle(event: Any, context: Any) -> dict[str, Any]:
    text = event.body.decode("utf-8")
    return {"statusCode": 200, "body": "[" + text + "]"}
