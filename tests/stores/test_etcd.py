"""The etcd state store against a real ``etcd`` that the test suite starts."""

from __future__ import annotations

import base64
import itertools
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores.base import Append, Delete, IndexDrop, IndexPut, Put, StateStore
from faasflow.stores.etcd import EtcdStateStore
from faasflow.stores.urls import state_store_from_url
from servers import require_binary
from servers.etcd import etcd_server

from .contract import LONG_TTL, StateStoreContract, eventually, wait_past
from .races import race_between_processes

_prefixes = itertools.count()


def _prefix() -> str:
    # One server for the session; each test under its own key prefix.
    return f"t{os.getpid()}-{next(_prefixes)}"


class TestEtcdState(StateStoreContract):
    # Deadlines are exact to the millisecond (a lease's ID carries its deadline, see the
    # module docstring), so whole-second leases do not set these; round trips do: an
    # operation with a new TTL grants a lease first, and a read-modify-write may take two
    # transactions, each an fsync on a machine shared with other tests.
    short_ttl = 0.5
    pair_ttl = 1.0

    @pytest.fixture
    async def state_store(self, etcd_url: str) -> AsyncIterator[StateStore]:
        async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
            yield store


async def _raw_keys(etcd_url: str, prefix: str) -> list[bytes]:
    """Every key under ``prefix``, read past the store, straight from the gateway."""
    base = etcd_url.replace("etcd://", "http://")
    key = prefix.encode()
    end = key[:-1] + bytes([key[-1] + 1])
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            f"{base}/v3/kv/range",
            content=orjson.dumps(
                {"key": base64.b64encode(key).decode(), "range_end": base64.b64encode(end).decode(),
                 "keys_only": True}
            ),
        )
    return [base64.b64decode(kv["key"]) for kv in reply.json().get("kvs", [])]


async def test_an_unreachable_server_is_a_store_error() -> None:
    async with EtcdStateStore.from_url("etcd://127.0.0.1:9/x") as store:
        with pytest.raises(StoreError, match=r"etcd store 'x/': get failed"):
            await store.get("k")
        with pytest.raises(StoreError, match=r"etcd store 'x/': commit failed"):
            await store.commit([], require={"k": None})


async def test_a_dead_endpoint_fails_over_to_the_next(etcd_url: str) -> None:
    port = etcd_url.rsplit(":", 1)[1]
    async with EtcdStateStore.from_url(f"etcd://127.0.0.1:9,127.0.0.1:{port}/{_prefix()}") as s:
        await s.set("k", b"v")
        assert await s.get("k") == b"v"
        assert await s.add_to_set("s", "m") == 1


async def test_prefixes_keep_stores_apart(etcd_url: str) -> None:
    base = _prefix()
    async with EtcdStateStore.from_url(f"{etcd_url}/{base}a") as one, \
            EtcdStateStore.from_url(f"{etcd_url}/{base}a/b") as nested, \
            EtcdStateStore.from_url(f"{etcd_url}/{base}ab") as two:
        await one.set("k", b"1")
        await one.add_to_set("s", "m")
        await one.append("l", b"i")
        assert await two.get("k") is None
        assert await nested.get("k") is None
        assert await two.set_members("s") == []
        assert await two.delete_prefix("") == 0
        await nested.set("k", b"n")
        assert await nested.delete_prefix("") == 1
        assert await one.get("k") == b"1"
        assert await one.keys("") == ["k"]
        assert await one.delete_prefix("") == 3
        assert await _raw_keys(etcd_url, f"{base}a/") == []


async def test_the_key_layout(etcd_url: str) -> None:
    """Keys sit under the prefix, one key space per kind, readable with etcdctl."""
    prefix = _prefix()
    async with EtcdStateStore.from_url(f"{etcd_url}/{prefix}") as store:
        await store.set("r/1", b"running")
        await store.increment("n", 3)
        await store.add_to_set("j", "p1")
        await store.append("h", b"e")
        await store.append("h", b"f")
        await store.index_put("ix", "m", 2.0)
    keys = await _raw_keys(etcd_url, f"{prefix}/")
    kinds = sorted(key[len(prefix) + 1 :].split(b"/", 1)[0] for key in keys)
    assert kinds == [b"h", b"i", b"l", b"l", b"m", b"s", b"v", b"v", b"x", b"x", b"x"]
    assert f"{prefix}/v/r/1".encode() in keys
    # List items sit at their positions; an index entry is three keys.
    items = f"{prefix}/l/h".encode() + b"\xff"
    assert [items + b"%016x" % n for n in (0, 1)] == [k for k in keys if k.startswith(items)]
    entries = f"{prefix}/x/ix".encode() + b"\xff"
    assert sorted(k[len(entries)] for k in keys if k.startswith(entries)) == [
        ord("<"), ord("="), ord(">")]


