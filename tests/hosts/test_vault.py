"""The vault: a pair goes in only when it is usable, comes out only intact, and its secrets never show."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from console.models import AuditEvent
from hosts import crypto
from hosts.vault import pfx
from hosts.vault.models import EscrowedPair
from hosts.vault.services import store_pair
from tests.hosts.test_vault_support import PASSWORD, certificate, make_pair, rsa_key

OLD = datetime(2014, 1, 1, tzinfo=UTC)


def store(slot: int = 0, user: Any = None, **kwargs: Any) -> EscrowedPair:
    signing, encryption = make_pair(slot=slot, **kwargs)
    return store_pair(signing, encryption, PASSWORD, user=user, origin=EscrowedPair.ORIGIN_UPLOAD).pair


# --- what the vault accepts -------------------------------------------------------------------------------------


def test_a_windows_style_pair_is_accepted_with_its_facts() -> None:
    signing, encryption = make_pair(host="HV07")
    pair = pfx.check_pair(signing, encryption, PASSWORD)
    assert pair.guardian_name == "UntrustedGuardian" and pair.host_name == "HV07"
    assert len(pair.signing.thumbprint) == 40 and pair.signing.thumbprint.isupper()
    assert pair.signing.subject == "CN=Shielded VM Signing Certificate (UntrustedGuardian) (HV07)"
    assert not pair.expired()


def test_wrong_password_is_named_as_such() -> None:
    signing, encryption = make_pair()
    with pytest.raises(pfx.WrongPassword, match="password does not open UntrustedGuardian-signing.pfx"):
        pfx.check_pair(signing, encryption, "not-the-password")


@pytest.mark.parametrize("data", [b"", b"hello world, not a pfx", b"-----BEGIN CERTIFICATE-----\nMIIB\n", bytes(4096)])
def test_something_that_is_not_a_pfx_is_refused(data: bytes) -> None:
    _signing, encryption = make_pair()
    with pytest.raises(pfx.NotAPfx, match="UntrustedGuardian-signing.pfx is not a PFX"):
        pfx.check_pair(data, encryption, PASSWORD)


def test_pairs_from_different_guardians_are_refused() -> None:
    signing, _ = make_pair(host="HV01", slot=0)
    _, encryption = make_pair(host="HV02", slot=1, not_before=OLD + timedelta(days=400))
    with pytest.raises(pfx.MismatchedPair, match="do not belong together"):
        pfx.check_pair(signing, encryption, PASSWORD)


def test_same_names_but_generated_years_apart_are_refused() -> None:
    signing, _ = make_pair(slot=0, not_before=OLD)
    _, encryption = make_pair(slot=1, not_before=OLD + timedelta(days=365))
    with pytest.raises(pfx.MismatchedPair, match="do not belong together"):
        pfx.check_pair(signing, encryption, PASSWORD, allow_expired=True)


def test_swapped_files_are_recognised() -> None:
    signing, encryption = make_pair()
    with pytest.raises(pfx.MismatchedPair, match="swapped"):
        pfx.check_pair(encryption, signing, PASSWORD)


def test_a_pfx_without_private_key_is_refused() -> None:
    key = rsa_key(0)
    cert = certificate(key, "Signing", "UntrustedGuardian", "HV01", datetime.now(UTC) - timedelta(days=1), 3650)
    _, encryption = make_pair()
    with pytest.raises(pfx.MissingPrivateKey, match="no private key"):
        pfx.check_pair(pfx_only_cert(cert), encryption, PASSWORD)


def pfx_only_cert(cert: Any) -> bytes:
    from tests.hosts.test_vault_support import pfx as make_pfx

    return make_pfx(None, cert, PASSWORD)


def test_a_key_that_is_not_its_certificates_is_refused() -> None:
    # cryptography will not even write such a PFX, so the key checks are exercised directly.
    start = datetime.now(UTC) - timedelta(days=1)
    sign_cert = certificate(rsa_key(0), "Signing", "UntrustedGuardian", "HV01", start, 3650)
    enc_cert = certificate(rsa_key(1), "Encryption", "UntrustedGuardian", "HV01", start, 3650)
    with pytest.raises(pfx.MismatchedPair, match="does not belong to its certificate"):
        pfx.check_signing_key(rsa_key(5), sign_cert, pfx.SIGNING_FILE)
    with pytest.raises(pfx.MismatchedPair, match="does not belong to its certificate"):
        pfx.check_encryption_key(rsa_key(5), enc_cert, pfx.ENCRYPTION_FILE)


def test_expired_pair_is_refused_unless_accepted() -> None:
    signing, encryption = make_pair(not_before=OLD, days=3650)
    with pytest.raises(pfx.ExpiredPair, match="expired on 2023-12-30"):
        pfx.check_pair(signing, encryption, PASSWORD)
    assert pfx.check_pair(signing, encryption, PASSWORD, allow_expired=True).expired()


# --- sealing, tamper detection, idempotence --------------------------------------------------------------------


@pytest.mark.django_db
def test_stored_pair_opens_to_the_same_files_and_columns_hold_no_plaintext() -> None:
    signing, encryption = make_pair()
    row = store_pair(signing, encryption, PASSWORD, user=None, origin=EscrowedPair.ORIGIN_UPLOAD).pair
    row.refresh_from_db()
    assert row.open() == (signing, encryption, PASSWORD)
    for column in (row.signing_pfx, row.encryption_pfx, row.pfx_password):
        assert column.startswith("v1:") and PASSWORD not in column
    assert row.not_after > datetime.now(UTC)


@pytest.mark.django_db
def test_escrowing_the_same_pair_twice_stores_it_once() -> None:
    signing, encryption = make_pair()
    first = store_pair(signing, encryption, PASSWORD, user=None, origin=EscrowedPair.ORIGIN_ESCROW)
    again = store_pair(signing, encryption, PASSWORD, user=None, origin=EscrowedPair.ORIGIN_ESCROW)
    assert first.created and not again.created and again.pair.pk == first.pair.pk
    assert EscrowedPair.objects.count() == 1
    assert AuditEvent.objects.filter(action="vault.escrow").count() == 1


@pytest.mark.django_db
def test_a_blob_swapped_between_entries_is_detected() -> None:
    a, b = store(slot=0), store(slot=1, host="HV02")
    a.encryption_pfx = b.encryption_pfx  # sealed by the right key, so only the SHA-256 binding can tell
    a.save()
    with pytest.raises(crypto.TamperedSecretError, match="SHA-256"):
        EscrowedPair.objects.get(pk=a.pk).open()
    with pytest.raises(crypto.TamperedSecretError, match="SHA-256"):
        EscrowedPair.objects.get(pk=a.pk).confirm_intact()  # what the entry's page asks


@pytest.mark.django_db
def test_a_password_swapped_between_entries_is_detected() -> None:
    a = store(slot=0)
    signing, encryption = make_pair(slot=1, host="HV02", password="another-password-123")
    b = store_pair(signing, encryption, "another-password-123", user=None, origin="upload").pair
    a.pfx_password = b.pfx_password
    a.save()
    with pytest.raises(crypto.TamperedSecretError, match="damaged or tampered"):
        EscrowedPair.objects.get(pk=a.pk).open()
    with pytest.raises(crypto.TamperedSecretError, match="damaged or tampered: the password does not open"):
        EscrowedPair.objects.get(pk=a.pk).confirm_intact()  # the record names another password: files are opened
    a.opened_seal = b.opened_seal  # and the other entry's record of its own password names other files
    a.save()
    with pytest.raises(crypto.TamperedSecretError, match="damaged or tampered"):
        EscrowedPair.objects.get(pk=a.pk).confirm_intact()


@pytest.mark.django_db
def test_an_entry_stored_before_the_opened_seal_is_opened_until_the_nightly_check_records_it() -> None:
    from django.core.management import CommandError, call_command

    a = store(slot=0)
    signing, encryption = make_pair(slot=1, host="HV02", password="another-password-123")
    b = store_pair(signing, encryption, "another-password-123", user=None, origin="upload").pair
    EscrowedPair.objects.update(opened_seal="")  # as rows stored by an older console are
    EscrowedPair.objects.filter(pk=b.pk).update(pfx_password=a.pfx_password)
    with pytest.raises(crypto.TamperedSecretError, match="damaged or tampered"):
        EscrowedPair.objects.get(pk=b.pk).confirm_intact()  # no record: the files are opened, and refuse
    EscrowedPair.objects.get(pk=a.pk).confirm_intact()

    with pytest.raises(CommandError, match="1 of 2 vault entries are damaged"):
        call_command("verify_vault", stdout=io.StringIO())
    intact, damaged = EscrowedPair.objects.get(pk=a.pk), EscrowedPair.objects.get(pk=b.pk)
    assert intact.opened_seal.startswith("v1:") and PASSWORD not in intact.opened_seal
    assert damaged.opened_seal == ""  # never recorded for files that do not open
    intact.confirm_intact()


@pytest.mark.django_db
def test_edited_ciphertext_is_detected() -> None:
    row = store()
    prefix, kid, token = row.signing_pfx.split(":", 2)
    row.signing_pfx = f"{prefix}:{kid}:{token[:-8]}AAAAAAAA"
    row.save()
    with pytest.raises(crypto.TamperedSecretError):
        EscrowedPair.objects.get(pk=row.pk).open()
    with pytest.raises(crypto.TamperedSecretError):
        EscrowedPair.objects.get(pk=row.pk).confirm_intact()
    row = store(slot=1, host="HV02")
    prefix, kid, token = row.opened_seal.split(":", 2)
    EscrowedPair.objects.filter(pk=row.pk).update(opened_seal=f"{prefix}:{kid}:{token[:-8]}AAAAAAAA")
    EscrowedPair.objects.get(pk=row.pk).confirm_intact()  # only the record is damaged: the files open, as before


# --- pages ----------------------------------------------------------------------------------------------------


def upload(client: Client, signing: bytes, encryption: bytes, password: str = PASSWORD, **extra: Any) -> Any:
    data = {
        "signing_pfx": SimpleUploadedFile("UntrustedGuardian-signing.pfx", signing),
        "encryption_pfx": SimpleUploadedFile("UntrustedGuardian-encryption.pfx", encryption),
        "password": password,
        **extra,
    }
    return client.post("/vault/upload/", data, follow=True)


def test_operator_uploads_a_pair_and_sees_it_in_the_vault(operator_client: Client) -> None:
    signing, encryption = make_pair(host="OLDHOST")
    response = upload(operator_client, signing, encryption)
    row = EscrowedPair.objects.get()
    assert response.redirect_chain[-1][0] == f"/vault/{row.pk}/"
    assert row.origin == "upload" and row.source_host_name == "OLDHOST"
    page = operator_client.get("/vault/").content.decode()
    assert row.signing_thumbprint in page and PASSWORD not in page
    audit = AuditEvent.objects.get(action="vault.upload")
    assert audit.username == "otto" and PASSWORD not in str(audit.detail)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong password", "the password does not open UntrustedGuardian-signing.pfx"),
        ("not a pfx", "UntrustedGuardian-encryption.pfx is not a PFX"),
        ("mismatched", "do not belong together"),
        ("expired", "expired on"),
    ],
)
def test_upload_refuses_unusable_pairs_with_a_clear_message(operator_client: Client, case: str, message: str) -> None:
    signing, encryption = make_pair(not_before=OLD if case == "expired" else None)
    password = PASSWORD
    if case == "wrong password":
        password = "Wrong-password-1"
    elif case == "not a pfx":
        encryption = b"PK\x03\x04 a zip, not a pfx" * 10
    elif case == "mismatched":
        _, encryption = make_pair(host="OTHER", slot=1, not_before=OLD + timedelta(days=3000))
    response = upload(operator_client, signing, encryption, password)
    page = response.content.decode()
    assert response.status_code == 200 and message in page
    assert EscrowedPair.objects.count() == 0
    assert password not in page


def test_expired_pair_is_stored_when_the_person_accepts_it(operator_client: Client) -> None:
    signing, encryption = make_pair(not_before=OLD)
    upload(operator_client, signing, encryption, allow_expired="on")
    assert EscrowedPair.objects.get().expired()


def test_viewer_can_read_but_not_upload_or_download(viewer_client: Client) -> None:
    row = store()
    assert viewer_client.get("/vault/").status_code == 200
    assert viewer_client.get(f"/vault/{row.pk}/").status_code == 200
    assert viewer_client.get("/vault/upload/").status_code == 403
    assert viewer_client.post(f"/vault/{row.pk}/download/").status_code == 403


def test_anonymous_visitor_is_sent_to_login(client: Client, db: None) -> None:
    response = client.get("/vault/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_operator_cannot_download(operator_client: Client) -> None:
    row = store()
    assert operator_client.post(f"/vault/{row.pk}/download/").status_code == 403
    assert not AuditEvent.objects.filter(action="vault.download").exists()


def test_admin_downloads_the_two_files_once_and_it_is_audited(admin_client: Client) -> None:
    signing, encryption = make_pair()
    row = store_pair(signing, encryption, PASSWORD, user=None, origin="upload").pair
    confirm = admin_client.get(f"/vault/{row.pk}/download/").content.decode()
    assert PASSWORD not in confirm
    ready = admin_client.post(f"/vault/{row.pk}/download/")
    assert PASSWORD in ready.content.decode()  # shown this once, on purpose
    assert "no-store" in ready["Cache-Control"]
    token = ready.context["token"]
    archive = admin_client.get(f"/vault/{row.pk}/download/{token}/")
    assert archive["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert z.read("UntrustedGuardian-signing.pfx") == signing
        assert z.read("UntrustedGuardian-encryption.pfx") == encryption
        readme = z.read("README.txt").decode()
    assert PASSWORD not in readme and row.signing_thumbprint in readme
    again = admin_client.get(f"/vault/{row.pk}/download/{token}/")
    assert again.status_code == 302
    event = AuditEvent.objects.get(action="vault.download")
    assert event.username == "ada" and PASSWORD not in str(event.detail)


def test_tampered_entry_is_reported_and_never_handed_out(admin_client: Client) -> None:
    a, b = store(slot=0), store(slot=1, host="HV02")
    a.signing_pfx = b.signing_pfx
    a.save()
    rows = admin_client.get("/vault/").content.decode().split("<tr>")
    row_of = {pk: next(r for r in rows if f'href="/vault/{pk}/"' in r) for pk in (a.pk, b.pk)}
    assert "damaged" in row_of[a.pk] and "damaged" not in row_of[b.pk]  # the list flags it too
    detail = admin_client.get(f"/vault/{a.pk}/").content.decode()
    assert "damaged or has been tampered with" in detail and "Download for offline use" not in detail
    response = admin_client.post(f"/vault/{a.pk}/download/", follow=True)
    assert b"Not downloaded" in response.content and PASSWORD.encode() not in response.content
    assert AuditEvent.objects.filter(action="vault.download_refused").exists()
    assert not AuditEvent.objects.filter(action="vault.download").exists()
    verify = admin_client.post(f"/vault/{a.pk}/verify/", follow=True)
    assert b"SHA-256" in verify.content
    assert EscrowedPair.objects.count() == 2  # nothing deleted: the evidence stays


def test_an_entry_with_another_entrys_password_is_reported_on_its_page_and_never_handed_out(
    admin_client: Client,
) -> None:
    a = store(slot=0)
    signing, encryption = make_pair(slot=1, host="HV02", password="another-password-123")
    b = store_pair(signing, encryption, "another-password-123", user=None, origin="upload").pair
    EscrowedPair.objects.filter(pk=a.pk).update(pfx_password=b.pfx_password)
    detail = admin_client.get(f"/vault/{a.pk}/").content.decode()
    assert "damaged or has been tampered with" in detail and "Download for offline use" not in detail
    assert "damaged or has been tampered with" not in admin_client.get(f"/vault/{b.pk}/").content.decode()
    response = admin_client.post(f"/vault/{a.pk}/download/", follow=True)
    assert b"Not downloaded" in response.content and b"another-password-123" not in response.content


def test_unknown_entry_is_a_404_not_a_500(admin_client: Client) -> None:
    assert admin_client.get("/vault/999/").status_code == 404
    assert admin_client.get("/vault/999/download/abc/").status_code in (302, 404)


def test_detail_shows_where_a_pair_is_installed_and_which_vms_need_it(viewer_client: Client) -> None:
    from hosts.inventory.models import Guardian, VirtualMachine
    from tests.hosts.test_vault_support import unreachable_host

    row = store()
    host = unreachable_host("HV03")
    key = {"signing": row.signing_thumbprint, "encryption": row.encryption_thumbprint}
    Guardian.objects.create(
        host=host,
        name="UntrustedGuardian",
        signing_thumbprint=row.signing_thumbprint,
        encryption_thumbprint=row.encryption_thumbprint,
        has_private_signing_key=True,
    )
    VirtualMachine.objects.create(host=host, vm_id="1", name="Win11-Sealed", state="Off", kp_owner_thumbprints=key)
    VirtualMachine.objects.create(host=host, vm_id="2", name="Win11-Other", state="Off", kp_owner_thumbprints={})
    page = viewer_client.get(f"/vault/{row.pk}/").content.decode()
    assert "HV03" in page and "Win11-Sealed" in page and "owner" in page
    assert "Win11-Other" not in page and PASSWORD not in page


def inventoried_host_with_sealed_vm(pair: EscrowedPair, name: str = "HV02") -> Any:
    """A host whose last inventory shows a VM sealed to the pair and no guardian for it: the VM cannot start there."""
    from django.utils import timezone

    from hosts.inventory.models import HostInventory, VirtualMachine
    from tests.hosts.test_vault_support import unreachable_host

    host = unreachable_host(name)
    HostInventory.objects.create(host=host, mode="Local", refreshed_at=timezone.now())
    key = {"signing": pair.signing_thumbprint, "encryption": pair.encryption_thumbprint}
    VirtualMachine.objects.create(
        host=host,
        vm_id="1",
        name="Win11-A",
        state="Off",
        has_key_protector=True,
        tpm_enabled=True,
        kp_owner_thumbprints=key,
    )
    return host


def test_detail_offers_the_restore_where_a_sealed_vm_cannot_start(operator_client: Client) -> None:
    row = store()
    host = inventoried_host_with_sealed_vm(row)
    page = operator_client.get(f"/vault/{row.pk}/").content.decode()
    assert f'href="/jobs/new/restore/?host={host.pk}&amp;vm=Win11-A"' in page
    assert f'href="/hosts/{host.pk}/"' in page and "does not start" not in page


def test_viewer_sees_which_vm_does_not_start_but_gets_no_restore_button(viewer_client: Client) -> None:
    row = store()
    inventoried_host_with_sealed_vm(row)
    page = viewer_client.get(f"/vault/{row.pk}/").content.decode()
    assert 'badge bad" title="No:' in page and "/jobs/new/restore/" not in page


def test_upload_goes_back_to_the_page_that_sent_the_user(operator_client: Client) -> None:
    back = "/jobs/new/restore/?host=1&vm=Win11-A"
    form = operator_client.get("/vault/upload/", {"next": back}).content.decode()
    assert 'name="next" value="/jobs/new/restore/?host=1&amp;vm=Win11-A"' in form
    response = operator_client.post(
        "/vault/upload/",
        {
            "signing_pfx": SimpleUploadedFile("s.pfx", make_pair()[0]),
            "encryption_pfx": SimpleUploadedFile("e.pfx", make_pair()[1]),
            "password": PASSWORD,
            "next": back,
        },
    )
    assert response.status_code == 302 and response["Location"] == back


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example/", "javascript:x"])
def test_upload_never_redirects_off_the_console(operator_client: Client, target: str) -> None:
    signing, encryption = make_pair()
    response = operator_client.post(
        "/vault/upload/",
        {
            "signing_pfx": SimpleUploadedFile("s.pfx", signing),
            "encryption_pfx": SimpleUploadedFile("e.pfx", encryption),
            "password": PASSWORD,
            "next": target,
        },
    )
    assert response["Location"] == f"/vault/{EscrowedPair.objects.get().pk}/"


@pytest.mark.django_db
def test_vault_entries_survive_key_rotation(settings: Any) -> None:
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    signing, encryption = make_pair()
    row = store_pair(signing, encryption, PASSWORD, user=None, origin="upload").pair
    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new_key, *settings.ENCRYPTION_KEYS]
    call_command("rotate_encryption_keys", stdout=io.StringIO())
    settings.ENCRYPTION_KEYS = [new_key]  # the old keys are gone: only the re-sealed columns can open
    row.refresh_from_db()
    assert crypto.sealed_with(row.signing_pfx) == crypto.key_id(new_key)
    assert crypto.sealed_with(row.opened_seal) == crypto.key_id(new_key)
    assert row.open() == (signing, encryption, PASSWORD)
    row.confirm_intact()


@pytest.mark.django_db
def test_nightly_check_names_the_damaged_entry() -> None:
    from django.core.management import CommandError, call_command

    a, b = store(slot=0), store(slot=1, host="HV02")
    out = io.StringIO()
    call_command("verify_vault", stdout=out)
    assert "All 2 vault entries are intact" in out.getvalue()
    a.encryption_pfx = b.encryption_pfx
    a.save()
    with pytest.raises(CommandError, match="1 of 2 vault entries are damaged"):
        call_command("verify_vault", stdout=out)
    assert f"#{a.pk}" in out.getvalue() and PASSWORD not in out.getvalue()
    assert AuditEvent.objects.filter(action="vault.tampered", object_id=str(a.pk)).exists()
