"""EncryptedField: a model column that only ever holds secrets sealed by hosts/crypto.py.

The attribute holds the sealed form (`v1:<key id>:<token>`), never the plaintext: reading a model never opens a
secret by accident, and a secret cannot reach a page or a log through `{{ host.password }}` or `repr`. Models open
their secrets explicitly (`Host.get_password()`). `manage.py rotate_encryption_keys` finds every EncryptedField of
every installed model, so a new app (the vault) gets rotation by using this field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.db import models

from . import crypto


class PlaintextRefused(ValueError):
    """Someone tried to store a value that is not sealed. The message never repeats the value."""


class EncryptedField(models.TextField):  # type: ignore[type-arg]
    """A TextField for sealed secrets; empty means "no secret". Kept out of forms, admin and fixtures' eyes."""

    description = "A secret sealed by hosts.crypto (the column never holds plaintext)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value:
            try:
                crypto.split(value)
            except crypto.SecretError:
                raise PlaintextRefused(
                    f"{self.model.__name__}.{self.name} only stores sealed secrets; seal it with hosts.crypto first"
                ) from None
        return value


def seal_text(plaintext: str) -> str:
    return crypto.encrypt_text(plaintext) if plaintext else ""


def seal_bytes(plaintext: bytes) -> str:
    return crypto.encrypt(plaintext) if plaintext else ""


def open_text(stored: str, what: str = "") -> str:
    """The plaintext of a sealed value; a SecretError names `what` it was (and the key), never the secret."""
    try:
        return crypto.decrypt_text(stored) if stored else ""
    except crypto.SecretError as error:
        if not what:
            raise
        raise type(error)(f"{what}: {error}") from None


def open_bytes(stored: str) -> bytes:
    return crypto.decrypt(stored) if stored else b""


def encrypted_fields() -> Iterator[tuple[type[models.Model], list[str]]]:
    """Every installed model that has encrypted fields, with the names of those fields."""
    for model in apps.get_models():
        names = [field.name for field in model._meta.concrete_fields if isinstance(field, EncryptedField)]
        if names:
            yield model, names
