"""Who may call the API, and what each route needs: deny by default.

Two layers:

- **Authentication** (:class:`BearerAuth`, ASGI middleware): every request to a path that is not
  declared public must carry ``Authorization: Bearer <token>`` that an :class:`Authenticator`
  accepts, or it gets a 401 with ``WWW-Authenticate: Bearer`` before any route, body parsing or
  404 is reached. The accepted :class:`Principal` travels in the request scope.
- **Authorization** (:func:`require`, a route dependency): each route declares the one
  permission it needs from :data:`PERMISSIONS`; a principal without it gets a 403. Open routes
  declare :func:`public` instead. :func:`route_permissions` reads the declarations back, so a
  test can fail any route that declares none, and role-based access control can later map roles
  to these permissions without touching the routes.

Authenticators: :class:`AdminToken` (one secret, compared in constant time, granting every
permission), :class:`ClientKeys` (the gateway config's keys, role ``service`` unless told) and
:class:`StoredKeys` (``pod_…`` keys of the identity store, each with its role; see
:mod:`podium.governance.identity`). A key's principal holds exactly its role's permissions
(:data:`podium.governance.rbac.ROLE_PERMISSIONS`). Tokens are never logged, and never shown by
``repr``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Final, Protocol

from fastapi import Depends, FastAPI, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from podium.api.errors import ApiError, error_response
from podium.finops.ledger import Attribution
from podium.gateway import openai_errors
from podium.governance.identity import KEY_PREFIX, KeyGrant
from podium.governance.rbac import ROLE_PERMISSIONS, Role, parse_role

PERMISSIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "workflows:read": "List the served workflows and read their definitions.",
        "runs:read": "List runs and read their state, steps and journal.",
        "runs:start": "Start runs of a served workflow.",
        "runs:review": "Approve or reject human-review steps.",
        "runs:control": "Resume and cancel runs.",
        "costs:read": "Read spend, budgets and savings reports.",
        "models:call": "Call models through the OpenAI-compatible gateway (`/v1/*`).",
        "audit:read": "Read and verify the audit trail (records of the caller's scope).",
        "lineage:read": "Trace what produced a call's or a step's output.",
        "admin:read": "List organisations, teams, projects, users and API keys.",
        "admin:write": "Create, rotate and revoke API keys; manage teams, projects and users.",
    }
)
"""Every permission a route may require, with what it allows."""

PUBLIC: Final = "public"
"""The declaration of a route anyone may call (``/healthz``, the API docs)."""

PRINCIPAL_SCOPE_KEY: Final = "podium.principal"
"""Where :class:`BearerAuth` leaves the authenticated principal in the ASGI scope."""

_bearer = HTTPBearer(
    auto_error=False,
    description="The admin token (`PODIUM_ADMIN_TOKEN`, or the one `podium serve` printed).",
)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the permissions it holds."""

    subject: str
    """Who: shown as the reviewer when a decision names nobody."""
    permissions: frozenset[str]
    attribution: Attribution | None = None
    """Who the principal's model calls are charged to (``None``: the default organisation).
    Also the principal's scope: ``None``, or ``team`` ``None``, is org-wide (see
    :mod:`podium.governance.rbac`)."""
    role: str | None = None
    """The role its permissions come from (``admin``, ``developer``…; ``None``: set directly)."""

    def can(self, permission: str) -> bool:
        return permission in self.permissions


class Authenticator(Protocol):
    """Turns a bearer token into a principal, or refuses it."""

    def authenticate(self, token: str) -> Principal | None:
        """The token's principal, or ``None`` if the token is not valid."""
        ...


class AdminToken:
    """One shared secret that grants every permission."""

    __slots__ = ("_admin", "_secret")

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the admin token must not be empty")
        self._secret = token.encode("utf-8")
        self._admin = Principal("admin", frozenset(PERMISSIONS), role=Role.ADMIN.value)

    def __repr__(self) -> str:
        return "AdminToken(<redacted>)"

    def authenticate(self, token: str) -> Principal | None:
        if hmac.compare_digest(token.encode("utf-8"), self._secret):
            return self._admin  # frozen: one for every request
        return None


