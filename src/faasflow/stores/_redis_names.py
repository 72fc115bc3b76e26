"""Where the Redis stores keep a key: its name in Redis, its folder, its hash slot.

A store key becomes ``{namespace}{kind}:{tag}rest``: ``kind`` keeps the contract's
separate namespaces apart (see :mod:`faasflow.stores.redis`), and the key's folder — its
first ``depth`` ``/``-separated segments — is written in braces, a Redis Cluster *hash
tag*: Redis hashes only the text between the braces, so every key of one folder (one
request: ``r/R/…`` in the state store, ``R/…`` in the data store), the folder's own
record ``r/R`` and the folder's index set all hash to one slot, and a script or a
transaction over them is valid in a cluster::

    r/R/n/a   ->  faasflow:v:{r/R}/n/a
    r/R       ->  faasflow:v:{r/R}
    h/R       ->  faasflow:l:{h/R}
    r/R/ (its folder index)  ->  faasflow:i:{r/R}/

A namespace with a hash tag of its own (``{app}:``) comes first in every name, so its
braces win: the whole store then hashes to one slot.
"""

from __future__ import annotations

__all__ = ["Names", "glob_escape"]


def glob_escape(text: str) -> str:
    """``text`` as a SCAN pattern that matches it literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class Names:
    """The Redis names of one store's keys.

    Args:
        namespace: the prefix of every name.
        depth: how many leading segments of a key make its folder.
    """

    def __init__(self, namespace: str, depth: int) -> None:
        self.namespace = namespace
        self.depth = depth

    def name(self, kind: str, key: str) -> str:
        """The Redis name of ``key`` in the key space ``kind`` (``v``, ``s``, …)."""
        parts = key.split("/", self.depth)
        if len(parts) > self.depth:
            return f"{self.namespace}{kind}:{{{key[: len(key) - len(parts[-1]) - 1]}}}/{parts[-1]}"
        return f"{self.namespace}{kind}:{{{key}}}"

    def key(self, kind: str, name: bytes) -> str:
        """The store key whose name in ``kind`` is ``name`` (the inverse of :meth:`name`)."""
        tagged = name.decode()[len(self.namespace) + len(kind) + 2 :]  # past "{kind}:{"
        parts = tagged.split("/", self.depth)
        if len(parts) > self.depth:
            # "a/b}/rest": the tag's last segment carries the closing brace.
            parts[self.depth - 1] = parts[self.depth - 1][:-1]
            return "/".join(parts)
        return tagged[:-1]

    def folder(self, key: str) -> str | None:
        """The folder (``r/R/``) that every key starting with ``key`` lies in, or
        ``None`` when ``key`` has fewer than ``depth`` segments before a ``/``."""
        parts = key.split("/", self.depth)
        if len(parts) <= self.depth:
            return None
        return key[: len(key) - len(parts[-1])]

    def folder_index(self, folder: str) -> str:
        """The name of the set listing the names of ``folder``'s keys."""
        return f"{self.namespace}i:{{{folder[:-1]}}}/"

    def index_of(self, key: str) -> str | None:
        """The folder index that lists ``key``, or ``None`` for a key without a folder."""
        folder = self.folder(key)
        return None if folder is None else self.folder_index(folder)

    def prefix(self, kind: str, prefix: str) -> str:
        """The start of the name of every key in ``kind`` starting with ``prefix``."""
        if self.folder(prefix) is not None:
            return self.name(kind, prefix)
        # Still inside the tag: the braces open before it and close after it.
        return f"{self.namespace}{kind}:{{{prefix}"

    def pattern(self, kind: str, prefix: str) -> str:
        """A SCAN pattern for the names of the keys in ``kind`` starting with ``prefix``."""
        return glob_escape(self.prefix(kind, prefix)) + "*"
