"""Migrating a VM between the two hosts of the simulator's migration lab, with faults injected part way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import Client

from api.models import ApiToken
from hosts.inventory.refresh import refresh_host
from hosts.remoting import open_session
from hosts.remoting.catalog.vms import (
    ExportVM,
    GenerateLocalGuardian,
    GetVM,
    GetVmSecurity,
    GrantKeyProtectorAccess,
    RevokeKeyProtectorAccess,
    SetKeyProtector,
    StopVM,
)
from hosts.vault.models import EscrowedPair
from hypervsim.keyprotector import parse as parse_kp
from hypervsim.model import VM_ROOT
from jobs.kinds import JobCancelled, JobFailed, Step
from jobs.models import Job
from jobs.services import rerun_preflight_url
from jobs.workflows.migrate.plan import MigrationOptions, MigrationPlan, compare_move, plan_migration
from jobs.workflows.migrate.run import import_guardian_metadata, migrate_vm, read_guardian_metadata, revoke_by_hand
from jobs.workflows.migrate.sides import LiveSide
from tests.hosts.test_vault_support import temp_pfx_left
from tests.plugins.powershell import assert_runnable, shown_powershell
from tests.plugins.runs import DirectRun
from tests.plugins.sim import files_copied_to, kind_to_the_second_hop
from tests.plugins.worlds import registered

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(sim_lab: Any, registered_host: Any) -> Any:
    # Export, live migration and their faults from NTLM sessions: the second hop is not these stories' subject.
    lab = registered(kind_to_the_second_hop(sim_lab(scenarios=["migration"])), registered_host)
    return lab


def migrate(lab: Any, opts: MigrationOptions, run: DirectRun | None = None) -> tuple[str, DirectRun]:
    """Migrate over both hosts' sessions; what the migration logs is kept in the run's lines."""
    run = run or DirectRun()
    hosts = (lab.source_host, lab.target_host)
    with run, open_session(hosts[0].connection_spec()) as s, open_session(hosts[1].connection_spec()) as t:
        return migrate_vm(run, (s, t), hosts, opts), run


def failure_of(lab: Any, opts: MigrationOptions, run: DirectRun | None = None) -> str:
    """Run a migration that must fail; put both hosts back on the network without faults, whatever happened (the
    assertions then read the hosts); return the failure's message."""
    try:
        with pytest.raises(JobFailed) as failed:
            migrate(lab, opts, run)
    finally:
        for sim in lab.hosts:
            sim.faults.clear()
            sim.up()
    return str(failed.value)


def cmdlets(sim: Any) -> list[str]:
    return [c["cmdlet"] for c in sim.command_log]


def share_left(lab: Any) -> list[str]:
    return sorted(p.name for p in lab.share.iterdir())


def test_export_import_carrying_the_owner_pair_runs_the_vm_on_the_target(lab: Any) -> None:
    summary, run = migrate(lab, MigrationOptions("Win11-B", method="export", unseal="carry"))
    assert lab.target.model.vm("Win11-B").state == "Running"
    assert lab.source.model.vm("Win11-B").state == "Off"  # the source copy stays, off
    assert EscrowedPair.objects.count() == 1  # the owner was escrowed on the way
    assert share_left(lab) == []  # the export was removed from the lab share
    assert "running there" in summary and "stays on" in summary


def test_authorising_the_targets_guardian_moves_no_private_key(lab: Any) -> None:
    opts = MigrationOptions("Win11-B", method="export", unseal="authorise", source_after="remove")
    summary, run = migrate(lab, opts)
    assert lab.target.model.vm("Win11-B").state == "Running"
    assert "Win11-B" not in {vm.name for vm in lab.source.model.vms.values()}
    assert "Export-PfxCertificate" not in cmdlets(lab.source) + cmdlets(lab.target)
    assert "Import-PfxCertificate" not in cmdlets(lab.target)
    assert EscrowedPair.objects.count() == 0
    assert {"Import-HgsGuardian", "Grant-HgsKeyProtectorAccess", "Set-VMKeyProtector"} <= set(cmdlets(lab.source))
    assert "Export-HgsGuardian" in cmdlets(lab.target)
    assert "removed from" in summary


