"""Filesystem data store: one file per key under a folder, shareable by processes.

``file:///absolute/folder``, or ``file:relative/folder`` (resolved against the working
directory when the URL is read). ``file://relative`` is refused: by RFC 8089 the part
after ``//`` names a host, and reading it as a folder would make ``file://data/x`` and
``file:///data/x`` silently differ.

**Layout.** A key ``a/b/c`` is the file ``a.d/b.d/c.v`` under the folder: every segment
is percent-encoded (everything but lowercase ASCII letters, digits, ``-`` and ``_``
becomes ``%XX`` of its UTF-8 bytes, uppercase letters and ``.`` included) and then gets
a suffix, ``.d`` for a folder, ``.v`` for a value. So no key can name ``..``, an absolute
path or a NUL, and no segment is empty; a key may be both a value and a folder
(``R1`` and ``R1/in``); names are ASCII, so Unicode normalisation (macOS) cannot merge
two keys; and two keys never differ only in letter case, so case-insensitive
filesystems are safe too. A segment is limited by the filesystem's 255-byte names:
about 75 non-ASCII or 230 ASCII characters.

**Durability.** ``put`` writes a temporary file in the value's folder, fsyncs it,
renames it over the value and fsyncs the folder (and every folder it had to create):
a reader, in this process or another, sees the old value or the new one, whole, never a
torn file, and the value survives a crash once ``put`` returns. Concurrent writers of
one key each write their own temporary file; the last rename wins.

**Expiry.** The deadline sits in a 16-byte header at the start of the value file (magic,
then the epoch-seconds deadline as a big-endian double; infinity for none), not in a
sidecar: one rename publishes value and deadline together, so no reader sees one
without the other, and a key is one inode. ``expire`` rewrites the 8 deadline bytes in
place and fsyncs. An expired value reads as absent and is deleted by the reader that
finds it (only if the file is still the one it read, so a value put again survives,
but for a window of one ``stat``); ``delete_prefix`` and :meth:`FileDataStore.purge_expired`
remove the rest. Deadlines use the wall clock of whoever reads.

**Threads.** Every operation is blocking file I/O and runs in a worker thread
(:func:`asyncio.to_thread`), so the event loop never waits on a disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from faasflow.errors import ConfigurationError, StoreError
from faasflow.stores.base import DataStore

__all__ = ["FileDataStore"]

_T = TypeVar("_T")

_MAGIC = b"faasflw1"
_DEADLINE = struct.Struct(">d")
_HEADER = len(_MAGIC) + _DEADLINE.size
_VALUE = ".v"
_FOLDER = ".d"
_TEMP = ".tmp"
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")
_HEX = frozenset("0123456789ABCDEF")
_ATTEMPTS = 10  # of a put racing a delete that removes its folder


def encode_segment(segment: str) -> str:
    """The file-name form of one key segment (without its suffix)."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in segment.encode("utf-8"))


def decode_segment(name: str) -> str:
    """Inverse of :func:`encode_segment`; ``ValueError`` for a name it cannot make."""
    raw = bytearray()
    i = 0
    while i < len(name):
        char = name[i]
        if char == "%":
            digits = name[i + 1 : i + 3]
            if len(digits) != 2 or not set(digits) <= _HEX:
                raise ValueError(name)
            raw.append(int(digits, 16))
            i += 3
        elif ord(char) in _SAFE:
            raw.append(ord(char))
            i += 1
        else:
            raise ValueError(name)
    return raw.decode("utf-8")


