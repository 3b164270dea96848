"""The audit trail's keys: the master key that wraps per-record data keys, and the Ed25519 key
that signs checkpoints. Neither is ever shown: ``repr`` and error messages carry only the key id
(a fingerprint: the first 16 hex digits of a SHA-256 over a label and the key).

Keys come from the environment at the edge (``PODIUM_AUDIT_MASTER_KEY``,
``PODIUM_AUDIT_SIGNING_KEY``: base64 of 32 bytes) or from a file holding the same base64 text
(``PODIUM_AUDIT_MASTER_KEY_FILE``, ``PODIUM_AUDIT_SIGNING_KEY_FILE``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from podium.errors import ConfigError, PodiumError

MASTER_KEY_ENV = "PODIUM_AUDIT_MASTER_KEY"
SIGNING_KEY_ENV = "PODIUM_AUDIT_SIGNING_KEY"
NONCE_BYTES = 12
DATA_KEY_BYTES = 32


class AuditError(PodiumError):
    """Root of the audit trail's errors."""


class AuditKeyError(AuditError):
    """A key is missing, malformed, or not the one a record was written with."""


class PayloadShredded(AuditError):
    """The record's data key was destroyed: its payload can no longer be read."""


def _fingerprint(label: bytes, material: bytes) -> str:
    return hashlib.sha256(label + material).hexdigest()[:16]


def _decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"the {what} is not valid base64") from None
    if len(raw) != 32:
        raise ConfigError(f"the {what} must be 32 bytes (base64), not {len(raw)} bytes")
    return raw


def _from_env(env: Mapping[str, str], var: str, what: str) -> bytes | None:
    if env.get(var):
        return _decode(env[var], what)
    path = env.get(var + "_FILE")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
        return _decode(text, what)
    return None


class MasterKey:
    """An AES-256 key-encryption key. Wraps data keys with AES-KW (RFC 3394)."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError(f"an audit master key must be 32 bytes, not {len(key)}")
        self._key = key
        self.key_id = _fingerprint(b"podium-audit-master\x00", key)
        """The key's public fingerprint, recorded beside each wrapped data key."""

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(32))

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        return cls(_decode(text, "audit master key"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MasterKey | None:
        """The key in ``PODIUM_AUDIT_MASTER_KEY`` or the file ``PODIUM_AUDIT_MASTER_KEY_FILE``."""
        raw = _from_env(env, MASTER_KEY_ENV, "audit master key")
        return None if raw is None else cls(raw)

    def to_base64(self) -> str:
        """The key as text, to store it in a secret manager (never log it)."""
        return base64.b64encode(self._key).decode()

    def wrap(self, data_key: bytes) -> bytes:
        return aes_key_wrap(self._key, data_key)

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._key, wrapped)
        except InvalidUnwrap:
            raise AuditKeyError(
                f"a data key does not unwrap with master key {self.key_id} "
                "(wrong key, or the wrapped key was altered)"
            ) from None

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"


class SigningKey:
    """The Ed25519 key that signs checkpoints; its public half verifies them."""

    __slots__ = ("_private", "key_id", "public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ConfigError(f"an audit signing key must be 32 bytes, not {len(seed)}")
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = VerifyKey(self._private.public_key().public_bytes_raw())
        self.key_id = self.public.key_id

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(32))

    @classmethod
    def from_base64(cls, text: str) -> SigningKey:
        return cls(_decode(text, "audit signing key"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SigningKey | None:
        """The key in ``PODIUM_AUDIT_SIGNING_KEY`` or ``PODIUM_AUDIT_SIGNING_KEY_FILE``."""
        raw = _from_env(env, SIGNING_KEY_ENV, "audit signing key")
        return None if raw is None else cls(raw)

    def to_base64(self) -> str:
        return base64.b64encode(self._private.private_bytes_raw()).decode()

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


class VerifyKey:
    """An Ed25519 public key (32 raw bytes), enough to verify checkpoints."""

    __slots__ = ("_public", "key_id", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._public = Ed25519PublicKey.from_public_bytes(raw)
        self.key_id = _fingerprint(b"podium-audit-signer\x00", raw)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"VerifyKey(key_id={self.key_id!r})"


def seal(plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """Encrypt with a new random data key. Returns ``(data_key, nonce || ciphertext)``."""
    material = os.urandom(DATA_KEY_BYTES + NONCE_BYTES)
    data_key = material[:DATA_KEY_BYTES]
    return data_key, seal_with(data_key, material[DATA_KEY_BYTES:], plaintext, aad)


def seal_with(data_key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """``nonce || AES-256-GCM(data_key, plaintext, aad)``. The key and the nonce must be fresh
    random bytes, never reused: batch appends slice them from one ``os.urandom`` call (one
    system call for a thousand records instead of two per record; the same CSPRNG)."""
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def unseal(data_key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Decrypt ``nonce || ciphertext``; a wrong key or altered bytes raise
    :class:`AuditKeyError`."""
    try:
        return AESGCM(data_key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except InvalidTag:
        raise AuditKeyError("a payload does not decrypt (altered ciphertext or header)") from None