async def test_expired_keys_are_removed_by_their_lease(etcd_url: str) -> None:
    """Reads hide an expired key at once; etcd itself deletes it soon after."""
    prefix = _prefix()
    async with EtcdStateStore.from_url(f"{etcd_url}/{prefix}") as store:
        await store.set("k", b"v", ttl=0.05)
        await store.add_to_set("s", "m", ttl=0.05)
        await store.append("l", b"i", ttl=0.05)
        await store.set("keep", b"v", ttl=LONG_TTL)
        await wait_past(0.05)
        assert await store.get("k") is None

        async def only_keep_left() -> bool:
            return await _raw_keys(etcd_url, f"{prefix}/") == [f"{prefix}/v/keep".encode()]

        # The lease outlives the deadline by about a second; etcd's minimum lease TTL
        # (2 s with the default election timeout) and its 500 ms expiry check add more.
        assert await eventually(only_keep_left, 10)


async def test_leases_are_shared_by_keys_written_together(etcd_url: str) -> None:
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
        for i in range(20):
            await store.set(f"k{i}", b"v", ttl=LONG_TTL)
        assert len(store._leases) <= 2


async def test_increment_of_a_non_integer_is_a_store_error(etcd_url: str) -> None:
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
        await store.set("n", b"ten")
        with pytest.raises(StoreError, match=r"increment failed: 'n' holds b'ten'"):
            await store.increment("n")


async def test_commit_of_several_writes_to_one_key(etcd_url: str) -> None:
    """etcd refuses two writes to one key in a transaction; the last one wins."""
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
        await store.set("gone", b"x")
        assert await store.commit(
            [Put("k", b"1"), Put("k", b"2"), Put("gone", b"y"), Delete("gone"),
             Append("l", b"a", ttl=LONG_TTL), Append("l", b"b")]
        )
        assert await store.get_many(["k", "gone"]) == [b"2", None]
        assert await store.read_list("l") == [b"a", b"b"]
        assert await store.commit(
            [IndexPut("ix", "a", 1.0), IndexPut("ix", "b", 1.0), IndexPut("ix", "a", 2.0),
             IndexDrop("ix", "b")]
        )
        assert await store.index_range("ix", limit=5) == [(2.0, "a")]
        await store.index_put("ix", "a", 2.0)  # the same entry again: its keys are kept
        assert await store.index_range("ix", limit=5, descending=True) == [(2.0, "a")]


async def test_remove_from_set_next_to_empty_and_nul_members(etcd_url: str) -> None:
    """The member ranges that decide whether a removal empties the set are exact."""
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
        assert await store.add_to_set("s", "") == 1
        assert await store.add_to_set("s", "\x00") == 2
        assert await store.remove_from_set("s", "") is True
        assert await store.set_members("s") == ["\x00"]
        assert await store.delete_prefix("") == 1  # the set is still there
        await store.add_to_set("t", "a", ttl=0.3)
        assert await store.remove_from_set("t", "a") is True
        assert await store.delete_prefix("") == 0  # the last member took the set along
        await store.add_to_set("t", "b")  # a new set, without the old deadline
        await wait_past(0.3)
        assert await store.set_members("t") == ["b"]


async def test_get_many_reads_more_keys_than_one_transaction_holds(etcd_url: str) -> None:
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
        for i in range(0, 300, 7):
            await store.set(f"k{i}", b"%d" % i)
        values = await store.get_many([f"k{i}" for i in range(300)])
        assert values == [b"%d" % i if i % 7 == 0 else None for i in range(300)]


async def test_keys_limit_skips_expired_keys(etcd_url: str) -> None:
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
        for i in range(6):
            await store.set(f"p/{i}", b"v", ttl=0.05 if i < 3 else None)
        await wait_past(0.05)
        assert await store.keys("p/", limit=2) == ["p/3", "p/4"]


async def test_lists_written_before_positions_are_still_read_and_appended(
    etcd_url: str,
) -> None:
    # Before positions, a list's header was empty and its items keyed by a writer's
    # token, ordered by their revision: write one so, straight to the gateway.
    prefix = _prefix()
    base = etcd_url.replace("etcd://", "http://")

    def put_raw(key: bytes, value: bytes) -> dict[str, object]:
        return {"request_put": {"key": base64.b64encode(key).decode(),
                                "value": base64.b64encode(value).decode()}}

    items = f"{prefix}/l/old".encode() + b"\xff"
    async with httpx.AsyncClient() as client:
        for token, value in [(b"ff" * 16, b"a"), (b"00" * 16, b"b"), (b"7f" * 16, b"c")]:
            txn = {"success": [put_raw(f"{prefix}/m/old".encode(), b""),
                               put_raw(items + token, value)]}
            reply = await client.post(f"{base}/v3/kv/txn", content=orjson.dumps(txn))
            assert reply.status_code == 200
    async with EtcdStateStore.from_url(f"{etcd_url}/{prefix}") as store:
        assert await store.read_list("old") == [b"a", b"b", b"c"]
        assert await store.read_list("old", start=-2) == [b"b", b"c"]
        assert await store.list_length("old") == 3
        await store.append("old", b"d")
        await store.commit([Append("old", b"e", ttl=LONG_TTL)])
        assert await store.read_list("old", start=1, stop=4) == [b"b", b"c", b"d"]
        assert await store.list_length("old") == 5