def _fsync_folder(folder: Path) -> None:
    """Make a rename, creation or removal in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Corrupt(Exception):
    pass


def _read_header(file: BinaryIO) -> float:
    """The deadline in the header of an open value file (``inf`` for none)."""
    header = file.read(_HEADER)
    if len(header) != _HEADER or not header.startswith(_MAGIC):
        raise _Corrupt
    deadline: float = _DEADLINE.unpack_from(header, len(_MAGIC))[0]
    return deadline


class FileDataStore(DataStore):
    """:class:`DataStore` in a folder: one file per key, safe for several processes.

    Args:
        root: the folder; created (with its parents) by :meth:`open` if missing.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root)
        if not str(root):
            raise ConfigurationError("file store: the folder path is empty")
        self.root = path.absolute()
        if self.root == Path(self.root.anchor):
            raise ConfigurationError(f"file store: refusing the filesystem root {str(root)!r}")

    @classmethod
    def from_url(cls, url: str) -> FileDataStore:
        """The store a ``file:`` URL names, not yet opened.

        ``file:///absolute/folder`` (``file://localhost/absolute/folder`` too) or
        ``file:relative/folder``; the path is percent-decoded; no options.

        Raises:
            ConfigurationError: the URL names a host, no folder, or has options.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "file":
            raise ConfigurationError(f"store URL {url!r}: expected a file: URL")
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(
                f"store URL {url!r}: {parts.netloc!r} would be a host; use "
                "file:///absolute/folder or file:relative/folder"
            )
        if parts.query:
            raise ConfigurationError(f"store URL {url!r}: the file store takes no options")
        if parts.fragment:
            raise ConfigurationError(f"store URL {url!r}: unexpected '#' fragment")
        path = unquote(parts.path)
        if not path.strip("/"):
            raise ConfigurationError(
                f"store URL {url!r}: no folder; use file:///absolute/folder or "
                "file:relative/folder"
            )
        if "\x00" in path:
            raise ConfigurationError(f"store URL {url!r}: NUL in the folder path")
        try:
            return cls(path)
        except ConfigurationError as exc:
            raise ConfigurationError(f"store URL {url!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self.root)!r}>"

    # -- lifetime ---------------------------------------------------------------------
    async def open(self) -> None:
        """Create the folder if it is missing.

        Raises:
            StoreError: the path exists but is not a folder, or cannot be created.
        """
        await self._run("open", None, self._open)

    def _open(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self!r}: not a folder")
        self.root.mkdir(parents=True, exist_ok=True)

    # -- the data store -----------------------------------------------------------------
    async def put(self, key: str, data: bytes, *, ttl: float | None = None) -> None:
        deadline = math.inf if ttl is None else time.time() + ttl
        await self._run("put", key, lambda: self._put(key, data, deadline))

    async def get(self, key: str) -> bytes | None:
        return await self._run("get", key, lambda: self._get(key))

    async def delete(self, key: str) -> None:
        await self._run("delete", key, lambda: self._delete(key))

    async def delete_prefix(self, prefix: str) -> int:
        return await self._run("delete_prefix", prefix, lambda: self._remove(prefix, False))

    async def purge_expired(self, prefix: str = "") -> int:
        """Delete the expired values under ``prefix``; return how many.

        For a periodic sweep of values nobody reads again.
        """
        return await self._run("purge_expired", prefix, lambda: self._remove(prefix, True))

    async def expire(self, key: str, ttl: float) -> None:
        await self._run("expire", key, lambda: self._expire(key, time.time() + ttl))

    # -- paths --------------------------------------------------------------------------
    def _folder(self, segments: list[str]) -> Path:
        return self.root.joinpath(*(encode_segment(s) + _FOLDER for s in segments))

    def _path(self, key: str) -> Path:
        *folders, name = key.split("/")
        return self._folder(folders) / (encode_segment(name) + _VALUE)

    # -- blocking work, in a thread ---------------------------------------------------------
    async def _run(self, what: str, key: str | None, work: Callable[[], _T]) -> _T:
        subject = f" {key!r}" if key is not None else ""
        try:
            return await asyncio.to_thread(work)
        except _Corrupt:
            raise StoreError(
                f"{self!r}: {what}{subject} failed: the file is not a value of this store"
            ) from None
        except OSError as exc:
            raise StoreError(f"{self!r}: {what}{subject} failed: {exc}") from exc

    def _makedirs(self, folder: Path) -> None:
        """Create ``folder`` under the root, fsyncing each parent that gained one."""
        missing: list[Path] = []
        current = folder
        while current != self.root and not current.is_dir():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue  # another writer made it
            _fsync_folder(path.parent)

    def _put(self, key: str, data: bytes, deadline: float) -> None:
        path = self._path(key)
        header = _MAGIC + _DEADLINE.pack(deadline)
        for attempt in range(_ATTEMPTS):
            temp = path.with_name(f"{path.name}.{secrets.token_hex(8)}{_TEMP}")
            try:
                self._makedirs(path.parent)
                with open(temp, "xb") as file:
                    file.write(header)
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temp, path)
            except FileNotFoundError:
                # A delete removed the folder between our mkdir and our write, or our
                # temp file with it: write again.
                temp.unlink(missing_ok=True)
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            # FileNotFoundError: the value was deleted, folder and all, right after.
            with contextlib.suppress(FileNotFoundError):
                _fsync_folder(path.parent)
            return

    def _get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed below, inode kept for the purge
        except FileNotFoundError:
            return None
        with file:
            deadline = _read_header(file)
            if deadline > time.time():
                return file.read()
            inode = os.fstat(file.fileno()).st_ino
        self._purge(path, inode)
        return None

    def _purge(self, path: Path, inode: int) -> None:
        """Unlink the expired file at ``path`` unless a new value replaced it."""
        try:
            if os.stat(path).st_ino == inode:
                path.unlink()
        except FileNotFoundError:
            return
        self._prune(path.parent)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove ``folder`` and its parents while they are empty (never the root)."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or already gone): a writer may be using it
            folder = folder.parent

    def _expire(self, key: str, deadline: float) -> None:
        path = self._path(key)
        try:
            file = open(path, "r+b")  # noqa: SIM115 - closed below, inode kept for the purge
        except FileNotFoundError:
            return
        with file:
            if _read_header(file) <= time.time():
                inode = os.fstat(file.fileno()).st_ino
            else:
                # In place: a value renamed over this one meanwhile keeps its own
                # deadline, as if this expire had come first.
                os.pwrite(file.fileno(), _DEADLINE.pack(deadline), len(_MAGIC))
                os.fsync(file.fileno())
                return
        self._purge(path, inode)  # never revive an expired value

    def _remove(self, prefix: str, expired_only: bool) -> int:
        """Remove the values under ``prefix`` (only expired ones if ``expired_only``).

        Returns how many live values (expired ones if ``expired_only``) went.
        """
        *folders, tail = prefix.split("/")
        base = self._folder(folders)
        try:
            names = os.listdir(base)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        counted = 0
        for name in names:
            stem, suffix = name[:-2], name[-2:]
            if suffix not in (_VALUE, _FOLDER):
                continue  # a temporary file of a put in progress
            try:
                if not decode_segment(stem).startswith(tail):
                    continue
            except ValueError:
                continue  # not a name this store made
            if suffix == _VALUE:
                counted += self._remove_value(base / name, expired_only)
            else:
                counted += self._remove_tree(base / name, expired_only)
        self._prune(base)
        return counted

    def _remove_value(self, path: Path, expired_only: bool) -> int:
        """Unlink one value file if it qualifies; 1 if it counts."""
        try:
            with open(path, "rb") as file:
                try:
                    expired = _read_header(file) <= time.time()
                except _Corrupt:
                    expired = False
        except FileNotFoundError:
            return 0
        if expired_only and not expired:
            return 0
        try:
            path.unlink()
        except FileNotFoundError:
            return 0
        return 1 if expired == expired_only else 0

    def _remove_tree(self, top: Path, expired_only: bool) -> int:
        counted = 0
        for folder, subfolders, files in os.walk(top, topdown=False):
            here = Path(folder)
            for name in files:
                if name.endswith(_VALUE):
                    counted += self._remove_value(here / name, expired_only)
                elif not expired_only:
                    # A put in progress loses its temp file and retries after this.
                    (here / name).unlink(missing_ok=True)
            for name in subfolders:
                # OSError: refilled by a concurrent put, or kept values that live on.
                with contextlib.suppress(OSError):
                    (here / name).rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
        return counted
