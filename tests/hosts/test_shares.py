"""Lab shares are administrators' configuration: listed on an admin page, audited, the only shares a migration
may use."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client

from console.models import AuditEvent
from hosts.models import Host, LabShare
from jobs.kinds import JobFailed
from jobs.workflows.migrate.kind import migrate_vm_job
from jobs.workflows.migrate.plan import MigrationOptions, share_problems

pytestmark = pytest.mark.django_db


def make_host(name: str) -> Host:
    host = Host(name=name, address=f"{name.lower()}.lab.test", username="labadmin")
    host.set_password("x")
    host.save()
    return host


def test_an_admin_lists_a_share_for_two_hosts_and_it_is_audited(admin_client: Client) -> None:
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    response = admin_client.post("/hosts/shares/", {"path": r"\\FILES\vms", "hosts": [hv01.pk, hv02.pk]})
    assert response.status_code == 302
    share = LabShare.objects.get()
    assert {h.name for h in share.hosts.all()} == {"HV01", "HV02"}
    event = AuditEvent.objects.get(action="share.create")
    assert event.detail["path"] == r"\\FILES\vms" and event.detail["hosts"] == ["HV01", "HV02"]
    assert r"\\FILES\vms" in admin_client.get("/hosts/shares/").content.decode()
    admin_client.post(f"/hosts/shares/{share.pk}/delete/")
    assert not LabShare.objects.exists() and AuditEvent.objects.filter(action="share.delete").count() == 1


@pytest.mark.parametrize(
    "path",
    [
        "C:\\exports",
        "\\\\",
        "//files/vms",
        "\\\\FILES",
        "\\\\FILES\\vms\\a*b",
        "\\\\FILES\\vms\\..\\c$",
        "\\\\FILES\\.\\vms",
    ],
)
def test_a_share_must_be_a_unc_path(admin_client: Client, path: str) -> None:
    hv01 = make_host("HV01")
    page = admin_client.post("/hosts/shares/", {"path": path, "hosts": [hv01.pk]}).content.decode()
    assert "Give a UNC path" in page and not LabShare.objects.exists()


def test_an_operator_cannot_change_the_shares(operator_client: Client) -> None:
    hv01 = make_host("HV01")
    response = operator_client.post("/hosts/shares/", {"path": r"\\FILES\vms", "hosts": [hv01.pk]})
    assert response.status_code == 403 and not LabShare.objects.exists()


def test_a_migration_may_use_only_a_share_listed_for_both_hosts(settings: Any) -> None:
    settings.LAB_SHARE = r"\\LAB\share"
    hv01, hv02, hv03 = make_host("HV01"), make_host("HV02"), make_host("HV03")
    assert LabShare.offered_to(hv01, hv02) == [r"\\LAB\share"]  # nothing listed yet: the configured share
    both = LabShare.objects.create(path=r"\\FILES\vms")
    both.hosts.set([hv01, hv02])
    LabShare.objects.create(path=r"\\FILES\hv03").hosts.set([hv01, hv03])
    assert LabShare.offered_to(hv01, hv02) == [r"\\FILES\vms"]
    assert share_problems(MigrationOptions("Win11-B", share=r"\\FILES\vms"), hv01, hv02) == []
    for typed in (r"\\FILES\hv03", r"\\LAB\share", r"\\attacker\drop"):
        assert share_problems(MigrationOptions("Win11-B", share=typed), hv01, hv02), typed
    assert share_problems(MigrationOptions("Win11-B", method="live", share=r"\\x\y"), hv01, hv02) == []


def test_a_job_with_a_share_nobody_listed_fails_before_touching_a_host(settings: Any) -> None:
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    LabShare.objects.create(path=r"\\FILES\vms").hosts.set([hv01, hv02])

    ctx = SimpleNamespace(hosts=[hv01, hv02], vms=["Win11-B"], params={"share": r"\\attacker\drop"})
    with pytest.raises(JobFailed, match="Choose a lab share listed for both"):
        migrate_vm_job(ctx)  # type: ignore[arg-type]  # refused before any session is asked for


def test_an_admin_stores_a_shares_account_sealed_and_it_is_never_shown_or_audited(admin_client: Client) -> None:
    """The workgroup method maps a share of the source with the share's own account: the password is written once,
    sealed like a host's, and appears on no page and in no audit event."""
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    password = "Sh4re-only-Pa55!"
    form = {"path": r"\\HV01\VMExports", "hosts": [hv01.pk, hv02.pk], "account": r"HV01\vmshare"}
    assert admin_client.post("/hosts/shares/", form | {"password": password}).status_code == 302
    share = LabShare.objects.get()
    assert share.has_credentials and share.get_password() == password and password not in share.password
    page = admin_client.get("/hosts/shares/").content.decode()
    assert "HV01\\vmshare (password stored)" in page and password not in page
    assert 'type="password"' in page and 'value="Sh4re' not in page
    event = AuditEvent.objects.get(action="share.create")
    assert event.detail["account"] == r"HV01\vmshare" and password not in str(event.detail)


@pytest.mark.parametrize("given", [{"account": r"HV01\vmshare"}, {"password": "only-a-password"}])
def test_a_shares_account_and_password_come_together(admin_client: Client, given: dict[str, str]) -> None:
    hv01 = make_host("HV01")
    page = admin_client.post("/hosts/shares/", {"path": r"\\HV01\VMExports", "hosts": [hv01.pk], **given})
    assert "Give the share account and its password together" in page.content.decode()
    assert not LabShare.objects.exists() and "only-a-password" not in page.content.decode()