def test_live_migration_of_a_running_vm(lab: Any) -> None:
    migrate(lab, MigrationOptions("Win11-A", method="live", unseal="carry"))
    assert lab.target.model.vm("Win11-A").state == "Running"
    assert "Win11-A" not in {vm.name for vm in lab.source.model.vms.values()}
    move = next(c for c in lab.source.command_log if c["cmdlet"] == "Move-VM")
    assert move["parameters"]["DestinationStoragePath"].endswith("\\Hyper-V\\Win11-A")
    assert move["parameters"]["DestinationHost"] == "HV02"
    # Compare-VM asked the source twice: in the preflight (before HV02 had the keys), and again right before Move-VM.
    compares = [c for c in lab.source.command_log if c["cmdlet"] == "Compare-VM"]
    assert [c["parameters"]["DestinationHost"] for c in compares] == ["HV02", "HV02"]
    assert lab.source.command_log.index(compares[1]) < lab.source.command_log.index(move)


def test_live_preflight_lists_what_compare_vm_finds_wrong_with_the_move(lab: Any) -> None:
    vm = lab.source.model.vm("Win11-B")
    with lab.target.model.changing() as model:  # a copy registered earlier under another name: the ID is taken
        model.add_vm("Old-Copy", id=vm.id)
    with open_session(lab.source_host.connection_spec()) as s:
        plan = MigrationPlan(vm=s.run(GetVM("Win11-B")), target_name="HV02")
        compare_move(plan, s, lab.source_host, lab.target_host)
    assert plan.failures and plan.failures[0].startswith("Compare-VM on HV01 for a move to HV02: ")
    assert "same identifier already exists" in plan.failures[0]
    assert "Move-VM" not in cmdlets(lab.source)


def test_registering_files_already_on_the_target(lab: Any) -> None:
    vm = lab.source.model.vm("Win11-B")
    with open_session(lab.source_host.connection_spec()) as s:
        s.run(ExportVM("Win11-B", "\\\\LAB\\share\\copied"))
    config = files_copied_to(lab, vm.id, "\\\\LAB\\share\\copied\\Win11-B", f"{VM_ROOT}\\Win11-B")
    opts = MigrationOptions("Win11-B", method="register", unseal="authorise", files_path=config, start=True)
    migrate(lab, opts)
    assert lab.target.model.vm("Win11-B").state == "Running"
    assert "Import-VM" in cmdlets(lab.target)


HOSTILE_FILES_PATHS = {
    "a network share": "\\\\attacker.example\\loot\\Virtual Machines\\A.vmcx",
    "the lab share": "\\\\LAB\\share\\copied\\Win11-B\\Virtual Machines\\A.vmcx",
    "a device path": "\\\\?\\C:\\ProgramData\\Microsoft\\Windows\\Hyper-V\\A.vmcx",
    "forward slashes": "//attacker.example/loot/A.vmcx",
    "climbing out": f"{VM_ROOT}\\..\\..\\Secrets\\A.vmcx",
    "a relative path": "Virtual Machines\\A.vmcx",
    "a stream": f"{VM_ROOT}\\A.vmcx:hidden.vmcx",
    "a control character": f"{VM_ROOT}\\A\nWARNING fake.vmcx",
    "an invisible character": f"{VM_ROOT}\\A\u202e.vmcx",
    "a trailing dot": f"{VM_ROOT}\\Win11-B.\\A.vmcx",
}


@pytest.mark.parametrize("path", HOSTILE_FILES_PATHS.values(), ids=HOSTILE_FILES_PATHS.keys())
def test_a_hostile_files_path_is_refused_before_the_target_is_asked(lab: Any, path: str) -> None:
    problems = MigrationOptions("Win11-B", method="register", unseal="authorise", files_path=path).problems()
    assert len(problems) == 1 and problems[0].startswith("The configuration file's path ")
    assert not lab.target.command_log


@pytest.mark.parametrize("path", ["D:\\VMs\\Win11-B\\A.vmcx", "C:\\Windows\\System32\\A.vmcx", "C:\\A.vmcx"])
def test_a_files_path_outside_the_folders_the_target_reported_is_refused(lab: Any, path: str) -> None:
    """Another drive, a folder Hyper-V does not use, a drive's root: the preflight says which folders the target
    reported, and the target is never asked to look at the path (no Test-Path, no Compare-VM)."""
    opts = MigrationOptions("Win11-B", method="register", unseal="authorise", files_path=path)
    assert opts.problems() == []
    message = failure_of(lab, opts)
    assert f"{path} is not under a folder HV02 reported for VM files ({VM_ROOT}; " in message
    assert not {"Compare-VM", "Import-VM"} & set(cmdlets(lab.target))
    assert path.casefold() not in repr(lab.target.command_log).replace("\\\\", "\\").casefold()