class ClientKeys:
    """API keys from the gateway's config file, each charged to its team, project and use case.

    Keys are compared in constant time against every configured key. A key holds its role's
    permissions: ``service`` (calling models, ``models:call``, and nothing else) unless its entry
    names another role. ``fallback`` (the admin token) is asked when no key matches.
    """

    __slots__ = ("_fallback", "_keys")

    def __init__(
        self,
        keys: Mapping[str, tuple[str, Attribution] | tuple[str, Attribution, Role | str]],
        fallback: Authenticator | None = None,
    ) -> None:
        """
        Args:
            keys: Secret → (key id, attribution) or (key id, attribution, role).
            fallback: Asked when no key matches.

        Raises:
            ValueError: An entry names an unknown role.
        """
        self._keys: list[tuple[bytes, Principal]] = []
        for secret, entry in keys.items():
            kid, attribution = entry[0], entry[1]
            role = parse_role(str(entry[2])) if len(entry) == 3 else Role.SERVICE
            principal = Principal(kid, ROLE_PERMISSIONS[role], attribution, role=role.value)
            self._keys.append((secret.encode("utf-8"), principal))
        self._fallback = fallback

    def __repr__(self) -> str:
        return f"ClientKeys(<{len(self._keys)} keys>)"

    def authenticate(self, token: str) -> Principal | None:
        given = token.encode("utf-8")
        found: Principal | None = None
        for secret, principal in self._keys:
            if hmac.compare_digest(given, secret):
                found = principal
        if found is not None:
            return found
        return self._fallback.authenticate(token) if self._fallback is not None else None


class KeyVerifier(Protocol):
    """What :class:`StoredKeys` asks (:class:`podium.governance.identity.IdentityStore`)."""

    def verify(self, token: str) -> KeyGrant | None: ...


