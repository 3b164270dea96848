"""The audit journal: a governed call waits for one ``write``, not for a transaction.

Committing a call's audit record into the chain — a SQLite transaction, a fresh data key, its
wrap and AES-GCM — was a third of a governed gateway call. With the journal, the call instead
waits until its record is *written*: encoded, encrypted under the journal file's own key and
appended to an append-only file with one ``write`` (plus ``fdatasync`` when the store is asked
for synchronous commits). A background task then moves the journaled records into the chain
in batches — every :data:`DRAIN_DELAY_S`, or at once past :data:`DRAIN_AT` records — through
:meth:`~podium.governance.audit.AuditLog.append_prepared`, which seals each record as before
(its own data key) and stores the file's id in the same transaction. Then the file is destroyed
(its wrapped key overwritten, the file unlinked) and the id deleted. A file per move is cheaper
than one file reused across moves, measured: a file unlinked within ~20 ms never reaches the
disk (its dirty pages are dropped), where a reused file's pages are written back.

**What "recorded" means.** A record is as durable once written as a SQLite commit with
``synchronous=NORMAL`` (the default): it survives the process crashing, not the machine losing
power; with ``FULL``/``EXTRA`` (or on PostgreSQL) every write is followed by ``fdatasync``. It
is *visible* in the chain within :data:`DRAIN_DELAY_S` — at once to the process that wrote it,
whose :class:`~podium.governance.audit.AuditLog` flushes the journal before every read,
checkpoint, shred and key rotation; after up to :data:`DRAIN_DELAY_S` to other processes
(``podium audit verify`` included).

**Crashes.** Every journal file is held under an exclusive ``flock`` by the process writing it.
A file nobody holds belongs to a process that died: :meth:`AuditJournal.open` (server start-up)
moves its records into the chain, unless the chain already has them (its id in
``audit_journal_moves``: the crash fell between the commit and the removal). A torn last frame —
the process died inside the ``write``, so that call was never answered — is dropped.

**The file.** ``MAGIC``, then frames of a 4-byte big-endian length and a body. The first body is
the clear JSON header ``{"id", "master_key_id", "wrapped"}``: the file's 256-bit key, wrapped
(AES-KW) by the audit master key. Each further body is ``AES-256-GCM(file_key, nonce, record,
aad=id)`` with the nonce ``n`` as 12 big-endian bytes, ``n`` = 1, 2, … the frame's number (a key
encrypts one file, so nonces never repeat); ``record`` is ``[kind, actor, team, fields_text, ts]``
as JSON, a newline, then the payload's plaintext. The file is created ``0600`` in a ``0700``
directory.

Several processes on one chain (workers, the CLI) each keep their own files; their batches
interleave in the chain, each in its own order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from podium.governance.audit import AuditLog
from podium.governance.audit_rows import Prepared
from podium.governance.chain import AuditEntry
from podium.governance.keys import AuditError, AuditKeyError
from podium.types import Clock, ordered_id

log = logging.getLogger(__name__)

MAGIC = b"PODIUM AUDIT JOURNAL 1\n"
DRAIN_DELAY_S = 0.02
"""How long a journaled record waits, at most, before its batch is moved into the chain."""
DRAIN_AT = 256
"""Records journaled that start a move at once, without waiting for :data:`DRAIN_DELAY_S`."""
MAX_BACKLOG = 100_000
"""Records journaled but not yet in the chain past which calls are refused (the chain's store
is failing: the journal must not grow without bound)."""
RETRY_S = 1.0
"""Wait before moving records again after the chain's store failed."""
SUFFIX = ".journal"
MAKING = ".journal-new"
"""A journal file's name while it is made (before it is locked and has its header)."""
_LENGTH = struct.Struct(">I")
_NONCE = struct.Struct(">4xQ")


class JournalError(AuditError):
    """The audit journal cannot take a record (the call is then failed closed)."""


@dataclass
class _File:
    """One journal file being written, or written and waiting to be moved."""

    id: str
    path: Path
    fd: int
    aead: AESGCM
    header_end: int
    master_key_id: str
    items: list[Prepared] = field(default_factory=list)

    @property
    def aad(self) -> bytes:
        return self.id.encode()