def test_registering_under_a_reported_folder_in_another_spelling_of_its_case(lab: Any) -> None:
    vm = lab.source.model.vm("Win11-B")
    with open_session(lab.source_host.connection_spec()) as s:
        s.run(ExportVM("Win11-B", "\\\\LAB\\share\\copied"))
    config = files_copied_to(lab, vm.id, "\\\\LAB\\share\\copied\\Win11-B", f"{VM_ROOT}\\Win11-B")
    opts = MigrationOptions("Win11-B", method="register", unseal="authorise", files_path=config.upper(), start=False)
    migrate(lab, opts)
    assert lab.target.model.vm("Win11-B").state == "Off"


# -- preflight and faults ----------------------------------------------------------------------------------------------


def test_a_name_taken_on_the_target_stops_before_any_change(lab: Any) -> None:
    with lab.target.model.changing() as model:
        model.add_vm("Win11-B")
    with pytest.raises(JobFailed, match="Nothing was changed.*already has a VM named 'Win11-B'"):
        migrate(lab, MigrationOptions("Win11-B"))
    assert "Export-VM" not in cmdlets(lab.source) and EscrowedPair.objects.count() == 0


def test_preflight_names_every_blocker(lab: Any) -> None:
    with lab.target.model.changing() as model:
        model.live_migration = False
    opts = MigrationOptions("Win11-C", method="live", unseal="authorise")
    with (
        open_session(lab.source_host.connection_spec()) as s,
        open_session(lab.target_host.connection_spec()) as t,
    ):
        plan = plan_migration(s, t, lab.source_host, lab.target_host, opts)
    text = " ".join(plan.failures)
    assert "Live migration is not enabled on HV02" in text
    assert "saved state cannot be resumed" in text


def test_a_target_in_hgs_mode_is_refused_before_any_change(lab: Any) -> None:
    with lab.target.model.changing() as model:
        model.hgs_mode = "HostGuardianService"
    with pytest.raises(JobFailed, match="Nothing was changed: the preflight could not read both hosts.*not Local"):
        migrate(lab, MigrationOptions("Win11-B"))
    assert "Export-VM" not in cmdlets(lab.source)


class HostDownBefore(DirectRun):
    """Takes a host down when a step whose title starts with `trigger` begins: a host lost part way."""

    def __init__(self, sim: Any, trigger: str) -> None:
        super().__init__()
        self.sim, self.trigger = sim, trigger

    @contextmanager
    def step(self, title: str, destructive: bool = False) -> Iterator[Step]:
        if title.startswith(self.trigger):
            self.sim.down()
        with super().step(title, destructive) as step:
            yield step


def test_target_down_before_the_import_undoes_the_export_and_restarts_the_source(lab: Any) -> None:
    run = HostDownBefore(lab.target, "Compare-VM")
    message = failure_of(lab, MigrationOptions("Win11-A", method="export", unseal="carry"), run)
    assert "Undone:" in message and "'Win11-A' shut down on HV01" in message
    assert lab.source.model.vm("Win11-A").state == "Running"  # started again
    assert share_left(lab) == []  # the export was removed
    assert "Win11-A" not in {vm.name for vm in lab.target.model.vms.values()}
    assert "Left as it is:" in message and "Remove-HgsGuardian" in message  # the imported guardian, by hand
    assert temp_pfx_left(lab.source) == [] and temp_pfx_left(lab.target) == []
    assert EscrowedPair.objects.get().open()  # the escrowed owner pair stays usable in the vault


def test_connection_dropped_during_import_leaves_a_clear_state(lab: Any) -> None:
    lab.target.faults.drop_on_cmdlet = "Import-VM"
    message = failure_of(lab, MigrationOptions("Win11-B", method="export", unseal="carry"))
    assert "The VM is on HV01 (Off)" in message
    assert "Win11-B" not in {vm.name for vm in lab.target.model.vms.values()}
    assert share_left(lab) == []
    assert temp_pfx_left(lab.source) == [] and temp_pfx_left(lab.target) == []
    assert EscrowedPair.objects.get().open()


def test_a_grant_cut_off_names_the_guardian_it_imported_on_the_source(lab: Any) -> None:
    lab.source.faults.drop_on_cmdlet = "Set-VMKeyProtector"
    message = failure_of(lab, MigrationOptions("Win11-A", method="export", unseal="authorise"))
    imported = next(g for g in lab.source.model.guardians if g.startswith("HV02-"))
    assert f"imported on HV01 as '{imported}'" in message
    assert f"on HV01: Remove-HgsGuardian -Name '{imported}'" in message
    assert "Undone: 'Win11-A' shut down on HV01" in message and lab.source.model.vm("Win11-A").state == "Running"
    assert "Export-VM" not in cmdlets(lab.source)


