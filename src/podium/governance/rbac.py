"""Roles and what they may do: a static table from each role to the API's permissions.

Every HTTP route declares the one permission it needs (:data:`podium.api.auth.PERMISSIONS`,
:func:`podium.api.auth.require`); a principal holds a set of permissions; a role is a named set.
An API key carries exactly one role, and its principal holds that role's permissions —
nothing is granted that the table below does not list (deny by default).

========================  =====================================================================
Role                      Meant for
========================  =====================================================================
``admin``                 An organisation's operators: everything, org-wide.
``team-admin``            A team's lead: everything inside the team, including its keys,
                          users and projects; cannot create teams or org-wide keys.
``developer``             A team's engineers: run and control workflows, decide reviews,
                          call models, read costs, lineage and the team's audit records.
``viewer``                Read-only members of a team: workflows, runs and costs.
``auditor``               Compliance: reads everything org-wide (runs, costs, audit trail,
                          lineage, identities), changes nothing, calls no model.
``service``               A machine calling models through the gateway (``/v1``), and nothing
                          else — the role of the gateway config's client keys.
========================  =====================================================================

**Scope** (the rule :mod:`podium.api.scope` enforces tenant isolation with): a principal whose
``attribution`` is ``None`` (the server's admin token) or whose ``attribution.team`` is ``None``
is *org-wide*; every other principal sees and acts on its ``(org, team)`` only. Keys of the
org-wide roles (:data:`ORG_WIDE_ROLES`: admin, auditor) therefore carry no team; keys of every
other role must carry one.

Why a static table and not pycasbin or cedarpy (issue 5 said "consider"): the question asked on
every request is "does role R hold permission P", over six roles and a dozen permissions that
change only with the code (a new route brings a new permission and a reviewed line here). A
frozenset membership test answers it in well under a microsecond, with no policy file to load,
no model/matcher language to learn, and the whole answer visible in one screen that a test
(``tests/api/test_rbac_matrix.py``) pins route by route. Casbin evaluates a matcher expression in
Python for each policy line and Cedar serialises the request's entities across into Rust on each
call — their strength is policies edited at run time and attribute conditions, which Podium
keeps elsewhere: per-model, per-team and per-data-class conditions live in the declarative,
versioned policy engine (:mod:`podium.governance.policy`), and tenancy is the scope rule above.
Should operators ever need custom roles, this table is the one place to turn into data.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Role(StrEnum):
    """What an API key (or a user) is allowed to do; see the module's table."""

    ADMIN = "admin"
    TEAM_ADMIN = "team-admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"
    AUDITOR = "auditor"
    SERVICE = "service"


# The permissions are spelled out rather than imported from podium.api.auth: this module is a leaf
# (the API imports it, so importing the API here would be a cycle), and a new permission should
# be placed in this table by a person. tests/governance/test_rbac.py checks that every name here
# is one of PERMISSIONS and that admin holds all of them, so a new permission fails until it is.
_ALL = frozenset(
    {
        "workflows:read",
        "runs:read",
        "runs:start",
        "runs:review",
        "runs:control",
        "costs:read",
        "models:call",
        "audit:read",
        "lineage:read",
        "admin:read",
        "admin:write",
    }
)
_READ = frozenset({"workflows:read", "runs:read", "costs:read"})
_DEVELOPER = _READ | {
    "runs:start",
    "runs:review",
    "runs:control",
    "models:call",
    "lineage:read",
    "audit:read",
}

ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[str]]] = MappingProxyType(
    {
        Role.ADMIN: _ALL,
        Role.TEAM_ADMIN: _DEVELOPER | {"admin:read", "admin:write"},
        Role.DEVELOPER: _DEVELOPER,
        Role.VIEWER: _READ,
        Role.AUDITOR: _READ | {"audit:read", "lineage:read", "admin:read"},
        Role.SERVICE: frozenset({"models:call"}),
    }
)
"""The permissions each role holds (every value a subset of
:data:`podium.api.auth.PERMISSIONS`)."""

ORG_WIDE_ROLES: Final[frozenset[Role]] = frozenset({Role.ADMIN, Role.AUDITOR})
"""Roles whose keys carry no team: they see their whole organisation."""

ROLE_HELP: Final[Mapping[Role, str]] = MappingProxyType(
    {
        Role.ADMIN: "everything, org-wide",
        Role.TEAM_ADMIN: "everything inside one team, including its keys, users and projects",
        Role.DEVELOPER: "run workflows, decide reviews, call models, read the team's data",
        Role.VIEWER: "read the team's workflows, runs and costs",
        Role.AUDITOR: "read everything org-wide (audit trail, lineage, identities); no changes",
        Role.SERVICE: "call models through the gateway (/v1) and nothing else",
    }
)
"""One line per role, for CLI help and the API docs."""


def parse_role(value: str) -> Role:
    """The role named ``value``.

    Raises:
        ValueError: No such role; the message lists the valid ones.
    """
    try:
        return Role(value)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise ValueError(f"unknown role {value!r}; use one of: {names}") from None


def is_org_wide(role: Role) -> bool:
    """Whether keys of this role carry no team (see the module's scope rule)."""
    return role in ORG_WIDE_ROLES


def may_grant(granter: Role, role: Role) -> bool:
    """Whether a holder of ``granter`` may hand out ``role`` (no escalation).

    Only roles whose permissions are a subset of the granter's, and org-wide roles only by an
    org-wide granter.
    """
    if is_org_wide(role) and not is_org_wide(granter):
        return False
    return ROLE_PERMISSIONS[role] <= ROLE_PERMISSIONS[granter]
