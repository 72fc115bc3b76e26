"""The filesystem data store in a temporary folder, with processes sharing it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores.base import DataStore
from faasflow.stores.filesystem import FileDataStore, decode_segment, encode_segment
from faasflow.stores.urls import data_store_from_url

from .contract import LONG_TTL, DataStoreContract, wait_past
from .races import _SRC

ODD_KEYS = [
    "a/../b", "../escape", "../../../../../../etc/passwd", "./here", ".", "..", "a//b",
    "/lead", "/", "//", "trail/", "", "sp ace", "per%cent", "%2E%2E", "q?x=1&y=2#frag",
    "tab\tnew\nline", "nul\x00byte", "C[c1]/F[k]/n1", "r/é/ß/😀", "back\\slash", "~",
    "a.b.c", "Case", "case", "CASE", "con", "x.v", "x.d", "x.v.0123.tmp", "\u00e9", "e\u0301",
    "case",
]


def _tree(folder: Path) -> list[Path]:
    """Everything under ``folder``, parents before children."""
    return sorted(folder.rglob("*"), key=lambda p: p.parts)


class TestFileData(DataStoreContract):
    @pytest.fixture
    async def data_store(self, tmp_path: Path) -> AsyncIterator[DataStore]:
        async with FileDataStore(tmp_path / "data") as store:
            yield store

    async def test_purge_expired(self, data_store: DataStore) -> None:
        assert isinstance(data_store, FileDataStore)
        await data_store.put("p/gone", b"v", ttl=self.short_ttl)
        await data_store.put("p/deep/gone", b"v", ttl=self.short_ttl)
        await data_store.put("p/live", b"v", ttl=LONG_TTL)
        await data_store.put("p/forever", b"v")
        await wait_past(self.short_ttl)
        assert await data_store.purge_expired() == 2
        assert not (data_store.root / "p.d" / "deep.d").exists()
        assert await data_store.delete_prefix("p/") == 2


def test_from_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = data_store_from_url(f"file://{tmp_path}/my%20data")
    assert isinstance(store, FileDataStore)
    assert store.root == tmp_path / "my data"
    store = data_store_from_url(f"file://localhost{tmp_path}")
    assert isinstance(store, FileDataStore)
    assert store.root == tmp_path
    monkeypatch.chdir(tmp_path)
    # urls.py routes only "scheme://" URLs today, so the relative form is read here.
    assert FileDataStore.from_url("file:rel/folder").root == tmp_path / "rel" / "folder"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://relative/folder", "would be a host"),
        ("file://", "no folder"),
        ("file:///", "no folder"),
        ("file:", "no folder"),
        ("file:///tmp/x?fsync=no", "takes no options"),
        ("file:///tmp/x#frag", "fragment"),
        ("file:///tmp/a%00b", "NUL"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        FileDataStore.from_url(url)
    assert repr(url) in str(raised.value)


async def test_open_creates_the_folder(tmp_path: Path) -> None:
    async with data_store_from_url(f"file://{tmp_path}/a/b/c") as store:
        await store.put("k", b"v")
    assert (tmp_path / "a" / "b" / "c" / "k.v").is_file()


async def test_a_file_in_the_way_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match="not a folder"):
        await FileDataStore(tmp_path / "file").open()
    async with FileDataStore(tmp_path / "data") as store:
        (tmp_path / "data" / "foreign.v").write_bytes(b"not ours")
        with pytest.raises(StoreError, match=r"get 'foreign' failed: .*not a value"):
            await store.get("foreign")


async def test_an_unwritable_folder_is_a_store_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # Root ignores permissions: make the folder unusable another way.
        async with FileDataStore(tmp_path / "data") as store:
            (tmp_path / "data" / "k.d").write_bytes(b"")  # a file where a folder must go
            with pytest.raises(StoreError, match=r"put 'k/x' failed"):
                await store.put("k/x", b"v")
        return
    (tmp_path / "ro").mkdir(mode=0o500)
    async with FileDataStore(tmp_path / "ro") as store:
        with pytest.raises(StoreError, match=r"put 'k' failed: .*Permission denied"):
            await store.put("k", b"v")


async def test_odd_keys_round_trip_and_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "inside" / "data"
    async with FileDataStore(root) as store:
        for i, key in enumerate(ODD_KEYS):
            await store.put(key, b"%d" % i)
        for key in ODD_KEYS:
            want = b"%d" % max(j for j, k in enumerate(ODD_KEYS) if k == key)
            assert await store.get(key) == want, key
    # Nothing landed outside the folder, and every name is plain ASCII of our alphabet.
    assert [p.name for p in _tree(tmp_path) if root not in [p, *p.parents]] == ["inside"]
    for path in _tree(root):
        name = path.name
        assert name.isascii() and name not in (".", "..") and "\\" not in name
        assert name.endswith((".v", ".d")), name
        assert name == name.lower() or "%" in name
    names = {p.name for p in _tree(root)}
    assert {"case.v", "%43ase.v", "%43%41%53%45.v"} <= names  # three keys, three files
    async with FileDataStore(root) as store:
        assert await store.delete_prefix("") == len(set(ODD_KEYS))
    assert _tree(root) == []


def test_segment_encoding() -> None:
    for segment in ["", ".", "..", "a/b", "é😀", "A%2Eb", "\x00", "x" * 50]:
        encoded = encode_segment(segment)
        assert decode_segment(encoded) == segment
        assert "." not in encoded and "/" not in encoded
    assert encode_segment("R1") == "%521"
    assert encode_segment("n-1_b") == "n-1_b"
    for bad in ["%2", "%zz", "A", "a.b", "%2e"]:
        with pytest.raises(ValueError):
            decode_segment(bad)


async def test_values_and_folders_share_a_name(tmp_path: Path) -> None:
    async with FileDataStore(tmp_path) as store:
        await store.put("R1", b"value")
        await store.put("R1/in", b"input")
        await store.put("R1/", b"slash")
        assert [await store.get(k) for k in ("R1", "R1/in", "R1/")] == [
            b"value", b"input", b"slash"
        ]
        await store.delete("R1/in")
        await store.delete("R1/")
        assert not (tmp_path / "%521.d").exists()  # emptied folders go with their last value
        assert await store.get("R1") == b"value"


async def test_delete_prefix_matches_inside_a_segment(tmp_path: Path) -> None:
    async with FileDataStore(tmp_path) as store:
        for key in ("req-1/a", "req-1", "req-10/b/c", "req-2/a", "re"):
            await store.put(key, b"v")
        assert await store.delete_prefix("req-1") == 3
        assert await store.get("req-2/a") == b"v"
        assert await store.get("re") == b"v"
        assert await store.delete_prefix("nothing/here/") == 0


async def test_a_put_leaves_no_temporary_file(tmp_path: Path) -> None:
    async with FileDataStore(tmp_path) as store:
        await asyncio.gather(*(store.put("k", b"%d" % i) for i in range(20)))
        assert [p.name for p in _tree(tmp_path)] == ["k.v"]


async def test_expiry_lives_in_the_file_header(tmp_path: Path) -> None:
    async with FileDataStore(tmp_path) as store:
        await store.put("k", b"payload", ttl=LONG_TTL)
        raw = (tmp_path / "k.v").read_bytes()
        assert raw.startswith(b"faasflw1") and raw.endswith(b"payload")
        await store.expire("k", 0.01)
        assert (tmp_path / "k.v").read_bytes() != raw
        await wait_past(0.01)
        assert await store.get("k") is None
        assert not (tmp_path / "k.v").exists()  # purged by the reader


_WRITER = r"""
import asyncio, sys
from faasflow.stores.filesystem import FileDataStore

