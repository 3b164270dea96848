"""Tenant isolation: what part of the data a principal may see, and the checks routes apply.

The scope rule (the one :mod:`podium.governance.rbac` documents):

- a principal without attribution (the server's admin token) is **unrestricted**: every run and
  every ledger row, whatever its organisation;
- a principal whose attribution names no team (admin and auditor keys) is **org-wide**: all the
  data of its organisation;
- every other principal is **team-scoped**: the data of its ``(org, team)`` only.

An attribution without an org belongs to :data:`~podium.types.DEFAULT_ORG`, as everywhere else
(the gateway charges such calls there; the engine records it as the org of runs started without
one).

How the routes use it:

- **Runs** carry their owner's ``org`` and ``team`` (:class:`~podium.types.RunRecord`). A run
  outside the caller's scope does not exist for it: reading it, its journal or its events, and
  acting on it (approve, reject, resume, cancel) answer the same 404 as an unknown id, so a
  team cannot even learn that another team's run id is real (:func:`visible_run`). Lists are
  filtered in the store (:meth:`TeamScope.run_filter`), not after a ``limit``, so a team sees
  its newest runs, not its share of everyone's.
- **Costs** are filtered on the ledger's ``org``/``team`` dimensions (:func:`cost_filters`). A
  team-scoped principal that asks for another team or org explicitly gets a 403 saying so (an
  explicit filter that silently returned nothing would read as "B spent nothing"); without a
  filter its report covers its own team only.
- **Workflows** (the served definitions) are the server's catalog, shared by every team: they are
  configuration, not tenant data, and are listed for everyone who may read workflows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from podium.api.auth import PRINCIPAL_SCOPE_KEY, Principal
from podium.api.errors import ApiError
from podium.errors import RunNotFound
from podium.finops.ledger import Attribution, Dimension
from podium.types import DEFAULT_ORG, RunRecord, Store


@dataclass(frozen=True, slots=True)
class TeamScope:
    """The slice of the data a principal may see.

    Attributes:
        org: Its organisation; ``None``: every organisation (the admin token).
        team: Its team; ``None``: the whole organisation.
    """

    org: str | None = None
    team: str | None = None

    def __post_init__(self) -> None:
        if self.org is None and self.team is not None:
            raise ValueError("a team scope needs its organisation")

    @classmethod
    def of(cls, principal: Principal) -> TeamScope:
        """The scope of ``principal`` (see the module's rule)."""
        a = principal.attribution
        if a is None:
            return cls()
        return cls(org=a.org or DEFAULT_ORG, team=a.team)

    @property
    def unrestricted(self) -> bool:
        """Sees everything, in every organisation."""
        return self.org is None

    @property
    def org_wide(self) -> bool:
        """Sees every team of its organisation (or of all, when unrestricted)."""
        return self.team is None

    def sees(self, org: str | None, team: str | None) -> bool:
        """Whether data owned by ``(org, team)`` is visible. Data of no team is visible to
        org-wide principals only."""
        if self.org is None:
            return True
        if org != self.org:
            return False
        return self.team is None or team == self.team

    def run_filter(self) -> dict[str, str]:
        """Keyword arguments of :meth:`podium.types.Store.list_runs` that keep this scope's
        runs (empty when unrestricted)."""
        out: dict[str, str] = {}
        if self.org is not None:
            out["org"] = self.org
        if self.team is not None:
            out["team"] = self.team
        return out


def visible(scope: TeamScope, record: RunRecord) -> bool:
    """Whether ``scope`` may see (and act on) the run ``record``."""
    return scope.sees(record.org, record.team)


async def visible_run(store: Store, run_id: str, scope: TeamScope) -> RunRecord:
    """The run, if it exists and ``scope`` may see it.

    Raises:
        RunNotFound: No such run, or one outside the scope: the same error, word for word, so
            the answer does not tell the two apart.
    """
    record = await store.get_run(run_id)
    if not visible(scope, record):
        raise RunNotFound(run_id)
    return record


def cost_filters(scope: TeamScope, where: Mapping[Dimension, str]) -> dict[Dimension, str]:
    """The report filters ``where`` narrowed to ``scope``: its ``org`` and ``team`` added.

    Raises:
        ApiError: 403 when ``where`` names another organisation or team than the scope's.
    """
    out: dict[Dimension, str] = dict(where)
    mine_by: tuple[tuple[Dimension, str | None], ...] = (("org", scope.org), ("team", scope.team))
    for dimension, mine in mine_by:
        if mine is None:
            continue
        asked = out.get(dimension)
        if asked is not None and asked != mine:
            raise ApiError(
                403,
                f"this token sees the costs of {dimension} {mine!r} only; it cannot read "
                f"{dimension} {asked!r}",
            )
        out[dimension] = mine
    return out


def run_owner(principal: Principal) -> Attribution:
    """Who a run ``principal`` starts belongs to: its attribution (its org, or the default
    one; its team, project and use case), the default organisation for the admin token."""
    a = principal.attribution
    if a is None:
        return Attribution(org=DEFAULT_ORG)
    return Attribution(
        org=a.org or DEFAULT_ORG,
        team=a.team,
        project=a.project,
        key_id=a.key_id,
        use_case=a.use_case,
    )


async def _principal(request: Request) -> Principal:
    # async: FastAPI runs a sync dependency in a worker thread, a hop per request
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):  # fail closed: no principal, no data
        raise ApiError(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return principal


async def _scope(principal: Annotated[Principal, Depends(_principal)]) -> TeamScope:
    return TeamScope.of(principal)


PrincipalDep = Annotated[Principal, Depends(_principal)]
"""The authenticated caller (a route dependency; the route still declares its permission)."""

ScopeDep = Annotated[TeamScope, Depends(_scope)]
"""The caller's :class:`TeamScope` (a route dependency)."""