async def test_an_append_to_a_list_this_store_knows_is_one_transaction(
    etcd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as one, \
            EtcdStateStore.from_url(f"{etcd_url}/{one.prefix}") as other:
        sent: list[str] = []
        real_txn = one._etcd.txn

        async def counted(what: str, *args: Any) -> Any:
            sent.append(what)
            return await real_txn(what, *args)

        monkeypatch.setattr(one._etcd, "txn", counted)
        await one.append("l", b"1")
        await one.append("l", b"2")
        await one.append("l", b"3")
        assert sent == ["append", "append", "append"]
        await other.append("l", b"4")  # what ``one`` knows of the list is stale now
        await one.append("l", b"5")
        assert await one.read_list("l") == [b"1", b"2", b"3", b"4", b"5"]
        assert await one.read_list("l", start=-2) == [b"4", b"5"]


async def test_the_last_member_dropped_takes_the_index_along(etcd_url: str) -> None:
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
        await store.commit([IndexPut("ix", "", 1.0), IndexPut("ix", "\x00", 2.0),
                            IndexPut("ix", "b", 3.0, ttl=0.5)])
        assert await store.commit([IndexDrop("ix", ""), IndexDrop("ix", "b")])
        assert await store.delete_prefix("") == 1  # one member left: still there
        await store.index_put("ix", "a", 1.0, ttl=0.5)
        await store.index_put("ix", "c", 1.0)
        await store.commit([IndexDrop("ix", "a"), IndexDrop("ix", "c")])
        assert await store.delete_prefix("") == 0  # the last member took it along
        await store.index_put("ix", "d", 4.0)  # a new index, without the old deadline
        await wait_past(0.5)
        assert await store.index_range("ix", limit=5) == [(4.0, "d")]


async def test_an_index_ttl_re_leases_every_entry(etcd_url: str) -> None:
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
        for n in range(10):
            await store.index_put("ix", f"m{n}", float(n), ttl=0.5)
        await store.index_put("ix", "m3", 30.0, ttl=LONG_TTL)  # moves m3, keeps them all
        await wait_past(0.5)
        found = await store.index_range("ix", limit=20, descending=True)
        assert found[0] == (30.0, "m3") and len(found) == 10
        assert await store.index_size("ix") == 10


async def test_writes_over_the_request_limit_are_refused_before_sending(etcd_url: str) -> None:
    async with EtcdStateStore.from_url(f"{etcd_url}/{_prefix()}") as store:
        fits = b"x" * (1536 * 1024 - 4096)
        await store.set("fits", fits)
        assert await store.get("fits") == fits
        limit = r"more than etcd takes in one request \(1572864 bytes"
        with pytest.raises(StoreError, match=rf"set of 'big' refused: .*{limit}"):
            await store.set("big", b"x" * (1536 * 1024))
        with pytest.raises(StoreError, match=rf"commit of 'b' refused: .*{limit}"):
            await store.commit([Put("a", b"x" * 700_000), Append("b", b"x" * 900_000)])
        with pytest.raises(StoreError, match=rf"compare_and_set of 'fits' refused: .*{limit}"):
            await store.compare_and_set("fits", fits, b"y" * 100_000)
        assert await store.get_many(["big", "a"]) == [None, None]
        assert await store.read_list("b") == []
    # A server allowed more is named in the URL.
    async with EtcdStateStore.from_url(
        f"{etcd_url}/{_prefix()}?max_request_bytes=4096"
    ) as small:
        with pytest.raises(StoreError, match=r"set of 'k' refused: .*\(4096 bytes"):
            await small.set("k", b"x" * 4000)


async def test_compare_and_set_race_between_processes(etcd_url: str) -> None:
    await race_between_processes(f"{etcd_url}/{_prefix()}")


# -- URLs ------------------------------------------------------------------------------


def test_urls() -> None:
    store = state_store_from_url("etcd://10.0.0.1:2380/flows/prod?timeout=2.5")
    assert isinstance(store, EtcdStateStore)
    assert store.endpoints == ["http://10.0.0.1:2380"]
    assert store.prefix == "flows/prod/"
    assert store.timeout == 2.5
    store = EtcdStateStore.from_url("etcd://a,b:1234,[::1]:5/")
    assert store.endpoints == ["http://a:2379", "http://b:1234", "http://[::1]:5"]
    assert store.prefix == "faasflow/"
    assert EtcdStateStore.from_url("ETCD://h/p%20q/").prefix == "p q/"
    assert EtcdStateStore.from_url("etcd://u:p@h/team@x").prefix == "team@x/"
    assert EtcdStateStore.from_url("etcd://h/team%40x").prefix == "team@x/"
    assert EtcdStateStore.from_url("etcd://h/?max_request_bytes=4194304").max_request_bytes == (
        4 << 20)
    secure = EtcdStateStore.from_url("etcds://u:p%40ss@h/x")
    assert secure.endpoints == ["https://h:2379"]
    assert (secure.username, secure._etcd.password) == ("u", "p@ss")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("etcd://h:port/x", "bad host:port 'h:port'"),
        ("etcd://h:99999/x", "bad host:port"),
        ("etcd:///x", "bad host:port ''"),
        ("etcd://a,,b/x", "bad host:port ''"),
        ("etcd://h/x?timeout=soon", "timeout='soon'"),
        ("etcd://h/x?timeout=0", "timeout='0'"),
        ("etcd://h/x?timeout=inf", "timeout='inf'"),
        ("etcd://h/x?namespace=y", "unknown option 'namespace'"),
        ("etcd://h/x?cacert=/ca.pem", "option 'cacert' needs etcds://"),
        ("etcds://h/x?cacert=", "cacert='' is not a readable file"),
        ("etcds://h/x?cacert=/nonexistent/ca.pem", "cacert='/nonexistent/ca.pem' is not a"),
        ("etcd://h/x#frag", "fragment"),
        ("etcd://user@h/x", "needs user:password@"),
        ("etcd://h/team@x", "percent-encode"),
        ("etcd://h/x?max_request_bytes=big", "max_request_bytes='big'"),
        ("etcd://h/x?max_request_bytes=10", "max_request_bytes='10'"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        EtcdStateStore.from_url(url)


def test_bad_tls_files(tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ConfigurationError, match="cert= and key= go together"):
        EtcdStateStore.from_url(f"etcds://h/x?cert={not_pem}")
    with pytest.raises(ConfigurationError, match="TLS files unusable"):
        EtcdStateStore.from_url(f"etcds://h/x?cacert={not_pem}")


def test_bad_url_errors_hide_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        state_store_from_url("etcd://root:s3cret@h:port/x")
    assert "s3cret" not in str(info.value)
    assert "root:***@" in str(info.value)


# -- authentication and TLS, each on a server of its own ---------------------------------


async def test_user_and_password_authenticate(tmp_path: Path) -> None:
    with etcd_server(tmp_path) as url:
        base = url.replace("etcd://", "http://")
        async with httpx.AsyncClient(base_url=base) as admin:
            for path, body in [
                ("/v3/auth/user/add", {"name": "root", "password": "rootpw"}),
                ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                ("/v3/auth/enable", {}),
            ]:
                (await admin.post(path, content=orjson.dumps(body))).raise_for_status()
        async with EtcdStateStore.from_url(url.replace("//", "//root:rootpw@") + "/p") as store:
            await store.set("k", b"v")
            assert await store.add_to_set("s", "m", ttl=LONG_TTL) == 1
            assert await store.get("k") == b"v"
            store._etcd.token = "expired.token"  # a new token is fetched when one expires
            assert await store.get("k") == b"v"
        async with EtcdStateStore.from_url(url.replace("//", "//root:wrong@") + "/p") as store:
            with pytest.raises(StoreError, match=r"get failed: .*authentication failed"):
                await store.get("k")
        async with EtcdStateStore.from_url(f"{url}/p") as store:
            with pytest.raises(StoreError, match=r"get failed: .*user name is empty"):
                await store.get("k")


def _self_signed(folder: Path) -> tuple[Path, Path]:
    openssl = require_binary("openssl", "openssl")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with etcd_server(tmp_path, tls=(cert, key)) as url:
        assert url.startswith("etcds://")
        async with EtcdStateStore.from_url(f"{url}/p?cacert={cert}") as store:
            await store.set("k", b"v")
            assert await store.get("k") == b"v"
        async with EtcdStateStore.from_url(f"{url}/p") as store:  # the system CAs
            with pytest.raises(StoreError, match=r"get failed: .*CERTIFICATE_VERIFY_FAILED"):
                await store.get("k")