def test_live_migration_with_the_source_gone_before_the_move_says_where_to_look(lab: Any) -> None:
    run = HostDownBefore(lab.source, "Move-VM")
    message = failure_of(lab, MigrationOptions("Win11-A", method="live", unseal="carry"), run)
    assert "HV01 (unreachable: check by hand with Get-VM -Name 'Win11-A')" in message
    assert lab.source.model.vm("Win11-A").state == "Running"  # it never left
    assert "Win11-A" not in {vm.name for vm in lab.target.model.vms.values()}


def test_live_migration_to_a_target_gone_before_the_move_changes_nothing_there(lab: Any) -> None:
    run = HostDownBefore(lab.target, "Compare-VM on HV01 for the move")
    message = failure_of(lab, MigrationOptions("Win11-B", method="live", unseal="carry", start=False), run)
    assert "Compare-VM on HV01: The Virtual Machine Management Service failed to establish a connection" in message
    assert "Move-VM" not in cmdlets(lab.source) and lab.source.model.vm("Win11-B").state == "Off"
    assert "The VM is on HV01 (Off)" in message and "Remove-HgsGuardian" in message  # the pair imported before
    assert temp_pfx_left(lab.target) == [] and EscrowedPair.objects.get().open()


def test_a_failed_start_after_a_live_migration_says_how_to_bring_the_vm_back(lab: Any) -> None:
    lab.target.faults.drop_on_cmdlet = "Start-VM"
    message = failure_of(lab, MigrationOptions("Win11-B", method="live", unseal="carry", start=True))
    assert "Left as it is: 'Win11-B' moved to HV02 by live migration" in message
    assert "Move-VM -Name 'Win11-B' -DestinationHost 'HV01' -IncludeStorage" in message
    assert "The VM is on HV02 (Off)" in message and lab.target.model.vm("Win11-B").state == "Off"


# -- the wizard ------------------------------------------------------------------------------------------------------


@pytest.mark.urls("tests.hosts.test_vault_support")
def test_wizard_checks_both_hosts_shows_powershell_and_starts_the_job(lab: Any, operator_client: Any) -> None:
    assert refresh_host(lab.source_host).ok
    choose = {"form": "1", "host": lab.source_host.pk, "target": lab.target_host.pk, "vm": "Win11-B"}
    choose |= {"method": "export", "unseal": "authorise", "source_after": "off", "start": "on"}
    page = operator_client.get("/jobs/new/migrate/", {**choose, "preview": "1"}).content.decode()
    assert "HV01 sees the lab share" in page and "Show PowerShell" in page
    assert "Export-VM -Name &#x27;Win11-B&#x27;" in page and "Grant-HgsKeyProtectorAccess" in page
    # Show PowerShell runs as shown: the byte arrays the job passes on are variables assigned from their reads.
    lines = shown_powershell(page)
    assert "$kp = Get-VMKeyProtector -VMName 'Win11-B'" in lines
    assert any(line.startswith("$grantedKp = ConvertTo-HgsKeyProtector -Bytes $kp | Grant-") for line in lines)
    assert "Set-VMKeyProtector -VMName 'Win11-B' -KeyProtector $grantedKp.RawData" in lines
    assert any(line.startswith("$guardianXml = Get-Content -LiteralPath") for line in lines)
    assert lines.index("# On HV02 (target):") < lines.index(
        "New-HgsGuardian -Name 'UntrustedGuardian' -GenerateCertificates"
    )
    assert_runnable(lines)
    response = operator_client.post("/jobs/new/migrate/", {**choose, "preview": "1"})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == "migrate_vm" and job.host_names == ["HV01", "HV02"] and job.vms == ["Win11-B"]
    assert job.params["unseal"] == "authorise" and job.params["start"] is True
    # "Run again" opens the wizard with the same choices, to check both hosts again (no one-click re-run).
    again = rerun_preflight_url(job)
    assert again is not None and again.startswith(f"/jobs/new/migrate/?host={lab.source_host.pk}&target=")
    refilled = operator_client.get(again).content.decode()
    # The last step before the review, the earlier choices carried and listed, nothing read from the hosts yet.
    assert 'data-step="unseal"' in refilled and '<input type="hidden" name="vm" value="Win11-B">' in refilled
    assert 'name="unseal" value="authorise" checked' in refilled and 'id="migrate-submit"' not in refilled


