"""Purging a finished run's content for retention, the same way in every store.

Retention (:mod:`podium.governance.retention`) deletes *content* — the run's inputs and result,
the outputs its steps journaled, what a review step showed the reviewer — and keeps everything
else: ids, status, times, step paths, model metadata, errors, the definition's source. Each piece
of content is replaced by a **placeholder** that keeps the SHA-256 of the text it replaced::

    {"$purged": {"sha256": "<hex of the replaced JSON text>"}}

so a purged run still proves what it produced: the hash of a ``step_completed`` event's original
``data`` is the ``data_sha256`` its audit record carries (:mod:`podium.governance.workflow_audit`),
and lineage (:mod:`podium.governance.lineage`) reports it. The journal keeps its shape — a purged
completion still reads ``{"o": …, "m": …}`` — so history views and lineage need no special case.

The functions here are pure; :class:`~podium.store.memory.MemoryStore` and
:class:`~podium.store.sql.SQLStore` apply them in ``purge_run_content``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from podium.types import Event, RunRecord

PURGED = "$purged"
"""The key of a placeholder object."""

CONTENT_EVENTS = frozenset({"run_started", "step_completed", "review_requested"})
"""Events whose ``data`` holds content (see :func:`purge_event_data`)."""


def _dumps(value: Any) -> str:
    # The journal's own encoding (podium.workflows.journal.dumps), for plain JSON values.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def placeholder_value(text: str, *, keep_hash: bool = True) -> dict[str, Any]:
    """The placeholder object standing for ``text`` (its SHA-256 kept unless ``keep_hash``)."""
    digest = hashlib.sha256(text.encode()).hexdigest() if keep_hash else None
    return {PURGED: {"sha256": digest}}


def placeholder(text: str, *, keep_hash: bool = True) -> str:
    """The placeholder's JSON text."""
    return _dumps(placeholder_value(text, keep_hash=keep_hash))


def purged_hash(value: Any) -> str | None:
    """The kept SHA-256 if ``value`` is a placeholder object, else ``None``."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(PURGED), dict):
        digest = value[PURGED].get("sha256")
        return digest if isinstance(digest, str) else None
    return None


def is_placeholder(value: Any) -> bool:
    """Whether ``value`` (a decoded JSON value) is a placeholder object."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(PURGED), dict)


def is_purged_text(text: str | None) -> bool:
    """Whether a JSON text column holds a placeholder."""
    return text is not None and text.startswith('{"' + PURGED + '":')


def purge_run_fields(run: RunRecord, *, keep_hash: bool = True) -> tuple[str, str | None] | None:
    """The run's new ``(inputs, result)`` texts, or ``None`` when there is nothing to purge."""
    inputs = run.inputs
    result = run.result
    new_inputs = inputs if is_purged_text(inputs) else placeholder(inputs, keep_hash=keep_hash)
    new_result = (
        result
        if result is None or is_purged_text(result)
        else placeholder(result, keep_hash=keep_hash)
    )
    if new_inputs == inputs and new_result == result:
        return None
    return new_inputs, new_result


def purge_event_data(event: Event, *, keep_hash: bool = True) -> str | None:
    """The event's new ``data``, or ``None`` when it holds no content or was purged already.

    - ``run_started``: ``inputs`` becomes a placeholder (the owner and file stay);
    - ``step_completed``: the output ``o`` becomes a placeholder (the metadata ``m`` stays);
    - ``review_requested``: the whole request becomes a placeholder.

    The placeholder keeps the SHA-256 of the event's *original* ``data`` text.
    """
    if event.kind not in CONTENT_EVENTS or not event.data:
        return None
    try:
        data = json.loads(event.data)
    except ValueError:
        return placeholder(event.data, keep_hash=keep_hash)
    if event.kind == "review_requested":
        if is_placeholder(data):
            return None
        return placeholder(event.data, keep_hash=keep_hash)
    key = "inputs" if event.kind == "run_started" else "o"
    if not isinstance(data, dict) or key not in data or is_placeholder(data[key]):
        return None
    data[key] = placeholder_value(event.data, keep_hash=keep_hash)
    return _dumps(data)
