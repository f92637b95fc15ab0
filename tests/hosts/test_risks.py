"""Risk analysis on inventory rows: the situations of domain.md, each with the plain-language flag it deserves."""

from __future__ import annotations

import datetime as dt
from itertools import count

import pytest
from django.utils import timezone

from hosts.inventory.analysis import Inventory, can_start
from hosts.inventory.models import Certificate, Guardian, HostInventory, VirtualMachine
from hosts.models import Host
from hosts.vault.models import EscrowedPair

_ids = count(1)


def thumb(label: str) -> str:
    return (label.encode().hex().upper() + "0" * 40)[:40]


def make_host(name: str, mode: str = "Local") -> Host:
    host = Host(name=name, address=f"10.0.0.{next(_ids)}", transport="http", auth="ntlm", username="labadmin")
    host.set_password("Passw0rd!sim")
    host.save()
    HostInventory.objects.create(host=host, mode=mode, refreshed_at=timezone.now(), facts={"store_exists": True})
    return host


def give_guardian(
    host: Host, label: str, name: str = "UntrustedGuardian", private: bool = True, expires_in_days: int = 3650
) -> tuple[str, str]:
    signing, encryption = thumb(f"{label}S"), thumb(f"{label}E")
    not_after = timezone.now() + dt.timedelta(days=expires_in_days)
    for thumbprint, role in ((signing, "Signing"), (encryption, "Encryption")):
        Certificate.objects.create(
            host=host,
            thumbprint=thumbprint,
            subject=f"CN=Shielded VM {role} Certificate ({name}) ({host.name})",
            not_before=timezone.now() - dt.timedelta(days=1),
            not_after=not_after,
            has_private_key=private,
        )
    Guardian.objects.create(
        host=host,
        name=name,
        signing_thumbprint=signing,
        encryption_thumbprint=encryption,
        has_private_signing_key=private,
        has_private_encryption_key=private,
    )
    return signing, encryption


def give_vm(host: Host, name: str, *pairs: tuple[str, str], tpm: bool = True) -> VirtualMachine:
    return VirtualMachine.objects.create(
        host=host,
        vm_id=f"id-{name}",
        name=name,
        state="Off",
        generation=2,
        tpm_enabled=tpm,
        has_key_protector=bool(pairs),
        kp_owner_thumbprints={"signing": pairs[0][0], "encryption": pairs[0][1]} if pairs else {},
        kp_guardian_thumbprints=[{"signing": s, "encryption": e} for s, e in pairs],
    )


def codes(subject_filter: str = "") -> list[str]:
    return sorted(r.code for r in Inventory().risks() if subject_filter in r.subject)


@pytest.mark.django_db
def test_healthy_vm_with_keys_on_one_host_is_one_reinstall_away_from_loss() -> None:
    hv01 = make_host("HV01")
    pair = give_guardian(hv01, "hv01")
    vm = give_vm(hv01, "Win11-A", pair)

    risks = [r for r in Inventory().risks() if r.code == "single_copy"]

    assert [r.subject for r in risks] == ["Win11-A on HV01"]
    assert "one reinstall away from loss" in risks[0].explanation
    assert risks[0].url == f"/vms/{vm.pk}/"
    assert can_start(vm, hv01)[0] is True


@pytest.mark.django_db
def test_keys_on_two_hosts_are_not_a_single_copy() -> None:
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    pair = give_guardian(hv01, "shared")
    give_guardian(hv02, "shared")
    give_vm(hv01, "Win11-A", pair)

    assert "single_copy" not in codes()


@pytest.mark.django_db
def test_escrowed_keys_are_not_a_single_copy() -> None:
    hv01 = make_host("HV01")
    pair = give_guardian(hv01, "hv01")
    give_vm(hv01, "Win11-A", pair)
    EscrowedPair.objects.create(
        signing_thumbprint=pair[0],
        encryption_thumbprint=pair[1],
        guardian_name="Old-HV01",
        not_before=timezone.now(),
        not_after=timezone.now(),
    )

    assert "single_copy" not in codes()
    assert Inventory().identity(pair).escrowed is True  # type: ignore[union-attr]


