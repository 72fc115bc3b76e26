"""The store contract suite: every backend runs these same tests.

A backend's test module subclasses the two classes and provides the fixture the tests
use, an open, empty store::

    class TestSqliteState(StateStoreContract):
        @pytest.fixture
        async def state_store(self, tmp_path: Path) -> AsyncIterator[StateStore]:
            async with SqliteStateStore(tmp_path / "s.db") as store:
                yield store

A backend whose expiry is coarse (etcd leases count whole seconds) raises ``short_ttl``
in its subclass. Expiry is awaited by polling with a deadline, never by one fixed sleep;
the only fixed waits are "until past a deadline", where a key must already be expired
without anyone having read it (reading could purge it and hide the bug tested).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from faasflow.stores.base import (
    Append,
    DataStore,
    Delete,
    IndexDrop,
    IndexPut,
    Put,
    StateStore,
)

# A TTL no test outlives: what it guards must still be there when read.
LONG_TTL = 600.0
# How long expiry may lag behind its deadline before a test fails.
EXPIRY_GRACE = 5.0
NUL_BYTES = bytes(range(256)) + b"\x00\x00tail\x00"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return await check()
        await asyncio.sleep(0.01)


async def wait_past(seconds: float) -> None:
    """Let a deadline ``seconds`` from now go by (with a margin), reading nothing."""
    await asyncio.sleep(seconds + 0.05)


class StateStoreContract:
    """Tests of :class:`StateStore`; subclasses provide the ``state_store`` fixture."""

    short_ttl = 0.05
    pair_ttl = 0.3
    """For tests whose second operation must land before the first one's deadline: long
    enough that a loaded machine does not miss it, short enough to wait out."""

    async def expires(self, check: Callable[[], Awaitable[bool]]) -> bool:
        """Whether ``check`` (true once the key reads as gone) turns true in time."""
        return await eventually(check, self.short_ttl + EXPIRY_GRACE)

    # -- plain values ---------------------------------------------------------------
    async def test_get_absent_is_none(self, state_store: StateStore) -> None:
        assert await state_store.get("absent") is None

    async def test_set_then_get(self, state_store: StateStore) -> None:
        await state_store.set("a", b"1")
        assert await state_store.get("a") == b"1"

    async def test_set_overwrites(self, state_store: StateStore) -> None:
        await state_store.set("a", b"1")
        await state_store.set("a", b"2")
        assert await state_store.get("a") == b"2"

    async def test_binary_and_empty_values(self, state_store: StateStore) -> None:
        await state_store.set("bin", NUL_BYTES)
        await state_store.set("empty", b"")
        assert await state_store.get("bin") == NUL_BYTES
        value = await state_store.get("empty")
        assert value == b""
        assert isinstance(value, bytes)

    async def test_get_many_in_order(self, state_store: StateStore) -> None:
        await state_store.set("a", b"1")
        await state_store.set("c", b"3")
        assert await state_store.get_many(["c", "b", "a", "c"]) == [b"3", None, b"1", b"3"]
        assert await state_store.get_many([]) == []
        assert await state_store.get_many(["a"]) == [b"1"]

    async def test_unicode_keys(self, state_store: StateStore) -> None:
        await state_store.set("r/é/ß/😀", b"u")
        assert await state_store.get("r/é/ß/😀") == b"u"
        assert await state_store.keys("r/é/") == ["r/é/ß/😀"]

    # -- commit ---------------------------------------------------------------------
    async def test_commit_applies_every_write(self, state_store: StateStore) -> None:
        await state_store.set("gone", b"x")
        applied = await state_store.commit(
            [Put("a", b"1"), Put("b", b"2"), Delete("gone"), Append("log", b"e1"),
             Append("log", b"e2")]
        )
        assert applied is True
        assert await state_store.get_many(["a", "b", "gone"]) == [b"1", b"2", None]
        assert await state_store.read_list("log") == [b"e1", b"e2"]

    async def test_commit_requires_values(self, state_store: StateStore) -> None:
        await state_store.set("rec", b"running")
        assert await state_store.commit(
            [Put("rec", b"done"), Put("next", b"hop")], require={"rec": b"running", "new": None}
        )
        assert await state_store.get_many(["rec", "next"]) == [b"done", b"hop"]

    async def test_commit_with_a_failed_requirement_writes_nothing(
        self, state_store: StateStore
    ) -> None:
        await state_store.set("rec", b"done")
        applied = await state_store.commit(
            [Put("rec", b"done-again"), Put("next", b"hop"), Append("log", b"e"), Delete("rec")],
            require={"rec": b"running"},
        )
        assert applied is False
        assert await state_store.get("rec") == b"done"
        assert await state_store.get("next") is None
        assert await state_store.read_list("log") == []
        assert not await state_store.commit([Put("x", b"1")], require={"rec": None})
        assert await state_store.get("x") is None

    async def test_commit_has_one_winner(self, state_store: StateStore) -> None:
        await state_store.set("rec", b"running")
        results = await asyncio.gather(
            *(
                state_store.commit([Put("rec", b"done-%d" % i), Append("wins", b"%d" % i)],
                                   require={"rec": b"running"})
                for i in range(20)
            )
        )
        assert sum(results) == 1
        winner = results.index(True)
        assert await state_store.get("rec") == b"done-%d" % winner
        assert await state_store.read_list("wins") == [b"%d" % winner]

    async def test_commit_put_with_ttl_expires(self, state_store: StateStore) -> None:
        await state_store.commit([Put("t", b"1", ttl=self.short_ttl)])
        assert await self.expires(lambda: _is_none(state_store.get("t")))

    # -- compare and set ------------------------------------------------------------
    async def test_cas_create_if_absent(self, state_store: StateStore) -> None:
        assert await state_store.compare_and_set("k", None, b"first") is True
        assert await state_store.get("k") == b"first"
        assert await state_store.compare_and_set("k", None, b"second") is False
        assert await state_store.get("k") == b"first"

    async def test_cas_swap(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v1")
        assert await state_store.compare_and_set("k", b"v1", b"v2") is True
        assert await state_store.get("k") == b"v2"

    async def test_cas_losing(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v1")
        assert await state_store.compare_and_set("k", b"other", b"v2") is False
        assert await state_store.get("k") == b"v1"
        assert await state_store.compare_and_set("absent", b"v1", b"v2") is False
        assert await state_store.get("absent") is None

    async def test_cas_delete(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v1")
        assert await state_store.compare_and_set("k", b"wrong", None) is False
        assert await state_store.get("k") == b"v1"
        assert await state_store.compare_and_set("k", b"v1", None) is True
        assert await state_store.get("k") is None
        assert await state_store.compare_and_set("k", b"v1", None) is False

    async def test_cas_none_to_none_means_still_absent(self, state_store: StateStore) -> None:
        assert await state_store.compare_and_set("k", None, None) is True
        assert await state_store.get("k") is None
        await state_store.set("k", b"v")
        assert await state_store.compare_and_set("k", None, None) is False
        assert await state_store.get("k") == b"v"

    async def test_cas_empty_value_is_not_absent(self, state_store: StateStore) -> None:
        assert await state_store.compare_and_set("k", b"", b"x") is False
        assert await state_store.get("k") is None
        await state_store.set("k", b"")
        assert await state_store.compare_and_set("k", None, b"x") is False
        assert await state_store.compare_and_set("k", b"", b"x") is True
        assert await state_store.get("k") == b"x"

    async def test_cas_binary_values(self, state_store: StateStore) -> None:
        await state_store.set("k", NUL_BYTES)
        assert await state_store.compare_and_set("k", NUL_BYTES[:-1], b"no") is False
        assert await state_store.compare_and_set("k", NUL_BYTES, b"yes") is True

    async def test_concurrent_cas_create_has_one_winner(self, state_store: StateStore) -> None:
        results = await asyncio.gather(
            *(state_store.compare_and_set("k", None, f"w{i}".encode()) for i in range(50))
        )
        assert results.count(True) == 1
        winner = results.index(True)
        assert await state_store.get("k") == f"w{winner}".encode()

    async def test_concurrent_cas_swap_has_one_winner(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v0")
        results = await asyncio.gather(
            *(state_store.compare_and_set("k", b"v0", f"w{i}".encode()) for i in range(50))
        )
        assert results.count(True) == 1
        assert await state_store.get("k") == f"w{results.index(True)}".encode()

    async def test_concurrent_cas_increments_are_all_counted(self, state_store: StateStore) -> None:
        async def bump() -> int:
            wins = 0
            for _ in range(20):
                current = await state_store.get("n")
                new = str(int(current or b"0") + 1).encode()
                if await state_store.compare_and_set("n", current, new):
                    wins += 1
                await asyncio.sleep(0)
            return wins

        wins = await asyncio.gather(*(bump() for _ in range(5)))
        assert await state_store.get("n") == str(sum(wins)).encode()
        assert sum(wins) >= 20

    async def test_cas_with_ttl_expires(self, state_store: StateStore) -> None:
        assert await state_store.compare_and_set("k", None, b"v", ttl=self.short_ttl)
        assert await self.expires(lambda: _is_none(state_store.get("k")))

    async def test_cas_swap_with_ttl(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v1")
        assert await state_store.compare_and_set("k", b"v1", b"v2", ttl=self.short_ttl)
        assert await self.expires(lambda: _is_none(state_store.get("k")))

    async def test_cas_create_over_expired_value(self, state_store: StateStore) -> None:
        await state_store.set("k", b"old", ttl=self.short_ttl)
        await wait_past(self.short_ttl)
        assert await state_store.compare_and_set("k", b"old", b"x") is False
        assert await state_store.compare_and_set("k", None, b"new") is True
        assert await state_store.get("k") == b"new"

    # -- keys -----------------------------------------------------------------------
    async def test_keys_sorted_with_prefix(self, state_store: StateStore) -> None:
        for key in ("a/c", "a/a", "a/b/x", "a", "a0", "a.", "b/a", "A/a"):
            await state_store.set(key, b"v")
        assert await state_store.keys("a/") == ["a/a", "a/b/x", "a/c"]
        assert await state_store.keys("a") == ["a", "a.", "a/a", "a/b/x", "a/c", "a0"]
        assert await state_store.keys("") == sorted(
            ["a/c", "a/a", "a/b/x", "a", "a0", "a.", "b/a", "A/a"]
        )
        assert await state_store.keys("zzz") == []

    async def test_keys_at_every_depth(self, state_store: StateStore) -> None:
        stored = ["a/b/c/d/e", "a/b/c/d/f", "a/b/c/x", "a/b/y", "a/z", "q"]
        for key in stored:
            await state_store.set(key, b"1")
        for prefix in ["", "a", "a/", "a/b/c/d/", "a/b/c/d/e", "a/b/c/", "a/b/c", "q", "zz/"]:
            assert await state_store.keys(prefix) == [k for k in stored if k.startswith(prefix)]
        assert await state_store.delete_prefix("a/b/c/d/") == 2
        assert await state_store.keys("a/b/") == ["a/b/c/x", "a/b/y"]

    async def test_keys_limit(self, state_store: StateStore) -> None:
        for i in range(10):
            await state_store.set(f"p/{i:02d}", b"v")
        assert await state_store.keys("p/", limit=3) == ["p/00", "p/01", "p/02"]
        assert await state_store.keys("p/", limit=100) == [f"p/{i:02d}" for i in range(10)]
        assert await state_store.keys("p/", limit=0) == []

    async def test_keys_lists_plain_values_only(self, state_store: StateStore) -> None:
        await state_store.set("k/value", b"v")
        await state_store.increment("k/counter")
        await state_store.add_to_set("k/set", "m")
        await state_store.append("k/list", b"i")
        assert await state_store.keys("k/") == ["k/counter", "k/value"]

    async def test_keys_skip_expired(self, state_store: StateStore) -> None:
        await state_store.set("k/short", b"v", ttl=self.short_ttl)
        await state_store.set("k/long", b"v", ttl=LONG_TTL)
        await state_store.set("k/none", b"v")
        assert await self.expires(lambda: _equals(state_store.keys("k/"), ["k/long", "k/none"]))

    # -- sets -----------------------------------------------------------------------
    async def test_add_to_set_counts_each_member_once(self, state_store: StateStore) -> None:
        assert await state_store.add_to_set("s", "a") == 1
        assert await state_store.add_to_set("s", "b") == 2
        assert await state_store.add_to_set("s", "a") == 2
        assert await state_store.add_to_set("s", "b") == 2
        assert await state_store.add_to_set("s", "c") == 3
        assert await state_store.add_to_set("other", "a") == 1

    async def test_set_members_in_first_added_order(self, state_store: StateStore) -> None:
        for member in ("m3", "m1", "m2", "m1", "m3", "m0"):
            await state_store.add_to_set("s", member)
        assert await state_store.set_members("s") == ["m3", "m1", "m2", "m0"]

    async def test_set_members_absent_is_empty(self, state_store: StateStore) -> None:
        assert await state_store.set_members("absent") == []

    async def test_set_members_are_strings(self, state_store: StateStore) -> None:
        for member in ("", "é😀", "with space", "a/b", "0"):
            await state_store.add_to_set("s", member)
        assert await state_store.set_members("s") == ["", "é😀", "with space", "a/b", "0"]

    async def test_remove_from_set(self, state_store: StateStore) -> None:
        await state_store.add_to_set("s", "a")
        await state_store.add_to_set("s", "b")
        assert await state_store.remove_from_set("s", "a") is True
        assert await state_store.remove_from_set("s", "a") is False
        assert await state_store.remove_from_set("s", "zzz") is False
        assert await state_store.remove_from_set("absent", "a") is False
        assert await state_store.set_members("s") == ["b"]
        assert await state_store.remove_from_set("s", "b") is True
        assert await state_store.set_members("s") == []
        assert await state_store.add_to_set("s", "c") == 1

    async def test_readded_member_goes_last(self, state_store: StateStore) -> None:
        for member in ("a", "b", "c"):
            await state_store.add_to_set("s", member)
        await state_store.remove_from_set("s", "a")
        assert await state_store.add_to_set("s", "a") == 3
        assert await state_store.set_members("s") == ["b", "c", "a"]

    async def test_concurrent_add_to_set(self, state_store: StateStore) -> None:
        members = [f"m{i % 20}" for i in range(60)]
        sizes = await asyncio.gather(*(state_store.add_to_set("s", m) for m in members))
        assert sorted(await state_store.set_members("s")) == sorted({*members})
        # each new member made the set one bigger, and its caller saw that size
        assert set(sizes) == set(range(1, 21))

    async def test_concurrent_remove_has_one_winner(self, state_store: StateStore) -> None:
        await state_store.add_to_set("s", "m")
        await state_store.add_to_set("s", "keep")
        results = await asyncio.gather(*(state_store.remove_from_set("s", "m") for _ in range(30)))
        assert results.count(True) == 1
        assert await state_store.set_members("s") == ["keep"]

    # -- counters -------------------------------------------------------------------
    async def test_increment_from_absent(self, state_store: StateStore) -> None:
        assert await state_store.increment("n") == 1
        assert await state_store.increment("n") == 2
        assert await state_store.increment("n", 5) == 7
        assert await state_store.increment("n", -10) == -3
        assert await state_store.increment("m", 0) == 0
        assert await state_store.increment("big", 2**40) == 2**40

    async def test_increment_reads_as_ascii_digits(self, state_store: StateStore) -> None:
        await state_store.increment("n", 42)
        assert await state_store.get("n") == b"42"
        await state_store.increment("neg", -7)
        assert await state_store.get("neg") == b"-7"

    async def test_increment_existing_value(self, state_store: StateStore) -> None:
        await state_store.set("n", b"10")
        assert await state_store.increment("n", 3) == 13
        assert await state_store.compare_and_set("n", b"13", b"20") is True
        assert await state_store.increment("n") == 21

    async def test_concurrent_increments(self, state_store: StateStore) -> None:
        results = await asyncio.gather(*(state_store.increment("n") for _ in range(50)))
        assert sorted(results) == list(range(1, 51))
        assert await state_store.get("n") == b"50"

    async def test_increment_with_ttl_expires(self, state_store: StateStore) -> None:
        await state_store.increment("n", ttl=self.short_ttl)
        assert await self.expires(lambda: _is_none(state_store.get("n")))
        assert await state_store.increment("n") == 1

    # -- lists ----------------------------------------------------------------------
    async def test_lists_keep_order(self, state_store: StateStore) -> None:
        items = [f"item {i}".encode() for i in range(30)] + [b"", NUL_BYTES, b"item 3"]
        for item in items:
            await state_store.append("l", item)
        assert await state_store.read_list("l") == items
        assert all(isinstance(item, bytes) for item in await state_store.read_list("l"))

    async def test_read_list_absent_is_empty(self, state_store: StateStore) -> None:
        assert await state_store.read_list("absent") == []

    async def test_lists_are_separate(self, state_store: StateStore) -> None:
        await state_store.append("l1", b"a")
        await state_store.append("l2", b"b")
        await state_store.append("l1", b"c")
        assert await state_store.read_list("l1") == [b"a", b"c"]
        assert await state_store.read_list("l2") == [b"b"]

    async def test_concurrent_appends_all_kept(self, state_store: StateStore) -> None:
        await asyncio.gather(*(state_store.append("l", str(i).encode()) for i in range(40)))
        assert sorted(await state_store.read_list("l")) == sorted(
            str(i).encode() for i in range(40)
        )

    # -- namespaces -----------------------------------------------------------------
    async def test_kinds_have_separate_namespaces(self, state_store: StateStore) -> None:
        await state_store.set("k", b"value")
        await state_store.add_to_set("k", "member")
        await state_store.append("k", b"item")
        assert await state_store.get("k") == b"value"
        assert await state_store.set_members("k") == ["member"]
        assert await state_store.read_list("k") == [b"item"]
        assert await state_store.keys("k") == ["k"]

    async def test_set_only_key_reads_as_absent_value(self, state_store: StateStore) -> None:
        await state_store.add_to_set("s", "member")
        await state_store.append("l", b"item")
        assert await state_store.get("s") is None
        assert await state_store.get("l") is None
        assert await state_store.read_list("s") == []
        assert await state_store.set_members("l") == []
        assert await state_store.compare_and_set("s", None, b"v") is True

    # -- delete ---------------------------------------------------------------------
    async def test_delete_every_kind(self, state_store: StateStore) -> None:
        await state_store.set("k", b"value")
        await state_store.add_to_set("k", "member")
        await state_store.append("k", b"item")
        await state_store.set("k2", b"other")
        await state_store.delete("k")
        assert await state_store.get("k") is None
        assert await state_store.set_members("k") == []
        assert await state_store.read_list("k") == []
        assert await state_store.get("k2") == b"other"
        await state_store.delete("k")  # absent is fine
        await state_store.delete("never")

    async def test_delete_then_recreate(self, state_store: StateStore) -> None:
        await state_store.add_to_set("s", "a")
        await state_store.append("l", b"a")
        await state_store.delete("s")
        await state_store.delete("l")
        assert await state_store.add_to_set("s", "b") == 1
        await state_store.append("l", b"b")
        assert await state_store.read_list("l") == [b"b"]

    async def test_delete_prefix_every_kind(self, state_store: StateStore) -> None:
        await state_store.set("r/1/a", b"v")
        await state_store.increment("r/1/n")
        await state_store.add_to_set("r/1/s", "m")
        await state_store.add_to_set("r/1/s", "m2")
        await state_store.append("r/1/l", b"i")
        await state_store.append("r/1/l", b"j")
        # neighbours that must survive: other prefix, the prefix without its slash,
        # a key sorting right after the prefix range
        await state_store.set("r/10/a", b"keep")
        await state_store.set("r/1", b"keep")
        await state_store.add_to_set("r/2/s", "keep")
        await state_store.append("r/10/l", b"keep")
        await state_store.set("r/1\U0010ffff", b"keep")
        await state_store.set("r/10", b"keep")
        assert await state_store.delete_prefix("r/1/") == 4
        assert await state_store.keys("r/1/") == []
        assert await state_store.set_members("r/1/s") == []
        assert await state_store.read_list("r/1/l") == []
        assert await state_store.get("r/10/a") == b"keep"
        assert await state_store.get("r/1") == b"keep"
        assert await state_store.get("r/10") == b"keep"
        assert await state_store.get("r/1\U0010ffff") == b"keep"
        assert await state_store.set_members("r/2/s") == ["keep"]
        assert await state_store.read_list("r/10/l") == [b"keep"]
        assert await state_store.delete_prefix("r/1/") == 0
        assert await state_store.delete_prefix("nothing/") == 0

    async def test_delete_prefix_everything(self, state_store: StateStore) -> None:
        await state_store.set("a", b"v")
        await state_store.add_to_set("b", "m")
        await state_store.append("c", b"i")
        await state_store.set("\U0010ffff", b"v")
        assert await state_store.delete_prefix("") == 4
        assert await state_store.keys("") == []
        assert await state_store.set_members("b") == []
        assert await state_store.read_list("c") == []

    async def test_delete_prefix_does_not_count_expired(self, state_store: StateStore) -> None:
        await state_store.set("p/gone", b"v", ttl=self.short_ttl)
        await state_store.add_to_set("p/gone-set", "m", ttl=self.short_ttl)
        await state_store.append("p/gone-list", b"i", ttl=self.short_ttl)
        await state_store.set("p/live", b"v")
        await wait_past(self.short_ttl)
        assert await state_store.delete_prefix("p/") == 1

    # -- expiry ---------------------------------------------------------------------
    async def test_value_ttl(self, state_store: StateStore) -> None:
        await state_store.set("short", b"v", ttl=self.short_ttl)
        await state_store.set("long", b"v", ttl=LONG_TTL)
        await state_store.set("forever", b"v")
        assert await state_store.get("long") == b"v"
        assert await self.expires(lambda: _is_none(state_store.get("short")))
        assert await state_store.get("long") == b"v"
        assert await state_store.get("forever") == b"v"
        assert await state_store.get_many(["short", "long"]) == [None, b"v"]

    async def test_set_without_ttl_clears_ttl(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v1", ttl=self.short_ttl)
        await state_store.set("k", b"v2")
        await wait_past(self.short_ttl)
        assert await state_store.get("k") == b"v2"

    async def test_expired_value_can_be_set_again(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v1", ttl=self.short_ttl)
        await wait_past(self.short_ttl)
        await state_store.set("k", b"v2")
        assert await state_store.get("k") == b"v2"

    async def test_set_ttl(self, state_store: StateStore) -> None:
        await state_store.add_to_set("s", "a", ttl=self.pair_ttl)
        await state_store.add_to_set("s", "b")  # no ttl: the set keeps its deadline
        await state_store.add_to_set("keep", "a", ttl=LONG_TTL)
        await wait_past(self.pair_ttl)
        assert await self.expires(lambda: _equals(state_store.set_members("s"), []))
        assert await state_store.remove_from_set("s", "a") is False
        assert await state_store.add_to_set("s", "c") == 1
        assert await state_store.set_members("s") == ["c"]
        assert await state_store.set_members("keep") == ["a"]

    async def test_set_ttl_refreshed_by_add(self, state_store: StateStore) -> None:
        await state_store.add_to_set("s", "a", ttl=self.pair_ttl)
        await state_store.add_to_set("s", "b", ttl=LONG_TTL)
        await wait_past(self.pair_ttl)
        assert await state_store.set_members("s") == ["a", "b"]

    async def test_expired_set_starts_again(self, state_store: StateStore) -> None:
        await state_store.add_to_set("s", "a", ttl=self.short_ttl)
        await state_store.add_to_set("s", "b", ttl=self.short_ttl)
        await wait_past(self.short_ttl)
        assert await state_store.add_to_set("s", "b") == 1
        assert await state_store.add_to_set("s", "a") == 2
        assert await state_store.set_members("s") == ["b", "a"]

    async def test_list_ttl(self, state_store: StateStore) -> None:
        await state_store.append("l", b"a", ttl=self.pair_ttl)
        await state_store.append("l", b"b")  # no ttl: the list keeps its deadline
        await state_store.append("keep", b"a", ttl=LONG_TTL)
        await wait_past(self.pair_ttl)
        assert await self.expires(lambda: _equals(state_store.read_list("l"), []))
        await state_store.append("l", b"c")
        assert await state_store.read_list("l") == [b"c"]
        assert await state_store.read_list("keep") == [b"a"]

    async def test_list_ttl_refreshed_by_append(self, state_store: StateStore) -> None:
        await state_store.append("l", b"a", ttl=self.pair_ttl)
        await state_store.append("l", b"b", ttl=LONG_TTL)
        await wait_past(self.pair_ttl)
        assert await state_store.read_list("l") == [b"a", b"b"]

    async def test_expired_counter_starts_from_zero(self, state_store: StateStore) -> None:
        await state_store.increment("n", 10, ttl=self.short_ttl)
        await wait_past(self.short_ttl)
        assert await state_store.increment("n") == 1

    async def test_expire_value(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v")
        await state_store.set("other", b"v")
        await state_store.expire("k", self.short_ttl)
        assert await self.expires(lambda: _is_none(state_store.get("k")))
        assert await state_store.get("other") == b"v"

    async def test_expire_set(self, state_store: StateStore) -> None:
        await state_store.add_to_set("s", "a")
        await state_store.add_to_set("s", "b")
        await state_store.expire("s", self.short_ttl)
        assert await self.expires(lambda: _equals(state_store.set_members("s"), []))

    async def test_expire_list(self, state_store: StateStore) -> None:
        await state_store.append("l", b"a")
        await state_store.append("l", b"b")
        await state_store.expire("l", self.short_ttl)
        assert await self.expires(lambda: _equals(state_store.read_list("l"), []))

    async def test_expire_every_kind_at_once(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v")
        await state_store.add_to_set("k", "m")
        await state_store.append("k", b"i")
        await state_store.expire("k", self.short_ttl)

        async def all_gone() -> bool:
            return (
                await state_store.get("k") is None
                and await state_store.set_members("k") == []
                and await state_store.read_list("k") == []
            )

        assert await self.expires(all_gone)

    async def test_expire_extends(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v", ttl=self.short_ttl)
        await state_store.add_to_set("s", "m", ttl=self.short_ttl)
        await state_store.append("l", b"i", ttl=self.short_ttl)
        for key in ("k", "s", "l"):
            await state_store.expire(key, LONG_TTL)
        await wait_past(self.short_ttl)
        assert await state_store.get("k") == b"v"
        assert await state_store.set_members("s") == ["m"]
        assert await state_store.read_list("l") == [b"i"]

    async def test_expire_absent_key_creates_nothing(self, state_store: StateStore) -> None:
        await state_store.expire("absent", LONG_TTL)
        assert await state_store.get("absent") is None
        assert await state_store.set_members("absent") == []
        assert await state_store.read_list("absent") == []
        assert await state_store.keys("") == []

    async def test_expire_does_not_revive_expired_key(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v", ttl=self.short_ttl)
        await state_store.add_to_set("s", "m", ttl=self.short_ttl)
        await state_store.append("l", b"i", ttl=self.short_ttl)
        await wait_past(self.short_ttl)
        for key in ("k", "s", "l"):
            await state_store.expire(key, LONG_TTL)
        assert await state_store.get("k") is None
        assert await state_store.set_members("s") == []
        assert await state_store.read_list("l") == []

    async def test_delete_clears_ttl(self, state_store: StateStore) -> None:
        await state_store.set("k", b"v", ttl=self.short_ttl)
        await state_store.delete("k")
        await state_store.set("k", b"again")
        await wait_past(self.short_ttl)
        assert await state_store.get("k") == b"again"


    # -- list pages -----------------------------------------------------------------------
    async def test_read_list_slices_like_python(self, state_store: StateStore) -> None:
        items = [f"i{n}".encode() for n in range(7)]
        for item in items:
            await state_store.append("l", item)
        for start, stop in [(0, None), (2, 5), (0, 3), (5, None), (-1, None), (-3, -1),
                            (-10, 2), (6, 100), (7, None), (3, 3), (4, 2)]:
            assert await state_store.read_list("l", start=start, stop=stop) == items[start:stop]
        assert await state_store.list_length("l") == 7
        assert await state_store.list_length("absent") == 0
        assert await state_store.read_list("absent", start=-1) == []

    # -- ordered indexes ------------------------------------------------------------------
    async def test_index_orders_by_score_then_member(self, state_store: StateStore) -> None:
        for score, member in [(3.0, "c"), (1.0, "z"), (2.0, "b"), (2.0, "a"), (-1.5, "n")]:
            await state_store.index_put("ix", member, score)
        everything = [(-1.5, "n"), (1.0, "z"), (2.0, "a"), (2.0, "b"), (3.0, "c")]
        assert await state_store.index_range("ix", limit=10) == everything
        assert await state_store.index_range("ix", limit=10, descending=True) == everything[::-1]
        assert await state_store.index_size("ix") == 5
        assert await state_store.index_range("absent", limit=10) == []
        assert await state_store.index_size("absent") == 0

    async def test_index_ranges_are_exclusive_and_limited(self, state_store: StateStore) -> None:
        entries = [(float(n // 2), f"m{n}") for n in range(10)]  # two members a score
        for score, member in entries:
            await state_store.index_put("ix", member, score)
        ranged = state_store.index_range
        assert await ranged("ix", after=(1.0, "m2"), limit=3) == entries[3:6]
        assert await ranged("ix", before=(3.0, "m6"), limit=2) == entries[:2]
        assert await ranged("ix", before=(3.0, "m6"), limit=2, descending=True) == [
            entries[5], entries[4]]
        assert await ranged("ix", after=(0.0, "m0"), before=(2.0, "m5"), limit=10,
                            descending=True) == entries[1:5][::-1]
        assert await ranged("ix", before=(2.0, ""), limit=10) == entries[:4]
        assert await ranged("ix", after=(4.0, "m9"), limit=10) == []
        assert await ranged("ix", limit=0) == []

    async def test_index_put_moves_and_drop_removes(self, state_store: StateStore) -> None:
        await state_store.index_put("ix", "a", 1.0)
        await state_store.index_put("ix", "b", 2.0)
        await state_store.index_put("ix", "a", 3.0)  # moved, not added twice
        assert await state_store.index_range("ix", limit=10) == [(2.0, "b"), (3.0, "a")]
        await state_store.index_drop("ix", "b")
        await state_store.index_drop("ix", "absent")
        assert await state_store.index_range("ix", limit=10) == [(3.0, "a")]
        await state_store.index_drop("ix", "a")
        assert await state_store.index_size("ix") == 0

    async def test_index_keeps_large_scores_and_odd_members(self, state_store: StateStore) -> None:
        members = ["a/b:c", "x y", "é", "~1", "0" * 100]
        for number, member in enumerate(members):
            await state_store.index_put("ix", member, 1796000000000.0 + number)
        found = await state_store.index_range("ix", limit=10)
        assert [member for _, member in found] == members
        assert found[0][0] == 1796000000000.0

    async def test_commit_writes_indexes_with_its_requirements(
        self, state_store: StateStore
    ) -> None:
        await state_store.index_put("old", "r1", 1.0)
        moved = await state_store.commit(
            [Put("k", b"v"), IndexDrop("old", "r1"), IndexPut("new", "r1", 2.0)],
            require={"k": None},
        )
        assert moved
        assert await state_store.index_range("old", limit=10) == []
        assert await state_store.index_range("new", limit=10) == [(2.0, "r1")]
        refused = await state_store.commit(
            [IndexPut("new", "r2", 3.0), IndexDrop("new", "r1")], require={"k": None}
        )
        assert not refused
        assert await state_store.index_range("new", limit=10) == [(2.0, "r1")]

    async def test_indexes_are_separate_and_go_with_delete(self, state_store: StateStore) -> None:
        await state_store.set("ix", b"value")
        await state_store.index_put("ix", "m", 1.0)
        assert await state_store.get("ix") == b"value"
        assert await state_store.keys("ix") == ["ix"]
        await state_store.delete("ix")
        assert await state_store.get("ix") is None
        assert await state_store.index_size("ix") == 0
        await state_store.index_put("p/a/ix", "m", 1.0)
        await state_store.index_put("p/b", "m", 1.0)
        assert await state_store.delete_prefix("p/a/") == 1
        assert await state_store.index_size("p/a/ix") == 0
        assert await state_store.index_size("p/b") == 1

    async def test_index_orders_members_by_code_point(self, state_store: StateStore) -> None:
        # Not a locale's collation ("B" after "a"), nor UTF-16's order (U+FFFF after
        # U+1F600): members of one score compare as Python compares str.
        members = ["é", "z", "B", "a", "\U0001f600", "\uffff", "a b", "ab", "A", "~"]
        for member in members:
            await state_store.index_put("ix", member, 5.0)
        assert await state_store.index_range("ix", limit=20) == [(5.0, m) for m in sorted(members)]
        assert await state_store.index_range("ix", after=(5.0, "a"), before=(5.0, "é"),
                                             limit=20) == [(5.0, "a b"), (5.0, "ab"), (5.0, "z"),
                                                           (5.0, "~")]

    async def test_index_ttl(self, state_store: StateStore) -> None:
        await state_store.index_put("ix", "a", 1.0, ttl=self.pair_ttl)
        await state_store.index_put("ix", "b", 2.0)  # no ttl: the index keeps its deadline
        await state_store.index_put("keep", "a", 1.0, ttl=LONG_TTL)
        await wait_past(self.pair_ttl)
        assert await self.expires(lambda: _index_empty(state_store, "ix"))
        await state_store.index_put("ix", "c", 3.0)  # a new index, without the old ones
        assert await state_store.index_range("ix", limit=10) == [(3.0, "c")]
        assert await state_store.index_range("keep", limit=10) == [(1.0, "a")]

    async def test_index_ttl_refreshed_by_put(self, state_store: StateStore) -> None:
        await state_store.index_put("ix", "a", 1.0, ttl=self.pair_ttl)
        await state_store.index_put("ix", "b", 2.0, ttl=LONG_TTL)
        await wait_past(self.pair_ttl)
        assert await state_store.index_range("ix", limit=10) == [(1.0, "a"), (2.0, "b")]

    async def test_index_ttl_and_expire(self, state_store: StateStore) -> None:
        await state_store.index_put("short", "m", 1.0, ttl=self.short_ttl)
        await state_store.index_put("kept", "m", 1.0, ttl=self.short_ttl)
        await state_store.expire("kept", LONG_TTL)
        assert await self.expires(lambda: _index_empty(state_store, "short"))
        assert await state_store.index_range("kept", limit=10) == [(1.0, "m")]


async def _index_empty(store: StateStore, index: str) -> bool:
    return await store.index_size(index) == 0 and await store.index_range(index, limit=1) == []


class DataStoreContract:
    """Tests of :class:`DataStore`; subclasses provide the ``data_store`` fixture."""

    short_ttl = 0.05
    pair_ttl = 0.3
    """For tests whose second operation must land before the first one's deadline: long
    enough that a loaded machine does not miss it, short enough to wait out."""

    async def expires(self, check: Callable[[], Awaitable[bool]]) -> bool:
        return await eventually(check, self.short_ttl + EXPIRY_GRACE)

    async def test_get_absent_is_none(self, data_store: DataStore) -> None:
        assert await data_store.get("absent") is None

    async def test_put_then_get(self, data_store: DataStore) -> None:
        await data_store.put("R/o/n1", b"output")
        value = await data_store.get("R/o/n1")
        assert value == b"output"
        assert isinstance(value, bytes)

    async def test_put_overwrites(self, data_store: DataStore) -> None:
        await data_store.put("k", b"1")
        await data_store.put("k", b"2")
        assert await data_store.get("k") == b"2"

    async def test_binary_and_empty(self, data_store: DataStore) -> None:
        await data_store.put("bin", NUL_BYTES)
        await data_store.put("empty", b"")
        assert await data_store.get("bin") == NUL_BYTES
        assert await data_store.get("empty") == b""

    async def test_large_value(self, data_store: DataStore) -> None:
        chunk = bytes(range(256)) * 4096  # 1 MiB of every byte value
        big = b"".join(chunk[i:] + chunk[:i] for i in range(8))  # 8 MiB
        await data_store.put("big", big)
        assert await data_store.get("big") == big

    async def test_many_keys(self, data_store: DataStore) -> None:
        for i in range(100):
            await data_store.put(f"R/o/{i}", str(i).encode())
        for i in range(100):
            assert await data_store.get(f"R/o/{i}") == str(i).encode()

    async def test_delete(self, data_store: DataStore) -> None:
        await data_store.put("k", b"v")
        await data_store.put("k2", b"v")
        await data_store.delete("k")
        assert await data_store.get("k") is None
        assert await data_store.get("k2") == b"v"
        await data_store.delete("k")
        await data_store.delete("never")

    async def test_delete_prefix(self, data_store: DataStore) -> None:
        for key in ("R1/in", "R1/o/a", "R1/o/b", "R10/in", "R1", "R2/in", "result/R1"):
            await data_store.put(key, b"v")
        assert await data_store.delete_prefix("R1/") == 3
        for key in ("R1/in", "R1/o/a", "R1/o/b"):
            assert await data_store.get(key) is None
        for key in ("R10/in", "R1", "R2/in", "result/R1"):
            assert await data_store.get(key) == b"v"
        assert await data_store.delete_prefix("R1/") == 0
        assert await data_store.delete_prefix("") == 4
        assert await data_store.get("R10/in") is None

    async def test_delete_prefix_does_not_count_expired(self, data_store: DataStore) -> None:
        await data_store.put("p/gone", b"v", ttl=self.short_ttl)
        await data_store.put("p/live", b"v")
        await wait_past(self.short_ttl)
        assert await data_store.delete_prefix("p/") == 1

    async def test_ttl(self, data_store: DataStore) -> None:
        await data_store.put("short", b"v", ttl=self.short_ttl)
        await data_store.put("long", b"v", ttl=LONG_TTL)
        await data_store.put("forever", b"v")
        assert await data_store.get("long") == b"v"
        assert await self.expires(lambda: _is_none(data_store.get("short")))
        assert await data_store.get("long") == b"v"
        assert await data_store.get("forever") == b"v"

    async def test_put_without_ttl_clears_ttl(self, data_store: DataStore) -> None:
        await data_store.put("k", b"v1", ttl=self.short_ttl)
        await data_store.put("k", b"v2")
        await wait_past(self.short_ttl)
        assert await data_store.get("k") == b"v2"

    async def test_expired_key_can_be_put_again(self, data_store: DataStore) -> None:
        await data_store.put("k", b"v1", ttl=self.short_ttl)
        await wait_past(self.short_ttl)
        await data_store.put("k", b"v2")
        assert await data_store.get("k") == b"v2"

    async def test_expire(self, data_store: DataStore) -> None:
        await data_store.put("k", b"v")
        await data_store.put("other", b"v")
        await data_store.expire("k", self.short_ttl)
        assert await self.expires(lambda: _is_none(data_store.get("k")))
        assert await data_store.get("other") == b"v"

    async def test_expire_extends(self, data_store: DataStore) -> None:
        await data_store.put("k", b"v", ttl=self.short_ttl)
        await data_store.expire("k", LONG_TTL)
        await wait_past(self.short_ttl)
        assert await data_store.get("k") == b"v"

    async def test_expire_absent_creates_nothing(self, data_store: DataStore) -> None:
        await data_store.expire("absent", LONG_TTL)
        assert await data_store.get("absent") is None

    async def test_expire_does_not_revive_expired_key(self, data_store: DataStore) -> None:
        await data_store.put("k", b"v", ttl=self.short_ttl)
        await wait_past(self.short_ttl)
        await data_store.expire("k", LONG_TTL)
        assert await data_store.get("k") is None

    async def test_concurrent_puts(self, data_store: DataStore) -> None:
        await asyncio.gather(*(data_store.put(f"k{i}", bytes([i]) * 1000) for i in range(30)))
        for i in range(30):
            assert await data_store.get(f"k{i}") == bytes([i]) * 1000


async def _is_none(result: Awaitable[object]) -> bool:
    return await result is None


async def _equals(result: Awaitable[object], expected: object) -> bool:
    return await result == expected
