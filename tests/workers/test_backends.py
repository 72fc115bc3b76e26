"""Examples on two NATS workers over each production backend (real servers), with inputs
big enough (a few KB) to go through the data store rather than inside the hops."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from tests.examples.test_examples import EXAMPLES, FUNCTIONS_DIR, inputs_of

from faasflow.workers import Client, Worker

_names = itertools.count()

COMBOS = ["postgres+s3", "etcd+file", "redis+postgres"]


def _stores(
    combo: str, request: pytest.FixtureRequest, tmp_path: Path, flow: str
) -> tuple[str, str]:
    """The state and data store URLs of ``combo``, in a namespace of ``flow``'s own."""
    state, data = combo.split("+")
    urls: dict[str, str] = {}
    for kind in (state, data):
        if kind == "postgres":
            urls[kind] = f"{request.getfixturevalue('postgres_url')}?table_prefix={flow}_"
        elif kind == "etcd":
            urls[kind] = f"{request.getfixturevalue('etcd_url')}/{flow}/"
        elif kind == "redis":
            urls[kind] = f"{request.getfixturevalue('redis_url')}?namespace={flow}:"
        elif kind == "s3":
            endpoint = request.getfixturevalue("s3_endpoint")
            urls[kind] = (
                f"s3://faasflow-test:faasflow-secret@faasflow-flows/{flow}"
                f"?endpoint={endpoint}&region=us-east-1&create_bucket=true"
            )
        else:
            urls[kind] = f"file://{tmp_path / 'data'}"
    return urls[state], urls[data]


@pytest.mark.parametrize("combo", COMBOS)
@pytest.mark.parametrize("name", ["dynamic_branching", "subdag", "parallel_branching"])
async def test_examples_on_every_backend(
    name: str, combo: str, request: pytest.FixtureRequest, tmp_path: Path, nats_url: str
) -> None:
    module = EXAMPLES[name]
    flow = f"b{next(_names)}"
    state, data = _stores(combo, request, tmp_path, flow)
    options: dict[str, Any] = {
        "flow_name": flow, "nats": nats_url, "state_store": state, "data_store": data,
    }
    data_in, query = max(inputs_of(module), key=lambda pair: len(pair[0]))
    assert len(data_in) > 1024  # through the data store, not inside the hops
    async with (
        Worker(module.define, functions_dir=FUNCTIONS_DIR, **options),
        Worker(module.define, functions_dir=FUNCTIONS_DIR, **options),
        Client(module.define, **options) as client,
    ):
        rids = [await client.submit(data_in, query=query) for _ in range(3)]
        outs = [await client.wait(rid, timeout=60) for rid in rids]
        history = await client.history(rids[0])
    assert outs == [module.expected(data_in, query)] * 3
    assert history[-1]["event"] == "succeeded"
