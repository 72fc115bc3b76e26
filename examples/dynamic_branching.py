"""Dynamic branching: a conditional branch whose ``c1`` branch holds a foreach branch.

The "Dynamic branching" example of the original faas-flow README, made to do real work
(count the words of a text, and shout it back when it contains a ``!``)::

    n1: modify (collapse whitespace)
     |
    C: conditional on the text ---------------------------------+
     |  c1 (the text has words):                                |
     |     F: foreach distinct word (case-insensitive)          |
     |        n1: modify -> "<word>=<count>"                    |
     |     F's aggregator joins the tallies: "a=2, b=1"         |
     |  c2 (the text contains "!"):                             |
     |     n1: func1 (upper-case), then modify ("!" -> "!!!")   |
     |  C's aggregator: one "<key>: <result>" line per branch   |
     +----------------------------------------------------------+
     |
    n2: modify ("(empty)" when no branch ran)

Both kinds of dynamic branch decide at run time what runs. ``condition(data)`` returns
the keys of the branches to run (each gets the same input); ``foreach(data)`` returns a
``dict``, and the branch DAG runs once per item with the item's value as its input. An
aggregator then gets the branches' results keyed by branch key: for a conditional in
the declared key order, for a foreach in the order ``foreach`` returned the items.
When no branch is picked (empty input here) the aggregator gets ``{}``.

Run it::

    faasflow run examples/dynamic_branching.py --data "Go go GO, team!"
    # prints:
    # c1: go=2, go,=1, team!=1
    # c2: GO GO GO, TEAM!!!
"""

from __future__ import annotations

from faasflow import Context, Workflow

INPUTS: list[tuple[bytes, str]] = [
    (b"Go go GO, team!", ""),
    (b"a b a c b a", ""),
    (b"", ""),
    (b"!", ""),
    ("\u3000\u00a0 \n".encode(), ""),  # whitespace only, some of it beyond ASCII
    ("Ça va? ça VA! 🎉 🎉".encode(), ""),
    # branch keys with characters that mean something in node paths
    (b"a/b [x] 100% a/b C[c1] %2F", ""),
    (b"The quick brown fox jumps over the lazy dog! " * 100, ""),
]


def collapse_whitespace(data: bytes) -> bytes:
    """Trim the text and turn every run of (Unicode) whitespace into one space."""
    return " ".join(data.decode("utf-8").split()).encode("utf-8")


def pick_branches(data: bytes) -> list[str]:
    """Condition of ``C``: ``c1`` when there are words, ``c2`` as well when there is a "!"."""
    picked = []
    if data.decode("utf-8").split():
        picked.append("c1")
    if b"!" in data:
        picked.append("c2")
    return picked


def words_by_key(data: bytes) -> dict[str, bytes]:
    """Foreach of ``F``: one item per distinct word (lower-cased), in first-seen order;
    the item's value is every occurrence of the word, space-separated."""
    groups: dict[str, list[str]] = {}
    for word in data.decode("utf-8").split():
        groups.setdefault(word.lower(), []).append(word)
    return {key: " ".join(words).encode("utf-8") for key, words in groups.items()}


def tally(occurrences: bytes) -> bytes:
    """The foreach branch: ``"Go go GO,"``... -> ``"go=3"``."""
    words = occurrences.decode("utf-8").split()
    return f"{words[0].lower()}={len(words)}".encode()


def join_tallies(results: dict[str, bytes]) -> bytes:
    """``F``'s aggregator: the tallies, in the order the words first appeared."""
    return b", ".join(results.values())


def triple_bangs(data: bytes) -> bytes:
    return data.replace(b"!", b"!!!")


def one_line_per_branch(results: dict[str, bytes]) -> bytes:
    """``C``'s aggregator: ``c1: ...`` and/or ``c2: ...``; nothing when no branch ran."""
    return b"\n".join(key.encode() + b": " + value for key, value in results.items())


def say_empty(data: bytes) -> bytes:
    return data or b"(empty)"


def define(flow: Workflow, context: Context) -> None:
    dag = flow.dag()
    dag.node("n1").modify(collapse_whitespace)

    branches = dag.conditional_branch(
        "C", ["c1", "c2"], pick_branches, aggregator=one_line_per_branch
    )

    # c1: count the words, one foreach branch per distinct word.
    foreach_dag = branches["c1"].foreach_branch("F", words_by_key, aggregator=join_tallies)
    foreach_dag.node("n1").modify(tally)

    # c2: shout it back.
    branches["c2"].node("n1").apply("func1").modify(triple_bangs)

    dag.node("n2").modify(say_empty)
    dag.edge("n1", "C")
    dag.edge("C", "n2")


def expected(data: bytes, query: str = "") -> bytes:
    """What the flow answers, computed without faasflow."""
    words = data.decode("utf-8").split()
    text = " ".join(words)
    lines = []
    if words:
        counts: dict[str, int] = {}
        for word in words:
            counts[word.lower()] = counts.get(word.lower(), 0) + 1
        lines.append("c1: " + ", ".join(f"{word}={n}" for word, n in counts.items()))
    if "!" in text:
        lines.append("c2: " + text.upper().replace("!", "!!!"))
    return "\n".join(lines).encode("utf-8") or b"(empty)"