class AuditJournal:
    """Journal audit records for :class:`~podium.governance.audit.AuditLog` ``log``.

    Use :meth:`open`, which also recovers the files of processes that died. On the event
    loop's thread only.

    Args:
        log: The chain the records go to; it must hold the master key.
        directory: Where the journal files live (created ``0700``).
        sync: ``fdatasync`` after every write (for a store asked for synchronous commits).
        delay: See :data:`DRAIN_DELAY_S`.
    """

    def __init__(
        self,
        log_: AuditLog,
        directory: Path,
        *,
        clock: Clock,
        sync: bool = False,
        delay: float = DRAIN_DELAY_S,
    ) -> None:
        self.log = log_
        self.directory = directory
        self.sync = sync
        self.delay = delay
        self._clock = clock
        self._current: _File | None = None
        self._closed_files: list[_File] = []
        """Files written and waiting to be moved, oldest first."""
        self._forget: list[str] = []
        """Ids of files removed whose ``audit_journal_moves`` rows are still to be deleted."""
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing: BaseException | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        log_: AuditLog,
        directory: Path,
        *,
        clock: Clock,
        sync: bool = False,
        delay: float = DRAIN_DELAY_S,
    ) -> AuditJournal:
        """A journal writing in ``directory``, attached to ``log_`` (which flushes it before
        reads) once the files of dead processes found there are moved into the chain."""
        os.makedirs(directory, mode=0o700, exist_ok=True)  # once, at start-up
        journal = cls(log_, directory, clock=clock, sync=sync, delay=delay)
        await recover(log_, directory)
        log_.attach(journal)
        return journal

    def __repr__(self) -> str:
        return f"AuditJournal(directory={str(self.directory)!r}, pending={self._pending})"

    @property
    def pending(self) -> int:
        """Records journaled and not yet in the chain."""
        return self._pending

    # -- writing ----------------------------------------------------------------------------------

    def write(self, entries: Sequence[AuditEntry]) -> None:
        """Journal ``entries``, in order; once this returns they are recorded (see the module's
        documentation for what that means).

        Raises:
            JournalError: The journal is closed, too far behind, or its file cannot be written.
            AuditKeyError, ValueError: As :meth:`AuditLog.prepare`.
        """
        if self._closed:
            raise JournalError("the audit journal is closed")
        if self._pending + len(entries) > MAX_BACKLOG:
            raise JournalError(
                f"the audit trail is {self._pending} records behind: its store keeps failing "
                "(the server log says why); calls are refused until it catches up"
            )
        prepared = self.log.prepare(entries)
        if not prepared:
            return
        file = self._current
        if file is not None and file.master_key_id != self.log.master_key_id:
            self._retire(file)  # the master key was rotated: a new file, wrapped by the new key
            file = None
        try:
            if file is None:
                file = self._current = self._create()
            count = len(file.items)
            frames = []
            for i, item in enumerate(prepared, start=count + 1):
                head = orjson.dumps([item.kind, item.actor, item.team, item.fields_text, item.ts])
                body = file.aead.encrypt(_NONCE.pack(i), head + b"\n" + item.payload, file.aad)
                frames.append(_LENGTH.pack(len(body)) + body)
            _write_all(file.fd, b"".join(frames) if len(frames) > 1 else frames[0])
            if self.sync:
                os.fdatasync(file.fd)
        except OSError as exc:
            if file is not None and file is self._current:
                self._retire(file)  # it may now end in a torn frame: never write after it
            raise JournalError(
                f"the audit journal cannot be written ({type(exc).__name__}: {exc})"
            ) from exc
        file.items += prepared
        self._pending += len(prepared)
        self._schedule(now=self._pending >= DRAIN_AT)

    def _retire(self, file: _File) -> None:
        """Write no more to ``file``: its records wait for the next move (none: destroyed)."""
        self._current = None
        if file.items:
            self._closed_files.append(file)
        else:
            _destroy(file)

    def _create(self) -> _File:
        master = self.log.master
        if master is None:  # prepare() refused already
            raise AuditKeyError("no audit master key")
        ident = f"{ordered_id(self._clock.now())}-{os.getpid()}"
        path = self.directory / f"{ident}{SUFFIX}"
        # Made under another name, locked and given its header, then renamed: recovery never
        # meets a journal file that is not yet locked by its writer.
        making = self.directory / f"{ident}{MAKING}"
        key = AESGCM.generate_key(bit_length=256)
        header = orjson.dumps(
            {
                "id": ident,
                "master_key_id": master.key_id,
                "wrapped": base64.b64encode(master.wrap(key)).decode(),
            }
        )
        fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            start = MAGIC + _LENGTH.pack(len(header)) + header
            _write_all(fd, start)
            if self.sync:
                os.fsync(fd)
            os.rename(making, path)
            if self.sync:
                _sync_directory(self.directory)
        except BaseException:
            os.close(fd)
            for name in (making, path):
                with contextlib.suppress(OSError):
                    name.unlink()
            raise
        return _File(ident, path, fd, AESGCM(key), len(start), master.key_id)

    # -- moving into the chain --------------------------------------------------------------------

    def _schedule(self, *, now: bool = False) -> None:
        if self._task is not None and not self._task.done():
            return  # the running move takes what is written meanwhile
        loop = asyncio.get_running_loop()
        if now:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._task = loop.create_task(self._move())
        elif self._timer is None:
            self._timer = loop.call_later(self.delay, self._due)

    def _due(self) -> None:
        self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._move())

    async def _move(self) -> None:
        """Move every written file into the chain, oldest first; on a failure, try again after
        :data:`RETRY_S`."""
        try:
            await self._move_all()
        except Exception as exc:
            if self._failing is None or type(exc) is not type(self._failing):
                log.error(
                    "the audit journal could not move %d records into the chain (%s: %s); "
                    "retrying in %.0f s",
                    self._pending,
                    type(exc).__name__,
                    exc,
                    RETRY_S,
                )
            self._failing = exc
            if not self._closed and self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(RETRY_S, self._due)
            return
        if self._failing is not None:
            log.info("the audit journal caught up: the chain's store answers again")
            self._failing = None
        self._prepare_next()
        if self._pending and not self._closed and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._due)

    async def _move_all(self) -> None:
        while True:
            if self._current is not None and self._current.items:
                self._closed_files.append(self._current)
                self._current = None
            if not self._closed_files:
                return
            file = self._closed_files[0]
            forget = list(self._forget)
            await self.log.append_prepared(file.items, journal=file.id, forget=forget)
            del self._forget[: len(forget)]
            self._closed_files.pop(0)
            self._pending -= len(file.items)
            _destroy(file)
            self._forget.append(file.id)

    def _prepare_next(self) -> None:
        """Make the next file now, off any call's path: making one (a key, its wrap, a create,
        a lock and a rename, ~0.2 ms) was paid by the first call after every move."""
        if self._current is not None or self._closed or self.log.master is None:
            return
        try:
            self._current = self._create()
        except OSError as exc:  # the next write tries again, and fails closed
            log.warning("could not make the next audit journal file: %s", exc)

    async def flush(self) -> None:
        """Move every record journaled so far into the chain now.

        Raises:
            Exception: What the chain's store raised (the records stay journaled).
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._pending or self._forget:
            task = self._task = asyncio.get_running_loop().create_task(self._move_all())
            try:
                await asyncio.shield(task)
            finally:
                if self._pending and not self._closed and self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(RETRY_S, self._due)
            if self._forget:
                forget = list(self._forget)
                await self.log.forget(forget)
                del self._forget[: len(forget)]

    async def close(self) -> None:
        """Move what is journaled into the chain and stop; what cannot be moved stays in its
        files, for the next start-up to recover."""
        if self._closed:
            return
        try:
            await self.flush()
        except Exception as exc:
            log.error(
                "the audit journal closed with %d records not in the chain (%s: %s); they stay "
                "in %s and are moved at the next start",
                self._pending,
                type(exc).__name__,
                exc,
                self.directory,
            )
        finally:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._current is not None and not self._current.items:
                _destroy(self._current)  # made ahead, never written to
                self._current = None
            for file in [*self._closed_files, *([self._current] if self._current else [])]:
                os.close(file.fd)  # the lock goes with it: the file is now recoverable
            self._closed_files.clear()
            self._current = None
            self.log.attach(None)


# -- files ----------------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _destroy(file: _File) -> None:
    """Overwrite the file's wrapped key (what remains on disk is then unreadable even with the
    master key), unlink the file, close it (and so release its lock)."""
    try:
        try:
            os.pwrite(file.fd, b"\0" * file.header_end, 0)
        finally:
            file.path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not destroy the moved audit journal file %s: %s", file.path, exc)
    finally:
        os.close(file.fd)


# -- recovery -------------------------------------------------------------------------------------


@dataclass
class Orphan:
    """A journal file read back: its id, its records, whether its end was torn, and where
    its header (the wrapped key) ends."""

    id: str
    items: list[Prepared]
    torn: bool
    header_end: int


def read_orphan(path: Path, log_: AuditLog) -> Orphan:
    """Read a journal file written by a process that died.

    Raises:
        JournalError: Not a journal file, or a header that does not parse.
        AuditKeyError: Its key is wrapped by a master key other than ``log_``'s.
    """
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise JournalError(f"{path} is not an audit journal file")
    at = len(MAGIC)
    try:
        (size,) = _LENGTH.unpack_from(data, at)
        header = orjson.loads(data[at + 4 : at + 4 + size])
        ident, key_id, wrapped = header["id"], header["master_key_id"], header["wrapped"]
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise JournalError(f"{path}: unreadable journal header ({exc})") from exc
    master = log_.master
    if master is None or master.key_id != key_id:
        raise AuditKeyError(
            f"{path}: its records are encrypted for master key {key_id}; configure that key "
            "to recover them"
        )
    aead = AESGCM(master.unwrap(base64.b64decode(wrapped)))
    at += 4 + size
    header_end = at
    items: list[Prepared] = []
    aad = str(ident).encode()
    while at < len(data):
        if at + 4 > len(data):
            break
        (size,) = _LENGTH.unpack_from(data, at)
        body = data[at + 4 : at + 4 + size]
        if len(body) < size:
            break
        try:
            plain = aead.decrypt(_NONCE.pack(len(items) + 1), body, aad)
        except InvalidTag:
            break
        head, _, payload = plain.partition(b"\n")
        kind, actor, team, fields_text, ts = orjson.loads(head)
        items.append(
            # the stdlib's parser: exact for integers beyond 64 bits, which orjson makes floats
            Prepared(kind, actor, team, json.loads(fields_text), fields_text, payload, ts)
        )
        at += 4 + size
    return Orphan(str(ident), items, at < len(data), header_end)


def _unheld(path: Path) -> bool:
    """Whether no process holds ``path``'s lock (checked by taking it for a moment)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