class StoredKeys:
    """``pod_…`` keys of the identity store, each granting its role's permissions.

    The store is looked up on each call through ``source`` because it opens with the server's
    lifespan, after the middleware is built; until then (and after shutdown) no stored key is
    accepted. The lookup reads the store's in-memory snapshot: no database round trip.
    """

    __slots__ = ("_source",)

    def __init__(self, source: Callable[[], KeyVerifier | None]) -> None:
        self._source = source

    def __repr__(self) -> str:
        return "StoredKeys()"

    def authenticate(self, token: str) -> Principal | None:
        if not token.startswith(KEY_PREFIX):  # not ours: pass it over at once
            return None
        store = self._source()
        grant = store.verify(token) if store is not None else None
        if grant is None:
            return None
        return Principal(grant.key_id, grant.permissions, grant.attribution, role=grant.role.value)


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (``None``: not one)."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class BearerAuth:
    """ASGI middleware: refuse every non-public request without a valid bearer token."""

    def __init__(
        self, app: ASGIApp, *, authenticator: Authenticator, public_paths: frozenset[str]
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.public_paths = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        refusal = admit(self.authenticator, scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await refusal(scope, receive, send)


def admit(
    authenticator: Authenticator, scope: Scope, authorization: str | None = None
) -> Response | None:
    """Put the bearer token's principal in ``scope`` (``None``), or the 401 that refuses the
    request: in OpenAI's shape under ``/v1/``, in Podium's elsewhere. ``authorization`` is the
    header's value when the caller has read it already (else it is read from ``scope``)."""
    if authorization is None:
        authorization = Headers(scope=scope).get("authorization", "")
    token = bearer_token(authorization)
    principal = authenticator.authenticate(token) if token is not None else None
    if principal is not None:
        scope[PRINCIPAL_SCOPE_KEY] = principal
        return None
    if token is None:
        message, challenge = "missing bearer token", 'Bearer realm="podium"'
    else:
        message = "invalid bearer token"
        challenge = 'Bearer realm="podium", error="invalid_token"'
    headers = {"WWW-Authenticate": challenge}
    if scope["path"].startswith(openai_errors.PATH_PREFIX):  # OpenAI clients parse its shape
        return openai_errors.status_response(401, message, headers=headers)
    return error_response(401, "Unauthorized", message, headers=headers)


class Require:
    """The dependency behind :func:`require`: checks one permission of the caller."""

    def __init__(self, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(
                f"unknown permission {permission!r}; declare it in podium.api.auth.PERMISSIONS"
            )
        self.permission = permission

    def __repr__(self) -> str:
        return f"require({self.permission!r})"

    async def __call__(
        self,
        request: Request,
        # Declared so the OpenAPI spec shows the bearer scheme; BearerAuth did the checking.
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        return permitted(request.scope, self.permission)


def permitted(scope: Scope, permission: str) -> Principal:
    """The caller :class:`BearerAuth` admitted, when it holds ``permission``.

    Raises:
        ApiError: 401 when no caller was admitted, 403 when it lacks the permission.
    """
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        raise ApiError(
            401,
            "missing bearer token",
            headers={"WWW-Authenticate": 'Bearer realm="podium"'},
        )
    if not principal.can(permission):
        raise ApiError(403, f"this token lacks the permission {permission!r}")
    return principal


def require(permission: str) -> Any:
    """Declare (and enforce) the permission a route needs.

    Use in ``dependencies=[require("runs:read")]``, or as
    ``principal: Annotated[Principal, require("runs:review")]`` to see who calls. The OpenAPI
    spec lists the permission as the operation's bearer "scope" (OpenAPI 3.1 roles).
    """
    return Security(Require(permission), scopes=[permission])


async def _public() -> None:
    """Marker dependency of an open route."""


def public() -> Any:
    """Declare a route open to anyone (no token). Its path must be static."""
    return Depends(_public)


def _declared(dependant: Dependant) -> list[str]:
    found: list[str] = []
    pending = list(dependant.dependencies)
    while pending:
        dep = pending.pop()
        if isinstance(dep.call, Require):
            found.append(dep.call.permission)
        elif dep.call is _public:
            found.append(PUBLIC)
        pending.extend(dep.dependencies)
    return found


def _doc_paths(app: FastAPI) -> set[str]:
    urls = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    return {u for u in urls if u}


def route_permissions(app: FastAPI) -> list[tuple[RouteContext, list[str]]]:
    """Every route ``app`` serves, with what it declares: permissions, ``[PUBLIC]``, or ``[]``.

    Routes behind included routers are reached through FastAPI's ``iter_route_contexts``
    (``app.routes`` itself holds one opaque node per included router). The generated API docs
    (OpenAPI spec, Swagger UI, ReDoc) are public: they describe the API, hold no data, and a
    browser cannot send a bearer token when it opens them.
    """
    table: list[tuple[RouteContext, list[str]]] = []
    docs = _doc_paths(app)
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute):
            # The effective dependant holds router-level dependencies too.
            dependant = getattr(ctx, "dependant", None) or route.dependant
            table.append((ctx, _declared(dependant)))
        elif isinstance(route, Route) and route.path in docs:
            table.append((ctx, [PUBLIC]))
        else:
            table.append((ctx, []))
    return table


def public_paths(app: FastAPI) -> frozenset[str]:
    """The exact paths :class:`BearerAuth` lets through without a token."""
    paths: set[str] = set()
    for ctx, declared in route_permissions(app):
        if declared == [PUBLIC]:
            path = str(ctx.path)
            if "{" in path:
                raise ValueError(f"a public route needs a static path, not {path!r}")
            paths.add(path)
    return frozenset(paths)
