"""Restore after reinstall: the VM that would not start runs again, with the pair found in the vault."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from hosts.inventory.models import Guardian, VirtualMachine
from hosts.models import Host
from hosts.remoting import open_session
from hosts.vault.services import store_pair
from hypervsim.scenarios import previous_guardian_backup
from jobs.kinds import JobFailed
from jobs.models import Job
from jobs.workflows.restore.plan import restore_vm
from tests.hosts.test_vault_support import PASSWORD, assert_no_secret, make_pair, temp_pfx_left, unreachable_host
from tests.plugins.powershell import assert_runnable, shown_powershell
from tests.plugins.runs import DirectRun

pytestmark = pytest.mark.django_db
# The preflight pages' URLs, whether or not jobs/urls.py includes them yet.
PREFLIGHT_URLS = pytest.mark.urls("tests.hosts.test_vault_support")


def test_reinstalled_host_runs_its_vm_again(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    signing, encryption, password = previous_guardian_backup(sim)
    store_pair(signing, encryption, password, user=None, origin="upload", allow_expired=True)
    with DirectRun() as run, open_session(host.connection_spec(), log=run.log) as session:
        assert restore_vm(session, host, "Win11-A") == "UntrustedGuardian"
        restore_vm(session, host, "Win11-B")  # same guardian: only the start is new
    assert sim.model.vm("Win11-A").state == "Running" and sim.model.vm("Win11-B").state == "Running"
    assert [c["cmdlet"] for c in sim.command_log].count("New-HgsGuardian") == 1
    assert temp_pfx_left(sim) == []
    assert "VM 'Win11-B' is running on" in run.text
    assert_no_secret(password, run.text)


def test_restore_without_the_pair_in_the_vault_changes_nothing(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    with (
        DirectRun() as run,
        open_session(host.connection_spec()) as session,
        pytest.raises(JobFailed, match="none of them is in the vault"),
    ):
        restore_vm(session, host, "Win11-A")
    assert sim.model.vm("Win11-A").state == "Off"
    assert run.links[0][1].startswith("/vault/upload/?next=")  # the remedy's page, as a link of its log line
    assert not {"Set-Content", "New-HgsGuardian", "Start-VM"} & {c["cmdlet"] for c in sim.command_log}


@PREFLIGHT_URLS
def test_restore_preflight_says_when_the_vault_lacks_the_pair(operator_client: Client) -> None:
    host = unreachable_host()
    page = operator_client.get(f"/jobs/new/restore/?host={host.pk}&vm=Win11-A").content.decode()
    assert "none of these is in the vault" in page and "Show PowerShell" not in page


@PREFLIGHT_URLS
def test_restore_preflight_links_to_the_upload_and_to_a_host_that_still_has_the_keys(operator_client: Client) -> None:
    host = unreachable_host()
    holder = Host(name="HV01", address="127.0.0.2", port=9, transport="http", auth="negotiate", username="labadmin")
    holder.set_password("Host-Passw0rd!")
    holder.save()
    key = {"signing": "A" * 40, "encryption": "B" * 40}
    VirtualMachine.objects.create(
        host=host,
        vm_id="1",
        name="Win11-A",
        state="Off",
        has_key_protector=True,
        tpm_enabled=True,
        kp_owner_thumbprints=key,
    )
    Guardian.objects.create(
        host=holder,
        name="UntrustedGuardian",
        signing_thumbprint="A" * 40,
        encryption_thumbprint="B" * 40,
        has_private_signing_key=True,
    )
    page = operator_client.get(f"/jobs/new/restore/?host={host.pk}&vm=Win11-A").content.decode()
    back = f"%2Fjobs%2Fnew%2Frestore%2F%3Fhost%3D{host.pk}%26vm%3DWin11-A"
    assert f'href="/vault/upload/?next={back}"' in page
    assert f"/jobs/new/escrow/?host={holder.pk}&amp;guardian={'A' * 40}%3A{'B' * 40}" in page
    assert "Escrow it from HV01" in page and "does not start here" in page


@PREFLIGHT_URLS
def test_restore_preflight_shows_the_pair_and_the_powershell(admin_client: Client) -> None:
    host = unreachable_host()  # it never held the pair: an admin's restore (test_import_placement.py)
    pair = store_pair(*make_pair(), PASSWORD, user=None, origin="upload").pair
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
    page = admin_client.get(f"/jobs/new/restore/?host={host.pk}&vm=Win11-A").content.decode()
    assert "Show PowerShell" in page and "Start-VM -Name &#x27;Win11-A&#x27;" in page
    assert "Import-PfxCertificate" in page and PASSWORD not in page
    lines = shown_powershell(page)
    assert "$signingPfx = [IO.File]::ReadAllBytes((Resolve-Path 'UntrustedGuardian-signing.pfx'))" in lines
    assert any(line.startswith("Set-Content -Path") and "-Value $encryptionPfx" in line for line in lines)
    assert_runnable(lines)
    response = admin_client.post("/jobs/new/restore/", {"host": host.pk, "vm": "Win11-A"})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/" and job.kind == "restore_vm" and job.vms == ["Win11-A"]


@PREFLIGHT_URLS
def test_the_approver_sees_the_restore_preflight_again(admin: Any, settings: Any) -> None:
    """A restore that waits for a second admin (one VM, or several from "every restorable VM"): the approval page runs
    the restore's preflight again on the job's host and VMs, as for the other kinds."""
    from jobs.models import JobState
    from tests.plugins.users import client_for, make_user

    settings.TWO_PERSON_APPROVAL = True
    host = unreachable_host()
    pair = store_pair(*make_pair(), PASSWORD, user=None, origin="upload").pair
    key = {"signing": pair.signing_thumbprint, "encryption": pair.encryption_thumbprint}
    for number, name in enumerate(["Win11-A", "Win11-B"]):
        VirtualMachine.objects.create(
            host=host, vm_id=str(number), name=name, state="Off", has_key_protector=True, kp_owner_thumbprints=key
        )
    approver = client_for(make_user("bea", "admin"))
    for vms in (["Win11-A"], ["Win11-A", "Win11-B"]):
        job = Job.enqueue(admin, "restore_vm", [host], vms, approval="a test's reason")
        assert job.state == JobState.AWAITING_APPROVAL
        review = approver.get(f"/jobs/{job.pk}/approval/").content.decode()
        assert "would not start this job now" not in review
        shown = shown_powershell(review)
        for name in vms:
            assert f"Start-VM -Name '{name}'" in shown, (vms, shown)
