"""Open the gateway's :class:`~podium.governance.gate.Governance` from settings and config.

Keys of the audit trail come from the environment (``PODIUM_AUDIT_MASTER_KEY``,
``PODIUM_AUDIT_SIGNING_KEY`` or their ``_FILE`` variants). On the embedded defaults, where no one
has set them, Podium creates both once in ``<home>/audit/`` (mode 0600) and uses them from then
on, so a fresh ``make run`` is audited from its first call; production deployments set the
variables (a key kept beside the database it protects only guards against readers of the
database file alone) — ``podium serve`` says which it uses.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from podium.config import Settings
from podium.governance.keys import MASTER_KEY_ENV, SIGNING_KEY_ENV, MasterKey, SigningKey

log = logging.getLogger("podium.governance")

KEY_DIR = "audit"


def _home_key(home: Path, name: str) -> bytes:
    """The key in ``<home>/audit/<name>``, created (32 random bytes, base64, 0600) if absent."""
    folder = home / KEY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return base64.b64decode(path.read_text().strip(), validate=True)
    raw = os.urandom(32)
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(raw).decode() + "\n")
    log.warning(
        "created the audit %s key in %s: set $%s in production",
        name.removesuffix(".key"),
        path,
        MASTER_KEY_ENV if name == "master.key" else SIGNING_KEY_ENV,
    )
    return raw


def audit_keys(settings: Settings, env: Mapping[str, str]) -> tuple[MasterKey, SigningKey]:
    """The audit master and signing keys: the environment's, else the home directory's."""
    master = MasterKey.from_env(env) or MasterKey(_home_key(Path(settings.home), "master.key"))
    signer = SigningKey.from_env(env) or SigningKey(_home_key(Path(settings.home), "signing.key"))
    return master, signer


def existing_audit_keys(
    settings: Settings, env: Mapping[str, str]
) -> tuple[MasterKey | None, SigningKey | None]:
    """The keys a reader uses (``podium audit``): the environment's, else those the server
    created in ``<home>/audit/`` — never new ones."""
    folder = Path(settings.home) / KEY_DIR

    def stored(name: str) -> bytes | None:
        path = folder / name
        return base64.b64decode(path.read_text().strip(), validate=True) if path.is_file() else None

    master = MasterKey.from_env(env)
    if master is None and (raw := stored("master.key")) is not None:
        master = MasterKey(raw)
    signer = SigningKey.from_env(env)
    if signer is None and (raw := stored("signing.key")) is not None:
        signer = SigningKey(raw)
    return master, signer