@pytest.mark.django_db
def test_a_pair_only_the_vault_knows_is_named_after_its_vault_entry() -> None:
    hv02 = make_host("HV02")
    gone = (thumb("goneS"), thumb("goneE"))
    give_vm(hv02, "Win11-Orphan", gone)
    EscrowedPair.objects.create(
        signing_thumbprint=gone[0],
        encryption_thumbprint=gone[1],
        guardian_name="UntrustedGuardian (old HV02)",
        not_before=timezone.now(),
        not_after=timezone.now(),
    )

    identity = Inventory().identity(gone)

    assert identity is not None and identity.display_name == "UntrustedGuardian (old HV02)"


@pytest.mark.django_db
def test_reinstalled_host_vm_can_start_nowhere() -> None:
    hv02 = make_host("HV02")
    old_pair = (thumb("oldS"), thumb("oldE"))  # the guardian of the host before its reinstall: gone
    give_guardian(hv02, "new")  # a fresh UntrustedGuardian after the reinstall
    vm = give_vm(hv02, "Win11-Orphan", old_pair)

    inventory = Inventory()
    ok, reason = inventory.can_start(vm, hv02)
    risks = [r for r in inventory.risks() if r.code == "vm_cannot_start"]

    assert ok is False and "none of the 1 guardian" in reason
    assert [r.subject for r in risks] == ["Win11-Orphan on HV02"]
    assert "cannot start anywhere" in risks[0].explanation


@pytest.mark.django_db
def test_deleted_certificates_leave_a_guardian_that_needs_a_reset() -> None:
    hv03 = make_host("HV03")
    pair = give_guardian(hv03, "hv03", private=False)
    give_vm(hv03, "Win11-B", pair)

    risks = [r for r in Inventory().risks() if r.code == "guardian_without_keys"]

    assert [r.subject for r in risks] == ["UntrustedGuardian on HV03"]
    assert "TPM changes will fail" in risks[0].explanation and "reset" in risks[0].explanation


@pytest.mark.django_db
def test_an_imported_public_only_guardian_is_not_broken() -> None:
    hv01 = make_host("HV01")
    give_guardian(hv01, "hv02-public", name="HV02-guardian", private=False)

    assert "guardian_without_keys" not in codes()


@pytest.mark.django_db
def test_certificates_expiring_within_a_year_are_flagged_and_later_ones_are_not() -> None:
    hv01 = make_host("HV01")
    give_guardian(hv01, "soon", name="Soon", expires_in_days=200)
    give_guardian(hv01, "later", name="Later", expires_in_days=800)

    expiring = [r for r in Inventory().risks() if r.code == "cert_expiring"]

    assert len(expiring) == 2  # signing and encryption of "Soon"
    assert all("(Soon)" in r.subject for r in expiring)


@pytest.mark.django_db
def test_host_in_hgs_mode_is_flagged_and_starts_no_local_vm() -> None:
    hv01, hgs = make_host("HV01"), make_host("HGS01", mode="HostGuardianService")
    pair = give_guardian(hv01, "hv01")
    give_guardian(hgs, "hv01")
    vm = give_vm(hv01, "Win11-A", pair)

    assert "hgs_mode" in codes("HGS01")
    ok, reason = can_start(vm, hgs)
    assert ok is False and "HGS mode" in reason


@pytest.mark.django_db
def test_vm_without_vtpm_starts_anywhere() -> None:
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    vm = give_vm(hv01, "Plain", tpm=False)

    assert can_start(vm, hv02) == (True, "Yes: the VM has no vTPM key protector, so no guardian is needed.")
    assert codes() == []


@pytest.mark.django_db
def test_guardian_identity_is_the_pair_not_the_name() -> None:
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    give_guardian(hv01, "a")  # both called UntrustedGuardian, different certificates
    give_guardian(hv02, "b")

    identities = Inventory().identities

    assert len(identities) == 2
    assert all(i.display_name == "UntrustedGuardian" for i in identities.values())


@pytest.mark.django_db
def test_a_guardian_no_host_holds_is_named_from_its_certificate_subject() -> None:
    hv02 = make_host("HV02")
    vm = give_vm(hv02, "Win11-Orphan", (thumb("oldS"), thumb("oldE")))
    vm.kp_guardian_thumbprints[0]["subject"] = "CN=Shielded VM Signing Certificate (UntrustedGuardian) (HV02)"
    vm.save()

    identity = Inventory().identity((thumb("oldS"), thumb("oldE")))

    assert identity is not None and identity.display_name == "UntrustedGuardian (of HV02)"
