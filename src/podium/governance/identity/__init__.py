"""Who is who: organisations → teams → projects, users, and the API keys callers present.

**Keys** look like ``pod_<prefix>_<secret>``: an 8-character prefix, shown in listings and logs
so people can tell keys apart, and a 43-character base62 secret (256 bits from :mod:`secrets`).
The full key is shown once, when it is created; the store keeps only the prefix and
``HMAC-SHA256(pepper, key)``. The pepper is a server secret that is *not* in the database
(``PODIUM_KEY_PEPPER``, ``PODIUM_KEY_PEPPER_FILE``, else ``<home>/key_pepper``, see
:func:`load_pepper`), so a stolen database holds nothing that can be replayed or brute-forced
offline: a keyed hash of a 256-bit secret. A key has an expiry, can be revoked, and can be
rotated: the successor is a new key with the same team, role and bindings, and the old one keeps
working for a grace period, then stops.

**Authentication is on the hot path** (every gateway call), so :meth:`IdentityStore.verify`
never touches the database: it reads an in-memory snapshot of the active keys, keyed by prefix,
computes one HMAC and compares it with :func:`hmac.compare_digest`. The snapshot is reloaded
when this process changes a key, and every :data:`REFRESH_SECONDS` (5 s) by
:meth:`IdentityStore.refresh_forever`, so a key revoked through *another* replica stops working
here within that interval. Each refresh first reads a fingerprint of the keys table (three counts,
~3 ms over 10,000 keys on SQLite) and reloads only when it changed. Expiry is checked against the
clock on each call, so an expired key stops at once everywhere. A refused key (unknown, expired,
revoked, rotated past its grace) is only ``None``: the caller answers a 401 that does not say
which.

**Scope.** Keys of the org-wide roles (admin, auditor) carry no team; every other key belongs to
one team (see :mod:`podium.governance.rbac`). A key may be bound to a project and a use case,
which then name who pays for its calls (:class:`~podium.finops.ledger.Attribution`).

**Admin changes are audited.** Given an :class:`~podium.governance.audit.AuditLog`, every
mutation appends an ``admin_change`` record (ids in the clear header, details encrypted, never a
secret or a hash). The change is committed first and the record appended after it; if the append
fails, the error reaches the caller (the admin sees the failure) and is logged.

Organisations, teams and projects are named by slugs (``acme``, ``support``, ``chatbot``): those
names are what the ledger, budgets, limits and policies already use to attribute calls. The
organisation ``default`` always exists; it is where calls are charged when nobody is named.

Modules: :mod:`.records` (the records and errors), :mod:`.material` (the key format, the pepper,
lifetimes), :mod:`.store` (:class:`IdentityStore`).
"""

from podium.governance.identity.material import (
    DEFAULT_KEY_LIFETIME,
    DEFAULT_ROTATION_GRACE,
    KEY_PREFIX,
    PEPPER_ENV,
    PEPPER_FILE_ENV,
    load_pepper,
    parse_duration,
)
from podium.governance.identity.records import (
    DEFAULT_ORG,
    ApiKey,
    IdentityConflict,
    IdentityError,
    IdentityNotFound,
    KeyGrant,
    KeyStatus,
    NewKey,
    Org,
    Project,
    Team,
    User,
)
from podium.governance.identity.store import REFRESH_SECONDS, IdentityStore, open_identity

__all__ = [
    "DEFAULT_KEY_LIFETIME",
    "DEFAULT_ORG",
    "DEFAULT_ROTATION_GRACE",
    "KEY_PREFIX",
    "PEPPER_ENV",
    "PEPPER_FILE_ENV",
    "REFRESH_SECONDS",
    "ApiKey",
    "IdentityConflict",
    "IdentityError",
    "IdentityNotFound",
    "IdentityStore",
    "KeyGrant",
    "KeyStatus",
    "NewKey",
    "Org",
    "Project",
    "Team",
    "User",
    "load_pepper",
    "open_identity",
    "parse_duration",
]
