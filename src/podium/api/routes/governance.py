"""Governance reads for auditors: the audit trail, its verification, and lineage.

- ``GET /api/audit`` lists audit records (clear headers, never payloads) with filters — kind,
  team, a ``seq`` cursor (``after``/``before``), ``limit``, ``newest`` first — what
  ``podium audit show`` prints.
- ``GET /api/audit/verify`` walks the whole chain and names the first bad record
  (``podium audit verify``).
- ``GET /api/lineage/{id}`` traces what produced an output: a gateway request id (``req_…``) or a
  workflow step ``RUN_ID/step/path`` (``podium lineage ID``; see
  :mod:`podium.governance.lineage`).

Tenant isolation (:mod:`podium.api.scope`): a team-scoped caller sees only its team's audit
records (asking for another team is a 403 that says so, as for costs) and the lineage of its
team's outputs — another team's request or step answers the same 404 as an unknown id.
Org-wide callers see their organisation. A record names its organisation in its header's ``org``
(model calls do); a record without one is judged by its team alone.

The audit routes answer 503 when the server keeps no audit trail; lineage then still traces
workflow steps from the run store (without their model calls), and request ids answer 503.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from podium.api.auth import require
from podium.api.errors import ERROR_RESPONSES, ApiError
from podium.api.scope import ScopeDep, TeamScope
from podium.api.state import StateDep
from podium.errors import RunNotFound
from podium.governance.audit import AuditLog
from podium.governance.chain import AuditRecord
from podium.governance.lineage import LineageNotFound, lineage
from podium.types import DEFAULT_ORG, Store

router = APIRouter(prefix="/api", tags=["governance"], responses=ERROR_RESPONSES)

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "The server keeps no audit trail"}
}


def _audit(audit: AuditLog | None) -> AuditLog:
    if audit is None:
        raise ApiError(503, "the audit trail is unavailable: this server keeps none")
    return audit


def _org_of(record: AuditRecord) -> str | None:
    org = record.fields.get("org")
    return org if isinstance(org, str) else None


def _in_scope(scope: TeamScope) -> Any:
    """The cheap test of records against ``scope``, on their clear columns and ``org`` field
    (``None`` when the scope sees everything)."""
    if scope.unrestricted:
        return None

    def test(record: AuditRecord) -> bool:
        org = _org_of(record)
        if org is not None and org != scope.org:
            return False
        return scope.team is None or record.team == scope.team

    return test


class _RunOrgs:
    """The organisation of a record that names none but names its run (workflow records):
    the run's owner org, read once per run."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.known: dict[str, str | None] = {}

    async def org(self, run_id: str) -> str | None:
        if run_id not in self.known:
            try:
                run = await self.store.get_run(run_id) if self.store is not None else None
            except RunNotFound:
                run = None
            self.known[run_id] = None if run is None else (run.org or DEFAULT_ORG)
        return self.known[run_id]


async def _visible(record: AuditRecord, scope: TeamScope, runs: _RunOrgs) -> bool:
    """The rest of the scope test (after :func:`_in_scope`): a record without an ``org`` field
    belongs to its run's organisation when it names a run; otherwise its team decides."""
    if scope.unrestricted or _org_of(record) is not None:
        return True
    run_id = record.fields.get("run_id")
    if not isinstance(run_id, str):
        return True
    return await runs.org(run_id) == scope.org


@router.get("/audit", dependencies=[require("audit:read")], responses=_UNAVAILABLE)
async def list_audit(
    state: StateDep,
    scope: ScopeDep,
    kind: Annotated[str | None, Query(description="Only records of this kind.")] = None,
    team: Annotated[str | None, Query(description="Only records of this team.")] = None,
    after: Annotated[int, Query(ge=0, description="Only records with seq > after.")] = 0,
    before: Annotated[
        int | None, Query(ge=1, description="Only records with seq < before.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    newest: Annotated[bool, Query(description="Newest first (then page with before).")] = False,
) -> dict[str, Any]:
    """Audit records of the caller's scope: clear headers and hashes (payloads stay
    encrypted). Page with the returned ``next`` cursor: ``after`` oldest first, ``before``
    newest first."""
    audit = _audit(state.audit)
    if scope.team is not None:
        if team is not None and team != scope.team:
            raise ApiError(
                403,
                f"this token sees the audit records of team {scope.team!r} only; it cannot "
                f"read team {team!r}",
            )
        team = scope.team
    runs = _RunOrgs(state.engine.store if state.engine is not None else None)
    records: list[AuditRecord] = []
    while len(records) < limit:
        wanted = limit - len(records)
        page = await audit.query(
            kind=kind,
            team=team,
            after=after,
            before=before,
            limit=wanted,
            newest_first=newest,
            where=_in_scope(scope),
        )
        for record in page:
            if await _visible(record, scope, runs):
                records.append(record)
        if len(page) < wanted:
            break  # no more records match
        if newest:
            before = page[-1].seq
        else:
            after = page[-1].seq
    cursor: dict[str, int] | None = None
    if len(records) == limit:
        cursor = {"before": records[-1].seq} if newest else {"after": records[-1].seq}
    return {"records": [r.to_dict() for r in records], "next": cursor}


@router.get("/audit/verify", dependencies=[require("audit:read")], responses=_UNAVAILABLE)
async def verify_audit(state: StateDep) -> dict[str, Any]:
    """Walk the whole chain: ``ok``, the records and signed checkpoints checked, and the first
    bad record with what is wrong with it. (It reveals counts only, no record.)"""
    result = await _audit(state.audit).verify()
    return {
        "ok": result.ok,
        "records": result.records,
        "checkpoints": result.checkpoints,
        "first_bad": result.first_bad,
        "problem": result.problem,
        "message": str(result),
    }


@router.get(
    "/lineage/{id:path}",
    dependencies=[require("lineage:read")],
    responses={404: {"description": "No such output"}, **_UNAVAILABLE},
)
async def get_lineage(id: str, state: StateDep, scope: ScopeDep) -> dict[str, Any]:
    """What produced an output: a request id (``req_…``) or a step (``RUN_ID/step/path``):
    inputs, template version, model, policy version and upstream steps, all by hash."""
    if "/" not in id and state.audit is None:
        raise ApiError(503, "request ids are traced in the audit trail: this server keeps none")
    store = state.engine.store if state.engine is not None else None
    try:
        found = await lineage(id, audit=state.audit, store=store)
    except LineageNotFound as exc:
        raise ApiError(404, str(exc)) from None
    if not scope.sees(found.org or DEFAULT_ORG, found.team):
        raise ApiError(404, _not_found(id))  # as if it did not exist
    return found.to_dict()


def _not_found(id: str) -> str:
    if "/" in id:
        return f"no run {id.partition('/')[0]!r}"
    return f"no model call {id!r} in the audit trail"