@pytest.mark.urls("tests.hosts.test_vault_support")
def test_wizard_shows_the_escrow_and_import_that_carry_the_owner_pair(lab: Any, operator_client: Any) -> None:
    assert refresh_host(lab.source_host).ok
    choose = {"form": "1", "host": lab.source_host.pk, "target": lab.target_host.pk, "vm": "Win11-B"}
    choose |= {"method": "export", "unseal": "carry", "source_after": "off", "start": "on", "preview": "1"}
    lines = shown_powershell(operator_client.get("/jobs/new/migrate/", choose).content.decode())
    owner = lab.source.model.guardian("UntrustedGuardian")
    export = next(line for line in lines if line.startswith("Export-PfxCertificate"))
    write = next(line for line in lines if line.startswith("Set-Content") and "-Value $signingPfx" in line)
    assert owner.signing.thumbprint in export
    assert host_of(lines, export) == "HV01" and host_of(lines, write) == "HV02"
    assert lines.index(export) < lines.index(write)
    assert any(line.startswith("$signingPfx = Get-Content") for line in lines)  # read on the source, written there
    assert "# $signingPfx holds what was read on HV01 above: carry its value over first" in lines
    new_guardian = "New-HgsGuardian -Name 'UntrustedGuardian' -SigningCertificateThumbprint"
    assert host_of(lines, next(line for line in lines if line.startswith(new_guardian))) == "HV02"
    assert_runnable(lines)


def host_of(lines: list[str], line: str) -> str:
    """The host a shown line runs on: the last "# On <host> (…):" above it."""
    above = [text for text in lines[: lines.index(line)] if text.startswith("# On ")]
    return above[-1].split()[2]


@pytest.mark.urls("tests.hosts.test_vault_support")
def test_wizard_refuses_a_blocked_migration_and_bad_input(lab: Any, operator_client: Any, viewer_client: Any) -> None:
    with lab.target.model.changing() as model:
        model.add_vm("Win11-B")
    data = {"form": "1", "preview": "1", "host": lab.source_host.pk, "target": lab.target_host.pk, "vm": "Win11-B"}
    response = operator_client.post("/jobs/new/migrate/", data)
    assert response.status_code == 400 and "already has a VM named" in response.content.decode()
    assert (
        operator_client.get("/jobs/new/migrate/", {"host": "x", "target": "1; drop", "method": "?"}).status_code == 200
    )
    weird = operator_client.get("/jobs/new/migrate/", {**data, "method": "teleport"}).content.decode()
    assert "Choose a migration method" in weird
    assert viewer_client.get("/jobs/new/migrate/").status_code == 403
    assert Job.objects.count() == 0


@pytest.mark.urls("tests.hosts.test_vault_support")
def test_removing_the_source_copy_needs_the_vm_name_typed_exactly(lab: Any, operator_client: Any) -> None:
    assert refresh_host(lab.source_host).ok
    choose = {"form": "1", "preview": "1", "host": lab.source_host.pk, "target": lab.target_host.pk, "vm": "Win11-B"}
    choose |= {"method": "export", "unseal": "authorise", "source_after": "remove", "start": "on"}
    page = operator_client.get("/jobs/new/migrate/", choose).content.decode()
    assert 'name="confirm_name"' in page and "Type the VM&#x27;s name" not in page  # asked, not yet refused
    refusal = "Type the VM&#x27;s name &#x27;Win11-B&#x27; exactly to confirm removing its source copy from HV01."
    for typed in (None, "", "win11-b", "Win11-B ", "Win11-A"):
        sent = choose if typed is None else {**choose, "confirm_name": typed}
        response = operator_client.post("/jobs/new/migrate/", sent)
        assert response.status_code == 400 and Job.objects.count() == 0
        assert refusal in response.content.decode() or not typed  # an empty box is refused, the field says why
    response = operator_client.post("/jobs/new/migrate/", {**choose, "confirm_name": "Win11-B"})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/" and job.params["source_after"] == "remove"
    assert "confirm_name" not in job.params


