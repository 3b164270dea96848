"""Key material: the ``pod_<prefix>_<secret>`` format, the pepper of its keyed hash, lifetimes.

The secret is 43 base62 characters from :mod:`secrets` (256 bits); the store keeps only
``HMAC-SHA256(pepper, key)``. The pepper is a server secret kept *outside* the database, so a
stolen database holds nothing that can be replayed or brute-forced offline.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from podium.errors import ConfigError

log = logging.getLogger("podium.governance")

KEY_PREFIX: Final = "pod_"
"""Every Podium API key starts with this (secret scanners can match ``pod_[0-9A-Za-z]{8}_``)."""
PREFIX_LENGTH: Final = 8
SECRET_LENGTH: Final = 43
"""Base62 characters of a key's secret: 43 * log2(62) ≈ 256 bits."""
KEY_LENGTH: Final = len(KEY_PREFIX) + PREFIX_LENGTH + 1 + SECRET_LENGTH
DEFAULT_KEY_LIFETIME: Final = 90 * 86_400.0
"""Lifetime of a new key when its creator names none (90 days; ``never`` must be explicit)."""
DEFAULT_ROTATION_GRACE: Final = 86_400.0
"""How long a rotated key keeps working beside its successor (24 hours)."""
PEPPER_ENV: Final = "PODIUM_KEY_PEPPER"
PEPPER_FILE_ENV: Final = "PODIUM_KEY_PEPPER_FILE"
PEPPER_FILE: Final = "key_pepper"
"""The pepper's file under ``<home>``, created once (mode 0600) when no variable names one."""
MIN_PEPPER_BYTES: Final = 32

_BASE62 = string.digits + string.ascii_letters
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


def parse_duration(text: str) -> float | None:
    """Seconds in ``90d``, ``24h``, ``30m``, ``45s``, ``2w``; ``None`` for ``never``.

    Raises:
        ValueError: Not a duration; the message shows the accepted forms.
    """
    if text.strip().lower() in ("never", "none"):
        return None
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a number and a unit (s, m, h, d, w), "
            "e.g. 90d, 24h, 30m, or 'never'"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def load_pepper(home: Path, env: Mapping[str, str]) -> bytes:
    """The key-hashing pepper: ``PODIUM_KEY_PEPPER`` (base64 of ≥ 32 bytes), the file
    ``PODIUM_KEY_PEPPER_FILE`` names, else ``<home>/key_pepper`` (created once, mode 0600).

    Every replica of a deployment must use the same pepper, or keys created by one are refused
    by the others; changing it invalidates every key. Production deployments set one of the
    variables (a pepper kept beside the database only protects against readers of the database
    alone).

    Raises:
        ConfigError: The pepper is not base64, or shorter than 32 bytes.
    """
    source: str
    if env.get(PEPPER_ENV):
        text, source = env[PEPPER_ENV], f"${PEPPER_ENV}"
    elif env.get(PEPPER_FILE_ENV):
        path = Path(env[PEPPER_FILE_ENV])
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read ${PEPPER_FILE_ENV} ({path}): {exc.strerror}") from None
        source = str(path)
    else:
        path = home / PEPPER_FILE
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            text, source = path.read_text(), str(path)
        else:
            raw = secrets.token_bytes(MIN_PEPPER_BYTES)
            with os.fdopen(fd, "w") as out:
                out.write(base64.b64encode(raw).decode() + "\n")
            log.warning("created the API key pepper in %s: set $%s in production", path, PEPPER_ENV)
            return raw
    try:
        pepper = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"the key pepper from {source} is not valid base64") from None
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ConfigError(
            f"the key pepper from {source} has {len(pepper)} bytes; it needs at least "
            f"{MIN_PEPPER_BYTES} (e.g. `openssl rand -base64 32`)"
        )
    return pepper


def random_base62(n: int) -> str:
    """``n`` base62 characters from :mod:`secrets`."""
    return "".join(secrets.choice(_BASE62) for _ in range(n))


def prefix_of(token: str) -> str | None:
    """The prefix of a well-formed key, else ``None``."""
    if len(token) != KEY_LENGTH or not token.startswith(KEY_PREFIX):
        return None
    if token[len(KEY_PREFIX) + PREFIX_LENGTH] != "_":
        return None
    return token[len(KEY_PREFIX) : len(KEY_PREFIX) + PREFIX_LENGTH]
