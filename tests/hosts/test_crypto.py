"""Secrets at rest: sealed under the newest key, rotated by one command, and a clear error when a key is gone."""

from __future__ import annotations

import io
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from console.models import AuditEvent
from hosts import crypto
from hosts.fields import PlaintextRefused, encrypted_fields
from hosts.models import Host

SECRET = "Tr0ub4dor&3-host-password"


def make_host(name: str, password: str = SECRET) -> Host:
    host = Host(name=name, address=f"{name.lower()}.lab.example", username="LAB\\hv", transport="http")
    host.set_password(password)
    host.full_clean()
    host.save()
    return host


def new_key() -> str:
    return Fernet.generate_key().decode()


def raw_password_column() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM hosts_host ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def test_a_password_is_sealed_under_the_newest_key_and_opens_again(db: None, settings: Any) -> None:
    host = make_host("HV01")
    stored = raw_password_column()[0]
    assert SECRET not in stored
    assert crypto.sealed_with(stored) == crypto.key_id(settings.ENCRYPTION_KEYS[0])
    assert Host.objects.get().get_password() == SECRET
    assert SECRET not in repr(host) and SECRET not in str(host)


def test_the_column_refuses_plaintext_without_repeating_it(db: None) -> None:
    host = Host(name="HV01", address="hv01", username="u", port=5985, password=SECRET)
    with pytest.raises(PlaintextRefused) as caught:
        host.save()
    assert SECRET not in str(caught.value)
    assert "Host.password" in str(caught.value)


def test_rotation_finds_every_model_with_encrypted_fields(db: None) -> None:
    assert (Host, ["password"]) in list(encrypted_fields())


def test_rotating_to_a_new_key_reseals_everything_and_old_keys_can_then_go(db: None, settings: Any) -> None:
    old_keys = list(settings.ENCRYPTION_KEYS)
    settings.ENCRYPTION_KEYS = old_keys[1:]  # one secret sealed with the older key, as after an earlier rotation
    make_host("HV01", "older-secret-value")
    settings.ENCRYPTION_KEYS = old_keys
    make_host("HV02")
    updated_before = list(Host.objects.order_by("id").values_list("updated_at", flat=True))

    fresh = new_key()
    settings.ENCRYPTION_KEYS = [fresh, *old_keys]
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)

    assert f"2 secret(s) re-sealed under key {crypto.key_id(fresh)}" in out.getvalue()
    assert {crypto.sealed_with(value) for value in raw_password_column()} == {crypto.key_id(fresh)}
    assert list(Host.objects.order_by("id").values_list("updated_at", flat=True)) == updated_before
    settings.ENCRYPTION_KEYS = [fresh]  # the old keys are removed: everything still opens
    assert [h.get_password() for h in Host.objects.order_by("id")] == ["older-secret-value", SECRET]
    event = AuditEvent.objects.get(action="secrets.rotated")
    assert event.detail["key"] == crypto.key_id(fresh) and event.detail["resealed"] == 2


def test_a_second_rotation_has_nothing_to_do(db: None) -> None:
    make_host("HV01")
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "0 secret(s) re-sealed" in out.getvalue()


def test_dry_run_counts_but_changes_nothing(db: None, settings: Any) -> None:
    make_host("HV01")
    before = raw_password_column()
    settings.ENCRYPTION_KEYS = [new_key(), *settings.ENCRYPTION_KEYS]
    out = io.StringIO()
    call_command("rotate_encryption_keys", "--dry-run", stdout=out)
    assert "1 secret(s) would be re-sealed" in out.getvalue()
    assert raw_password_column() == before
    assert not AuditEvent.objects.filter(action="secrets.rotated").exists()


def test_a_missing_key_is_named_when_a_password_is_opened(db: None, settings: Any) -> None:
    make_host("HV01")
    lost = crypto.key_id(settings.ENCRYPTION_KEYS[0])
    settings.ENCRYPTION_KEYS = [new_key()]
    with pytest.raises(crypto.MissingKeyError) as caught:
        Host.objects.get().get_password()
    message = str(caught.value)
    assert lost in message and "HV01" in message and "CONSOLE_ENCRYPTION_KEYS" in message
    assert SECRET not in message


def test_rotation_stops_on_a_missing_key_naming_it_and_changes_nothing(db: None, settings: Any) -> None:
    kept, lost_key = settings.ENCRYPTION_KEYS[0], settings.ENCRYPTION_KEYS[1]
    make_host("HV01")  # sealed with the key that stays; re-sealed first, then rolled back
    settings.ENCRYPTION_KEYS = [lost_key]
    hv02 = make_host("HV02")
    before = raw_password_column()
    settings.ENCRYPTION_KEYS = [new_key(), kept]
    with pytest.raises(CommandError) as caught:
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    message = str(caught.value)
    assert crypto.key_id(lost_key) in message and "Nothing was changed" in message and f"#{hv02.pk}" in message
    assert raw_password_column() == before
    assert not AuditEvent.objects.filter(action="secrets.rotated").exists()  # rolled back with the rotation


def test_a_tampered_secret_is_reported_as_such(db: None) -> None:
    host = make_host("HV01")
    prefix, kid, token = crypto.split(host.password)
    Host.objects.filter(pk=host.pk).update(password=f"{prefix}:{kid}:{token[:-8]}AAAAAAAA")
    with pytest.raises(crypto.TamperedSecretError, match="integrity"):
        Host.objects.get().get_password()


def test_a_malformed_key_setting_says_which_entry(settings: Any) -> None:
    settings.ENCRYPTION_KEYS = [new_key(), "not-a-fernet-key"]
    with pytest.raises(crypto.SecretError, match="entry #2"):
        crypto.encrypt_text("x")


def test_generate_encryption_key_prints_a_usable_key(settings: Any) -> None:
    out = io.StringIO()
    call_command("generate_encryption_key", "--quiet", stdout=out)
    key = out.getvalue().strip()
    settings.ENCRYPTION_KEYS = [key]
    assert crypto.decrypt_text(crypto.encrypt_text("round trip")) == "round trip"


def test_rotation_also_reseals_the_vault_because_it_uses_the_same_field(db: None, settings: Any) -> None:
    import datetime

    from hosts.fields import open_bytes, open_text, seal_bytes, seal_text
    from hosts.vault.models import EscrowedPair

    now = datetime.datetime.now(datetime.UTC)
    pair = EscrowedPair.objects.create(
        signing_thumbprint="A" * 40,
        encryption_thumbprint="B" * 40,
        not_before=now,
        not_after=now,
        signing_pfx=seal_bytes(b"signing-pfx-bytes"),
        encryption_pfx=seal_bytes(b"encryption-pfx-bytes"),
        pfx_password=seal_text("pfx-pass"),
        sha256="0" * 64,
    )
    fresh = new_key()
    settings.ENCRYPTION_KEYS = [fresh, *settings.ENCRYPTION_KEYS]
    call_command("rotate_encryption_keys", stdout=io.StringIO())
    settings.ENCRYPTION_KEYS = [fresh]
    pair.refresh_from_db()
    assert {crypto.sealed_with(v) for v in (pair.signing_pfx, pair.encryption_pfx, pair.pfx_password)} == {
        crypto.key_id(fresh)
    }
    assert open_bytes(pair.signing_pfx) == b"signing-pfx-bytes" and open_text(pair.pfx_password) == "pfx-pass"
