"""The one place that encrypts secrets at rest (host passwords, vault PFX bytes and passwords).

Keys come from CONSOLE_ENCRYPTION_KEYS (Fernet keys, newest first), never from SECRET_KEY. Each stored value
carries the id of the key that sealed it — `v1:<key id>:<fernet token>` — so decryption names the key it needs
when that key is gone, and `manage.py rotate_encryption_keys` can re-seal everything under the newest key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

PREFIX = "v1"


class SecretError(Exception):
    """A stored secret cannot be opened. The message never contains the secret or the key."""


class MissingKeyError(SecretError):
    pass


class TamperedSecretError(SecretError):
    pass


@dataclass(frozen=True)
class Key:
    id: str
    fernet: Fernet


def key_id(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()[:12]


def keys() -> list[Key]:
    loaded = []
    for position, raw in enumerate(settings.ENCRYPTION_KEYS):
        try:
            loaded.append(Key(key_id(raw), Fernet(raw.encode())))
        except (ValueError, TypeError):
            raise SecretError(
                f"CONSOLE_ENCRYPTION_KEYS entry #{position + 1} is not a Fernet key "
                "(32 bytes, urlsafe base64; make one with `manage.py generate_encryption_key`)"
            ) from None
    return loaded


def encrypt(plaintext: bytes) -> str:
    newest = keys()[0]
    return f"{PREFIX}:{newest.id}:{newest.fernet.encrypt(plaintext).decode()}"


def encrypt_text(plaintext: str) -> str:
    return encrypt(plaintext.encode())


def sealed_with(stored: str) -> str:
    """The id of the key that sealed a stored value."""
    prefix, kid, _token = split(stored)
    return kid


def split(stored: str) -> tuple[str, str, str]:
    parts = stored.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TamperedSecretError("stored secret is not in the console's format (damaged or tampered)")
    return parts[0], parts[1], parts[2]


def decrypt(stored: str) -> bytes:
    _prefix, kid, token = split(stored)
    for key in keys():
        if key.id == kid:
            try:
                return key.fernet.decrypt(token.encode())
            except InvalidToken:
                raise TamperedSecretError(
                    f"stored secret sealed with key {kid} fails its integrity check (damaged or tampered)"
                ) from None
    raise MissingKeyError(
        f"stored secret was sealed with encryption key {kid}, which is not in CONSOLE_ENCRYPTION_KEYS; "
        "add that key back (after the newest) to read it"
    )


def decrypt_text(stored: str) -> str:
    return decrypt(stored).decode()


def reseal(stored: str) -> str:
    """The same secret sealed under the newest key (unchanged if it already is)."""
    if sealed_with(stored) == keys()[0].id:
        return stored
    return encrypt(decrypt(stored))