async def recover(log_: AuditLog, directory: Path) -> int:
    """Move into the chain the records of every journal file in ``directory`` that no live
    process holds, then remove the files. Returns how many records were moved.

    A file that cannot be read (another master key, not a journal) is left where it is, and
    logged; the others are recovered all the same."""
    moved = 0
    names = sorted(os.listdir(directory))
    for name in names:
        if name.endswith(MAKING) and _unheld(directory / name):
            with contextlib.suppress(OSError):  # its maker died before it held a record
                (directory / name).unlink()
    for name in names:
        if not name.endswith(SUFFIX):
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # its owner removed it meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process writes it
            if os.fstat(fd).st_nlink == 0:
                continue  # removed between our open and our lock
            if os.pread(fd, len(MAGIC), 0) == bytes(len(MAGIC)):
                path.unlink()  # destroyed after its move; the owner died before unlinking it
                continue
            try:
                orphan = read_orphan(path, log_)
            except AuditError as exc:
                log.error("audit journal file %s not recovered: %s", path, exc)
                continue
            done = await log_.moved([orphan.id])
            if orphan.id not in done and orphan.items:
                await log_.append_prepared(orphan.items, journal=orphan.id)
                moved += len(orphan.items)
            if orphan.items or orphan.torn:  # (an empty one was made ahead and never used)
                log.warning(
                    "recovered audit journal file %s: %d record(s) %s%s",
                    path.name,
                    len(orphan.items),
                    "were already in the chain" if orphan.id in done else "moved into the chain",
                    "; a torn last record was dropped (its call was never answered)"
                    if orphan.torn
                    else "",
                )
            os.pwrite(fd, b"\0" * orphan.header_end, 0)
            path.unlink()
            await log_.forget([orphan.id])
        finally:
            os.close(fd)
    return moved


__all__ = [
    "DRAIN_AT",
    "DRAIN_DELAY_S",
    "MAX_BACKLOG",
    "AuditJournal",
    "JournalError",
    "Orphan",
    "read_orphan",
    "recover",
]
