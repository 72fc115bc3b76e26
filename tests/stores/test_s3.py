"""The S3 data store against a real S3 endpoint (moto's server) that the suite starts.

Credentials are passed explicitly (the server accepts any); no test touches
``os.environ``. One bucket for the module's contract tests, a fresh prefix per test.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from faasflow.errors import ConfigurationError, StoreError
from faasflow.httpclient import new_client
from faasflow.stores.base import DataStore
from faasflow.stores.s3 import EXPIRES_HEADER, S3DataStore, encode_key
from faasflow.stores.urls import data_store_from_url
from servers import free_port
from servers.s3 import s3_server_checking_signatures

from .contract import LONG_TTL, DataStoreContract, wait_past

KEY_ID, SECRET = "faasflow-test", "faasflow-secret"
BUCKET = "faasflow-tests"
_numbers = itertools.count()

ODD_KEYS = [
    "a/../b", "../escape", "./here", ".", "..", "a//b", "/lead", "trail/", "",
    "sp ace", "per%cent", "%2E%2E", "q?x=1&y=2#frag", "plus+and=eq", "tab\tnew\nline",
    "nul\x00byte", "C[c1]/F[k]/n1", "r/é/ß/😀", "back\\slash", "~tilde", "a.b.c",
    "UPPER/lower", "*star*(paren)!'quote'",
]


def _prefix() -> str:
    return f"t{next(_numbers)}"


def _store(endpoint: str, prefix: str = "", **options: Any) -> S3DataStore:
    return S3DataStore(
        BUCKET, prefix, endpoint=endpoint, region="us-east-1", access_key_id=KEY_ID,
        secret_access_key=SECRET, create_bucket=True, **options,
    )


def _url(endpoint: str, bucket: str = BUCKET, prefix: str = "", **options: str) -> str:
    options = {"endpoint": endpoint, **options}
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in options.items())
    return f"s3://{KEY_ID}:{SECRET}@{bucket}/{prefix}?{query}"


class TestS3Data(DataStoreContract):
    @pytest.fixture
    async def data_store(self, s3_endpoint: str) -> AsyncIterator[DataStore]:
        async with _store(s3_endpoint, _prefix()) as store:
            yield store

    async def test_purge_expired(self, data_store: DataStore) -> None:
        assert isinstance(data_store, S3DataStore)
        await data_store.put("p/gone", b"v", ttl=self.short_ttl)
        await data_store.put("p/live", b"v", ttl=LONG_TTL)
        await data_store.put("p/forever", b"v")
        await wait_past(self.short_ttl)
        assert await data_store.purge_expired("p/") == 1
        assert await data_store.delete_prefix("p/") == 2


async def test_from_url(s3_endpoint: str) -> None:
    store = data_store_from_url(
        _url(s3_endpoint, prefix="flows/greet", create_bucket="true", timeout="5")
    )
    assert isinstance(store, S3DataStore)
    assert (store.bucket, store.prefix, store.endpoint) == (BUCKET, "flows/greet/", s3_endpoint)
    assert store.create_bucket is True
    assert store.timeout == 5.0
    async with store:
        await store.put("k", b"v")
        assert await store.get("k") == b"v"
        assert await store.delete_prefix("") == 1


def test_from_url_reads_credentials_and_options() -> None:
    store = S3DataStore.from_url(
        "s3://AKID:se%2Fcr%2Bet@my.bucket?region=eu-west-1&profile=ci&create_bucket=no"
    )
    assert store._s3.credentials.access_key == "AKID"
    assert store._s3.credentials.secret_key == "se/cr+et"
    assert (store.bucket, store.prefix, store.region, store.profile) == (
        "my.bucket", "", "eu-west-1", "ci"
    )
    assert store.endpoint is None
    assert store.create_bucket is False
    anonymous_chain = S3DataStore.from_url("s3://bucket/p")
    assert anonymous_chain._s3.credentials is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3:///prefix", "no bucket"),
        ("s3://Bad_Bucket/p", "not a valid bucket name"),
        ("s3://ab/p", "not a valid bucket name"),
        ("s3://bucket:9000/p", "takes no port"),
        ("s3://bucket/p?endpoint=ftp://host", "endpoint"),
        ("s3://bucket/p?endpoint=", "'endpoint' is empty"),
        ("s3://bucket/p?region=", "'region' is empty"),
        ("s3://bucket/p?create_bucket=maybe", "create_bucket='maybe'"),
        ("s3://bucket/p?timeout=soon", "timeout='soon'"),
        ("s3://bucket/p?timeout=0", "timeout='0'"),
        ("s3://bucket/p?bucket_per_request=1", "unknown option 'bucket_per_request'"),
        ("s3://bucket/p?region=a&region=b", "given twice"),
        ("s3://bucket/p#frag", "fragment"),
        ("s3://bucket/a/../b", "prefix"),
        ("s3://bucket/a//b", "prefix"),
        ("s3://bucket/sp%20ace", "prefix"),
        ("s3://onlykey@bucket/p", "ACCESS_KEY_ID:SECRET"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        data_store_from_url(url)
    assert "store URL" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown", "message"),
    [
        ("s3://AKID:t0p-s3cret@bucket/p?nope=1", "s3://AKID:***@bucket/p?nope=1", "nope"),
        ("s3://AKID:t0p/s3cret@bucket/p", "s3://AKID:***@bucket/p", "percent-encode"),
        ("s3://AKID:t0p-s3cret@Bucket/p", "s3://AKID:***@Bucket/p", "bucket name"),
    ],
)
def test_bad_url_hides_the_secret(url: str, shown: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        data_store_from_url(url)
    assert "s3cret" not in str(raised.value)
    assert shown in str(raised.value)


async def test_missing_bucket_is_a_clear_error(s3_endpoint: str) -> None:
    store = S3DataStore(
        "no-such-bucket", endpoint=s3_endpoint, region="us-east-1", access_key_id=KEY_ID,
        secret_access_key=SECRET,
    )
    with pytest.raises(ConfigurationError, match=r"bucket 'no-such-bucket' does not exist.*"
                       r"create_bucket=true"):
        await store.open()
    assert store._s3.http is None  # closed again


async def test_create_bucket_is_idempotent(s3_endpoint: str) -> None:
    bucket = f"made-{next(_numbers)}"
    for _ in range(2):
        async with data_store_from_url(_url(s3_endpoint, bucket, create_bucket="1")) as store:
            await store.put("k", b"v")
    async with data_store_from_url(_url(s3_endpoint, bucket)) as store:
        assert await store.get("k") == b"v"


async def test_endpoint_down_is_a_store_error() -> None:
    store = S3DataStore(
        BUCKET, endpoint=f"http://127.0.0.1:{free_port()}", region="us-east-1",
        access_key_id=KEY_ID, secret_access_key=SECRET, timeout=2,
    )
    with pytest.raises(StoreError, match=r"open failed: cannot reach http://127\.0\.0\.1:\d+"):
        await store.open()


async def test_server_gone_after_open_is_a_store_error(tmp_path: Path) -> None:
    from servers.s3 import s3_server

    with s3_server(tmp_path) as endpoint:
        store = _store(endpoint, "gone")
        await store.open()
    try:
        with pytest.raises(StoreError, match=r"get 'k' failed: cannot reach"):
            await store.get("k")
        with pytest.raises(StoreError, match=r"put 'k' failed"):
            await store.put("k", b"v")
    finally:
        await store.close()


async def test_unopened_store_says_so() -> None:
    store = S3DataStore(BUCKET, access_key_id=KEY_ID, secret_access_key=SECRET)
    with pytest.raises(StoreError, match="not open"):
        await store.get("k")


async def test_prefixes_keep_stores_apart(s3_endpoint: str) -> None:
    base = _prefix()
    async with _store(s3_endpoint, f"{base}/a") as one, _store(s3_endpoint, f"{base}/ab") as two:
        await one.put("k", b"1")
        await one.put("x/y", b"1")
        assert await two.get("k") is None
        await two.put("k", b"2")
        assert await two.delete_prefix("") == 1
        assert await one.get("k") == b"1"
        assert await one.delete_prefix("") == 2


async def test_odd_keys_round_trip(s3_endpoint: str) -> None:
    async with _store(s3_endpoint, _prefix()) as store:
        for i, key in enumerate(ODD_KEYS):
            await store.put(key, b"%d" % i)
        for i, key in enumerate(ODD_KEYS):
            assert await store.get(key) == b"%d" % i, key
        await store.expire("a/../b", LONG_TTL)
        assert await store.get("a/../b") == b"0"
        assert await store.get("b") is None
        assert await store.delete_prefix("a/") == 2  # "a/../b" and "a//b"
        assert await store.get("a//b") is None
        assert await store.get("a.b.c") == b"%d" % ODD_KEYS.index("a.b.c")
        assert await store.delete_prefix("") == len(ODD_KEYS) - 2


def test_encode_key() -> None:
    assert encode_key("R/o/n1") == "R/o/n1"
    assert encode_key("a/../b") == "a/%2E%2E/b"
    assert encode_key("é%") == "%C3%A9%25"
    for a, b in itertools.product(ODD_KEYS[:8], repeat=2):
        assert encode_key(a + b) == encode_key(a) + encode_key(b)


async def test_requests_on_the_wire_match_their_signatures(s3_endpoint: str) -> None:
    """Recompute each signature from the request as sent, as a strict server does.

    moto checks signatures only for keys its own URL handling does not re-encode, so
    the keys that need escaping are checked here against the bytes on the wire.
    """
    checked: list[str] = []

    async def verify(request: httpx.Request) -> None:
        signed = request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
        wire = AWSRequest(
            method=request.method,
            url=f"{request.url.scheme}://{request.url.netloc.decode()}"
                f"{request.url.raw_path.decode()}",
            headers={name: request.headers[name] for name in signed.split(";")},
            data=request.content,
        )
        wire.context["timestamp"] = request.headers["x-amz-date"]
        auth = S3SigV4Auth(Credentials(KEY_ID, SECRET), "s3", "us-east-1")
        expected = auth.signature(auth.string_to_sign(wire, auth.canonical_request(wire)), wire)
        assert request.headers["authorization"].endswith(f"Signature={expected}")
        checked.append(request.url.raw_path.decode())

    client = new_client(event_hooks={"request": [verify]})
    async with client, _store(s3_endpoint, _prefix(), client=client) as store:
        for key in ODD_KEYS:
            await store.put(key, b"v", ttl=LONG_TTL)
            await store.expire(key, LONG_TTL)
            assert await store.get(key) == b"v"
        assert await store.delete_prefix("") == len(ODD_KEYS)
    assert any("%252E%252E" in path for path in checked)
    assert any("list-type=2" in path for path in checked)


@pytest.fixture(scope="module")
def signing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    with s3_server_checking_signatures(tmp_path_factory.mktemp("s3-auth")) as server:
        yield server


async def test_a_server_checking_signatures_accepts_ours(
    signing_server: tuple[str, str, str],
) -> None:
    endpoint, key_id, secret = signing_server
    # Keys and prefix without characters moto re-encodes (see the wire test above).
    url = f"s3://{key_id}:{quote(secret, safe='')}@signed?endpoint={endpoint}&create_bucket=1"
    async with data_store_from_url(url) as store:
        for key in ("R/in", "R/o/n1", "R/o/n2", "R//x", "result/R"):
            await store.put(key, key.encode(), ttl=LONG_TTL)
        assert await store.get("R/o/n1") == b"R/o/n1"
        await store.expire("R/o/n1", 0.01)
        await wait_past(0.01)
        assert await store.get("R/o/n1") is None
        await store.delete("result/R")
        assert await store.delete_prefix("") == 3
    bad = f"s3://{key_id}:wrong@signed?endpoint={endpoint}"
    with pytest.raises(StoreError, match="HTTP 403"):
        async with data_store_from_url(bad):
            pass


async def test_credentials_from_the_aws_chain(
    signing_server: tuple[str, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile in a shared credentials file, as on a developer's machine."""
    endpoint, key_id, secret = signing_server
    (tmp_path / "credentials").write_text(
        f"[flows]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    )
    (tmp_path / "config").write_text("[profile flows]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    # Never ask an instance metadata service (a non-loopback address) for credentials.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    url = f"s3://chain?endpoint={endpoint}&profile=flows&create_bucket=true"
    async with data_store_from_url(url) as store:
        assert isinstance(store, S3DataStore)
        assert store.region == "us-east-1"
        await store.put("k", b"v")
        assert await store.get("k") == b"v"
    with pytest.raises(ConfigurationError, match=r"AWS configuration.*nobody"):
        async with data_store_from_url(f"s3://chain?endpoint={endpoint}&profile=nobody"):
            pass


async def test_expiry_is_object_metadata(s3_endpoint: str) -> None:
    async with new_client() as client, _store(s3_endpoint, _prefix(), client=client) as store:
        await store.put("k", b"v", ttl=LONG_TTL)
        await store.put("forever", b"v")
        head = await store._s3.send("test", "HEAD", store._object("k"))
        assert float(head.headers[EXPIRES_HEADER]) > 0
        head = await store._s3.send("test", "HEAD", store._object("forever"))
        assert EXPIRES_HEADER not in head.headers
        await store.expire("forever", LONG_TTL)
        head = await store._s3.send("test", "HEAD", store._object("forever"))
        assert EXPIRES_HEADER in head.headers
        assert await store.get("forever") == b"v"


async def test_expired_object_is_deleted_by_the_reader(s3_endpoint: str) -> None:
    prefix = _prefix()
    async with _store(s3_endpoint, prefix) as store, _store(s3_endpoint, prefix) as peek:
        await store.put("k", b"v", ttl=0.01)
        await wait_past(0.01)
        assert await store.get("k") is None
        # Gone for real: a store reading without expiry checks finds nothing either.
        assert (await peek._s3.send("test", "HEAD", peek._object("k"), ok=(200, 404))).status_code \
            == 404


async def test_delete_prefix_spans_pages(s3_endpoint: str) -> None:
    calls: list[str] = []

    async def record(request: httpx.Request) -> None:
        query = request.url.query.decode()
        if "list-type=2" in query or query == "delete=":
            calls.append("list" if "list-type" in query else "delete")

    client = new_client(event_hooks={"request": [record]})
    async with client, _store(s3_endpoint, _prefix(), client=client) as store:
        store.page_size = 7  # S3's 1000 would need thousands of objects to page
        for i in range(30):
            await store.put(f"p/{i}", b"", ttl=0.01 if i % 10 == 0 else None)
        await store.put("q", b"")
        await wait_past(0.01)
        assert await store.delete_prefix("p/") == 27
        # 30 objects: 5 pages, each deleted in one call (the first page's last call
        # is the empty listing that ends it).
        assert calls == ["list", "delete"] * 5
        assert await store.delete_prefix("p/") == 0
        assert await store.get("q") == b""