@pytest.mark.urls("tests.hosts.test_vault_support")
def test_the_api_removes_a_source_copy_only_with_the_vm_name_typed(lab: Any, operator: Any) -> None:
    api = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(operator, 'script', 'operator', 1)[1]}")
    choices = {"host": lab.source_host.pk, "target": lab.target_host.pk, "vm": "Win11-B", "method": "export"}
    choices |= {"unseal": "authorise", "source_after": "remove", "start": True, "form": True}

    def start(**more: Any) -> Any:
        body = {"workflow": "migrate", "choices": {**choices, **more}}
        return api.post("/api/jobs/", body, content_type="application/json")

    refused = start(confirm_name="WIN11-B")
    assert refused.status_code == 400 and refused.json()["started"] is None
    assert (
        "Type the VM's name 'Win11-B' exactly to confirm removing its source copy from HV01."
        in refused.json()["problems"]
    )
    assert start().status_code == 400 and Job.objects.count() == 0
    started = start(confirm_name="Win11-B")
    assert started.status_code == 201 and Job.objects.get().params["source_after"] == "remove"


def test_a_start_cut_off_on_the_target_undoes_the_move_and_restarts_the_source(lab: Any) -> None:
    lab.target.faults.drop_on_cmdlet = "Start-VM"
    message = failure_of(lab, MigrationOptions("Win11-A", method="export", unseal="carry"))
    assert "Undone: 'Win11-A' imported on HV02" in message and "'Win11-A' shut down on HV01" in message
    assert "Win11-A" not in {vm.name for vm in lab.target.model.vms.values()}
    assert lab.source.model.vm("Win11-A").state == "Running"
    assert "The VM is on HV01 (Running)" in message


class CancelledBefore(DirectRun):
    """Someone cancels the job as the step whose title starts with `trigger` is about to begin."""

    def __init__(self, trigger: str) -> None:
        super().__init__()
        self.trigger = trigger

    @contextmanager
    def step(self, title: str, destructive: bool = False) -> Iterator[Step]:
        if title.startswith(self.trigger):
            raise JobCancelled("cancelled at user request")
        with super().step(title, destructive) as step:
            yield step


def test_a_cancel_between_export_and_import_puts_things_back(lab: Any) -> None:
    run = CancelledBefore("Compare-VM")
    with pytest.raises(JobCancelled):
        migrate(lab, MigrationOptions("Win11-A", method="export", unseal="carry"), run)
    assert share_left(lab) == [] and lab.source.model.vm("Win11-A").state == "Running"
    assert "Undone:" in run.text and "Left as it is:" in run.text


def test_the_revoke_a_failed_migration_prints_takes_a_granted_guardian_back_out(lab: Any) -> None:
    """The ledger's hand-run revoke, as operations: grant the target's guardian on the source, then revoke it with
    the same operations revoke_by_hand renders; the key protector is sealed to the source's guardians alone again."""
    hosts = (lab.source_host, lab.target_host)
    with open_session(hosts[0].connection_spec()) as s, open_session(hosts[1].connection_spec()) as t:
        source, target = LiveSide(s, hosts[0], "source"), LiveSide(t, hosts[1], "target")
        t.run(GenerateLocalGuardian("UntrustedGuardian"))  # the fresh target's first guardian
        s.run(StopVM("Win11-A"))  # a key protector changes only while its VM is off
        name = import_guardian_metadata(source, read_guardian_metadata(target, "UntrustedGuardian"), "HV02-Peer")
        before = s.run(GetVmSecurity("Win11-A")).key_protector
        s.run(SetKeyProtector("Win11-A", s.run(GrantKeyProtectorAccess(before, name))))
        sealed_granted = guardians_of(lab.source, "Win11-A")
        granted = s.run(GetVmSecurity("Win11-A")).key_protector
        s.run(SetKeyProtector("Win11-A", s.run(RevokeKeyProtectorAccess(granted, name))))
    sealed_before = {(row.signing.thumbprint, row.encryption.thumbprint) for row in parse_kp(before).rows}
    assert len(sealed_granted) == len(sealed_before) + 1 and guardians_of(lab.source, "Win11-A") == sealed_before
    lines = revoke_by_hand("Win11-A", name).split("; ")
    assert_runnable(lines)
    assert lines[-2:] == [
        "$revokedKp = ConvertTo-HgsKeyProtector -Bytes $kp | Revoke-HgsKeyProtectorAccess -GuardianFriendlyName "
        "'HV02-Peer'",
        "Set-VMKeyProtector -VMName 'Win11-A' -KeyProtector $revokedKp.RawData",
    ]


def guardians_of(sim: Any, vm_name: str) -> set[tuple[str, str]]:
    """Who may unseal the VM, as the simulated host holds its key protector."""
    protector = parse_kp(sim.model.vm(vm_name).key_protector)
    return {(row.signing.thumbprint, row.encryption.thumbprint) for row in protector.rows}
