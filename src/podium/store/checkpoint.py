"""SQLite WAL checkpoints in a background thread, off the event loop.

In WAL mode SQLite copies the log back into the database file (a *checkpoint*) inside whichever
commit pushes the log past ``wal_autocheckpoint`` pages (1,000 by default): that commit then
writes and ``fsync``\\ s megabytes. The gateway commits its audit record, and the engine its
journal, on the event loop, so every few hundred calls one of them stalled the loop for several
milliseconds — the tail of the latency distribution. Three alternating pairs of
``benchmarks/gateway`` quick runs, autocheckpoints vs this thread: streamed p99 10.9-16.6 vs
5.7-8.0 ms, p99 at 100 requests/s 6.7-14.8 vs 4.1-6.1 ms (added latency; medians unchanged).

:func:`register` (called by :func:`podium.store.sql.create_store_engine` for every SQLite file)
turns autocheckpoints off on the engine's connections and lets one daemon thread per process
checkpoint the file instead: every :data:`INTERVAL_S`, for each registered database whose ``-wal``
file changed since the last look, a ``PASSIVE`` checkpoint on a short-lived connection of its own
(it never waits for readers or writers; SQLite's C code runs without the GIL). Nothing is lost
if the process dies first: the log is the durable copy, and the next connection replays it.

The thread holds no connection between checkpoints (a process may have many databases open), and
opens the file with ``mode=rw`` so a database deleted meanwhile is never re-created; it forgets a
database once every engine on it is garbage-collected. A forked child has no such thread: its
connections inherit ``wal_autocheckpoint=0``, and SQLite still checkpoints when the last
connection to a database closes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
"""How often the thread looks at the registered databases' logs."""

_lock = threading.Lock()
_registered: dict[str, int] = {}
"""Database path → number of live engines on it."""
_seen: dict[str, tuple[int, int]] = {}
"""Database path → the ``-wal`` file's (mtime_ns, size) at the last checkpoint."""
_busy = threading.Lock()
"""Held while the thread is inside SQLite, and taken around every ``fork`` of this process (see
:func:`os.register_at_fork` below): a child forked while the thread held one of SQLite's global
mutexes (its allocator's, say) would block forever on its first ``sqlite3.connect`` — the
audit trail's verify workers are forked."""
_wake = threading.Event()
_thread: threading.Thread | None = None
_pid = os.getpid()


def register(path: str, owner: Any) -> None:
    """Checkpoint the SQLite database at ``path`` in the background while ``owner`` (its
    engine) lives."""
    global _thread, _pid
    key = str(Path(path).resolve())
    with _lock:
        if _pid != os.getpid():  # a forked child: the parent's thread is not running here
            _pid, _thread = os.getpid(), None
            _registered.clear()
            _seen.clear()
        _registered[key] = _registered.get(key, 0) + 1
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="podium-wal-checkpoint", daemon=True)
            _thread.start()
    weakref.finalize(owner, _unregister, key)


def _unregister(key: str) -> None:
    with _lock:
        left = _registered.get(key, 0) - 1
        if left > 0:
            _registered[key] = left
        else:
            _registered.pop(key, None)
            _seen.pop(key, None)


def registered() -> list[str]:
    """The databases the thread checkpoints (for tests and diagnostics)."""
    with _lock:
        return sorted(_registered)


def checkpoint_now() -> None:
    """One pass over every registered database, in the calling thread."""
    with _lock:
        paths = list(_registered)
    for path in paths:
        _checkpoint(path)


def _run() -> None:
    while True:
        _wake.wait(INTERVAL_S)
        _wake.clear()
        try:
            checkpoint_now()
        except Exception:  # never let the thread die: the next pass tries again
            log.exception("WAL checkpoint pass failed")


def _checkpoint(path: str) -> None:
    try:
        stat = os.stat(path + "-wal")
    except FileNotFoundError:
        return
    state = (stat.st_mtime_ns, stat.st_size)
    if _seen.get(path) == state:
        return  # nothing written since the last checkpoint
    with _busy:
        try:
            connection = sqlite3.connect(
                f"{Path(path).as_uri()}?mode=rw", uri=True, timeout=0, check_same_thread=False
            )
        except sqlite3.Error:
            return  # deleted or unreadable: its engines will say so to their users
        try:
            with contextlib.closing(connection.cursor()) as cursor:
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            _seen[path] = state
        except sqlite3.Error as exc:  # busy (another checkpointer), or the file is gone
            log.debug("WAL checkpoint of %s skipped: %s", path, exc)
        finally:
            connection.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_busy.acquire, after_in_parent=_busy.release, after_in_child=_busy.release
    )