async def main(root, tag, rounds):
    async with FileDataStore(root) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(rounds):
            await store.put("shared/key", tag * (200_000 + i))
        print("done", flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])))
"""


async def test_two_processes_writing_one_key_never_tear_it(tmp_path: Path) -> None:
    rounds = 40
    env = {**os.environ, "PYTHONPATH": _SRC}
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, str(tmp_path), tag, str(rounds),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )
        for tag in ("a", "b")
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert await asyncio.wait_for(writer.stdout.readline(), 60) == b"ready\n"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write(b"go\n")
            await writer.stdin.drain()
        async with FileDataStore(tmp_path) as reader:
            reads = 0
            deadline = time.monotonic() + 60
            while any(w.returncode is None for w in writers) and time.monotonic() < deadline:
                value = await reader.get("shared/key")
                if value is not None:
                    reads += 1
                    # One writer's whole value: one byte repeated, of a length it wrote.
                    assert value.count(value[:1]) == len(value)
                    assert 200_000 <= len(value) < 200_000 + rounds
            final = await reader.get("shared/key")
        assert reads > 0
        assert final in (b"a" * (200_000 + rounds - 1), b"b" * (200_000 + rounds - 1))
        for writer in writers:
            assert writer.stdout is not None
            assert await writer.stdout.readline() == b"done\n"
            assert await writer.wait() == 0
        assert [p.name for p in _tree(tmp_path)] == ["shared.d", "key.v"]
    finally:
        for writer in writers:
            if writer.returncode is None:
                writer.kill()
                await writer.wait()
            if writer.stdin is not None:
                writer.stdin.close()
