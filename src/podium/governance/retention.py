"""Retention: delete content past its time everywhere it lives, keep the hashes.

A :class:`RetentionJob` applies retention rules (the policy's ``retention:`` section,
:class:`podium.governance.policy.RetentionRule`; anything with ``id``, ``days`` and
``matches(team, classification)`` will do) to the three places content lives:

- **the audit trail**: records older than a matching rule's ``days`` are *crypto-shredded*
  (their data keys deleted, :meth:`AuditLog.shred`). Headers and hashes stay, so the chain still
  verifies and still says who called which model when, at what cost, under which policy;
- **the run store**: runs that *finished* longer ago than the rule's ``days`` have their content
  (inputs, result, journaled step outputs, review requests) replaced by placeholders that keep
  each text's SHA-256 (:meth:`Store.purge_run_content`, :mod:`podium.store.purge`);
- **the response caches**: entries stored longer ago than the rule's ``days`` are deleted
  (:meth:`CacheBackend.purge_namespace`).

**Which rule.** A record may match several rules; the one with the fewest ``days`` decides (the
policy's :meth:`~podium.governance.policy.Policy.retention_days` says the same), and the report
credits what was deleted to it. A record's team is the audit ``team`` column, its data class the
header's ``classification`` (``None`` when absent: the rule decides what that means — the policy's
rules read it as the default class).

**A run's data class** is learned from the audit trail: the classes of the (not yet shredded)
audit records that carry its ``run_id`` — its steps, its model calls. A run with several is
judged by each (the strictest matching rule wins); a run with none by ``None``.

**A cache namespace has no data class**: an entry may hold an answer of any class. A namespace
(``org:<org>/team:<team>``, or ``org:<org>`` for no team) is purged by the strictest rule
matching its team for *any* of :data:`CLASSIFICATIONS` or ``None``. A cache is an optimisation:
purging more than needed costs a miss, keeping too long would break the rule.

The job is idempotent: shredded records and purged runs are skipped, so running it twice in a
row deletes nothing the second time. :class:`RetentionScheduler` runs it periodically in the
server; ``podium retention run [--dry-run]`` runs it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from podium.store.purge import is_purged_text
from podium.types import Clock, RunRecord, RunStatus, Store

if TYPE_CHECKING:
    from podium.gateway.cache import CacheBackend
    from podium.governance.audit import AuditLog

log = logging.getLogger("podium.governance.retention")

DAY = 86_400.0
"""Seconds in a retention day."""
CLASSIFICATIONS: tuple[str, ...] = ("public", "internal", "confidential", "restricted")
"""The data classes a cache namespace is judged by (it may hold any of them)."""
FINISHED: tuple[RunStatus, ...] = ("completed", "failed", "cancelled")
"""Run statuses whose content retention may purge (never a running or waiting run)."""
_PAGE = 2000


class RetentionRuleLike(Protocol):
    """What the job needs of a rule (:class:`podium.governance.policy.RetentionRule` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def days(self) -> int: ...

    def matches(self, team: str | None, classification: str | None) -> bool: ...


@dataclass(frozen=True, slots=True)
class RuleReport:
    """What one rule deleted (or, in a dry run, would delete)."""

    rule_id: str
    days: int
    cutoff: float
    """Content older than this time (``now - days``) fell under the rule."""
    audit_shredded: int = 0
    """Audit records whose data keys were destroyed."""
    runs_purged: tuple[str, ...] = ()
    """Runs whose content was replaced by hash-keeping placeholders."""
    cache_namespaces: tuple[str, ...] = ()
    """Cache namespaces purged."""
    cache_entries: int | None = 0
    """Cache entries deleted (``None`` in a dry run: a cache cannot count without deleting)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "days": self.days,
            "cutoff": self.cutoff,
            "audit_shredded": self.audit_shredded,
            "runs_purged": list(self.runs_purged),
            "cache_namespaces": list(self.cache_namespaces),
            "cache_entries": self.cache_entries,
        }


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """The outcome of one :meth:`RetentionJob.run`, per rule (strictest first)."""

    at: float
    """When the job ran (the job's clock)."""
    dry_run: bool
    rules: tuple[RuleReport, ...] = ()

    @property
    def audit_shredded(self) -> int:
        return sum(r.audit_shredded for r in self.rules)

    @property
    def runs_purged(self) -> int:
        return sum(len(r.runs_purged) for r in self.rules)

    @property
    def cache_entries(self) -> int | None:
        counts = [r.cache_entries for r in self.rules]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "dry_run": self.dry_run,
            "audit_shredded": self.audit_shredded,
            "runs_purged": self.runs_purged,
            "cache_entries": self.cache_entries,
            "rules": [r.to_dict() for r in self.rules],
        }


@dataclass
class _Tally:
    rule: RetentionRuleLike
    cutoff: float
    shredded: int = 0
    runs: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    entries: int | None = 0

    def report(self) -> RuleReport:
        return RuleReport(
            self.rule.id,
            self.rule.days,
            self.cutoff,
            self.shredded,
            tuple(self.runs),
            tuple(self.namespaces),
            self.entries,
        )


def namespace_team(namespace: str) -> str | None:
    """The team of a cache namespace (:func:`podium.gateway.cache.namespace`), ``None`` for an
    organisation's own namespace."""
    _, sep, team = namespace.partition("/team:")
    return team if sep else None


def _classification(fields: Any) -> str | None:
    value = fields.get("classification") if hasattr(fields, "get") else None
    return value if isinstance(value, str) else None


class RetentionJob:
    """Applies retention rules to the audit trail, the run store and the response caches.

    Args:
        audit: The audit trail (``None``: none is kept, e.g. an in-memory store).
        store: The run store (``None``: leave runs alone).
        caches: The response cache backends.
        rules: The retention rules; an empty list deletes nothing.
        clock: Where "now" comes from.
        classifications: The data classes a cache namespace is judged by.
        scan_limit: At most this many finished runs of each status are examined per run of the
            job, newest first (the store lists runs newest first).
    """

    def __init__(
        self,
        audit: AuditLog | None,
        store: Store | None,
        caches: Sequence[CacheBackend],
        rules: Sequence[RetentionRuleLike],
        clock: Clock,
        *,
        classifications: Sequence[str] = CLASSIFICATIONS,
        scan_limit: int = 100_000,
    ) -> None:
        for rule in rules:
            if rule.days < 0:
                raise ValueError(f"retention rule {rule.id!r}: days must not be negative")
        self.audit = audit
        self.store = store
        self.caches = tuple(caches)
        # strictest first: the first matching rule past its cutoff decides
        self.rules = tuple(sorted(rules, key=lambda r: r.days))
        self.clock = clock
        self.classifications: tuple[str | None, ...] = (None, *classifications)
        self.scan_limit = scan_limit

    async def run(self, *, dry_run: bool = False) -> RetentionReport:
        """Delete what is past its time (nothing, with ``dry_run``: only count it)."""
        now = self.clock.now()
        tallies = [_Tally(rule, now - rule.days * DAY) for rule in self.rules]
        if not tallies:
            return RetentionReport(now, dry_run)
        latest = max(t.cutoff for t in tallies)
        run_classes: dict[str, set[str | None]] = {}
        if self.audit is not None:
            await self._audit(self.audit, tallies, latest, run_classes, dry_run)
        if self.store is not None:
            await self._runs(self.store, tallies, latest, run_classes, dry_run)
        for cache in self.caches:
            await self._cache(cache, tallies, dry_run)
        report = RetentionReport(now, dry_run, tuple(t.report() for t in tallies))
        log.info(
            "retention%s: %d audit records shredded, %d runs purged, %s cache entries deleted",
            " (dry run)" if dry_run else "",
            report.audit_shredded,
            report.runs_purged,
            "?" if report.cache_entries is None else report.cache_entries,
        )
        return report

    async def _audit(
        self,
        audit: AuditLog,
        tallies: list[_Tally],
        latest: float,
        run_classes: dict[str, set[str | None]],
        dry_run: bool,
    ) -> None:
        after = 0
        while True:
            page = await audit.readable_before(latest, after=after, limit=_PAGE)
            if not page:
                return
            doomed: dict[int, list[int]] = {}
            for record in page:
                cls = _classification(record.fields)
                run_id = record.fields.get("run_id")
                if isinstance(run_id, str):
                    run_classes.setdefault(run_id, set()).add(cls)
                for i, tally in enumerate(tallies):
                    if record.ts < tally.cutoff and tally.rule.matches(record.team, cls):
                        doomed.setdefault(i, []).append(record.seq)
                        break
            for i, seqs in doomed.items():
                tallies[i].shredded += len(seqs) if dry_run else await audit.shred(seqs)
            after = page[-1].seq

    async def _runs(
        self,
        store: Store,
        tallies: list[_Tally],
        latest: float,
        run_classes: dict[str, set[str | None]],
        dry_run: bool,
    ) -> None:
        finished: list[RunRecord] = []
        for status in FINISHED:
            finished += await store.list_runs(status=status, limit=self.scan_limit)
        for run in sorted(finished, key=lambda r: (r.updated_at, r.run_id)):
            if run.updated_at >= latest or is_purged_text(run.inputs):
                continue
            classes = run_classes.get(run.run_id) or {None}
            for tally in tallies:
                if run.updated_at < tally.cutoff and any(
                    tally.rule.matches(run.team, c) for c in classes
                ):
                    if dry_run or await store.purge_run_content(run.run_id):
                        tally.runs.append(run.run_id)
                    break

    async def _cache(self, cache: CacheBackend, tallies: list[_Tally], dry_run: bool) -> None:
        for namespace in await cache.namespaces():
            team = namespace_team(namespace)
            for tally in tallies:
                if any(tally.rule.matches(team, c) for c in self.classifications):
                    tally.namespaces.append(namespace)
                    if dry_run:
                        tally.entries = None
                    else:
                        count = await cache.purge_namespace(namespace, tally.cutoff)
                        tally.entries = (tally.entries or 0) + count
                    break


class RetentionScheduler:
    """Runs a :class:`RetentionJob` every ``every_s`` seconds in the background (the API
    server's lifespan starts and stops it). A failing run is logged and retried at the next
    tick; it never stops the schedule.

    Args:
        job: The job.
        every_s: Seconds between runs (the first runs at once, or after ``delay_s``).
        clock: Sleeps on this clock (default: the job's).
        delay_s: Seconds to wait before the first run.
    """

    def __init__(
        self,
        job: RetentionJob,
        every_s: float,
        *,
        clock: Clock | None = None,
        delay_s: float = 0.0,
    ) -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self.job = job
        self.every_s = every_s
        self.delay_s = delay_s
        self.clock = clock or job.clock
        self.runs = 0
        """Completed runs of the job."""
        self.failures = 0
        self.last: RetentionReport | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the schedule (idempotent)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="podium-retention"
            )

    async def stop(self) -> None:
        """Stop the schedule; a run in progress is cancelled (each deletion is atomic)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> RetentionReport | None:
        """Run the job now; ``None`` (and the error logged) when it failed."""
        try:
            report = await self.job.run()
        except Exception as exc:  # a schedule outlives one failed run
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("retention run failed; retrying in %gs", self.every_s)
            return None
        self.runs += 1
        self.last, self.last_error = report, None
        return report

    async def _loop(self) -> None:
        if self.delay_s > 0:
            await self.clock.sleep(self.delay_s)
        while True:
            await self.run_once()
            await self.clock.sleep(self.every_s)
