"""The migration wizard's Show PowerShell is what the job sends: for each way of migrating, the commands the preview
shows for a host are, in order, the commands that host received from the migration run right after it."""

from __future__ import annotations

from typing import Any

import pytest

from hosts.models import LabShare
from hosts.remoting import open_session
from hosts.remoting.catalog.vms import ExportVM
from hosts.vault.models import EscrowedPair
from hypervsim.model import VM_ROOT
from jobs.workflows.escrow.plan import escrow_pair
from jobs.workflows.migrate.page import live_preview
from jobs.workflows.migrate.plan import MigrationOptions
from jobs.workflows.migrate.run import migrate_vm
from jobs.workflows.powershell import PowerShellScript
from tests.plugins.powershell import assert_runnable, assert_shown_is_sent, sent_commands, shown_commands
from tests.plugins.runs import DirectRun
from tests.plugins.sim import files_copied_to, kind_to_the_second_hop
from tests.plugins.worlds import registered

# Preview text against the commands a simulated host received: the rows behind both are read by the same queries
# as in the workflow's own tests, which run on PostgreSQL too, so this module runs on SQLite only.
pytestmark = [pytest.mark.django_db, pytest.mark.same_on_every_database]


@pytest.fixture
def lab(sim_lab: Any, registered_host: Any) -> Any:
    # Show PowerShell of the share and live methods from NTLM sessions: the second hop is not the subject here.
    lab = registered(kind_to_the_second_hop(sim_lab(scenarios=["migration"])), registered_host)
    return lab


def preview(lab: Any, opts: MigrationOptions) -> PowerShellScript:
    plan, script, error = live_preview(lab.source_host, lab.target_host, opts)
    assert plan is not None, error
    assert not plan.failures, plan.failures
    return script


def assert_migration_sends_what_was_shown(lab: Any, opts: MigrationOptions) -> DirectRun:
    """Preview, then migrate: each host received exactly the commands shown for it, in the order shown."""
    script = preview(lab, opts)
    since = {sim.name: len(sim.command_log) for sim in lab.hosts}
    hosts = (lab.source_host, lab.target_host)
    with (
        DirectRun() as run,
        open_session(hosts[0].connection_spec()) as s,
        open_session(hosts[1].connection_spec()) as t,
    ):
        migrate_vm(run, (s, t), hosts, opts)
    for sim, host in zip(lab.hosts, hosts, strict=True):
        assert_shown_is_sent(shown_commands(script, host.name), sent_commands(sim, since[sim.name]))
    return run


MIGRATIONS = {
    "export, carry (escrow on the source, import on the target)": MigrationOptions("Win11-B", unseal="carry"),
    "export of a running VM, authorise, source removed": MigrationOptions(
        "Win11-A", unseal="authorise", source_after="remove", new_id=True
    ),
    "live migration of a running VM, carry": MigrationOptions("Win11-A", method="live", unseal="carry"),
    "live migration of a VM that is off, authorise": MigrationOptions("Win11-B", method="live", unseal="authorise"),
    "export, not started on the target": MigrationOptions("Win11-B", unseal="authorise", start=False),
}


@pytest.mark.parametrize("opts", MIGRATIONS.values(), ids=MIGRATIONS.keys())
def test_each_way_of_migrating_sends_what_show_powershell_shows(lab: Any, opts: MigrationOptions) -> None:
    run = assert_migration_sends_what_was_shown(lab, opts)
    assert lab.target.model.vm(opts.vm_name).state == ("Running" if opts.start else "Off")
    assert "Failed" not in run.text


def test_registering_copied_files_sends_what_show_powershell_shows(lab: Any) -> None:
    vm = lab.source.model.vm("Win11-B")
    with open_session(lab.source_host.connection_spec()) as s:
        s.run(ExportVM("Win11-B", "\\\\LAB\\share\\copied"))
    config = files_copied_to(lab, vm.id, "\\\\LAB\\share\\copied\\Win11-B", f"{VM_ROOT}\\Win11-B")
    opts = MigrationOptions("Win11-B", method="register", unseal="authorise", files_path=config)
    assert_migration_sends_what_was_shown(lab, opts)
    assert lab.target.model.vm("Win11-B").state == "Running"


def test_carrying_a_pair_already_in_the_vault_sends_what_show_powershell_shows(lab: Any) -> None:
    owner = lab.source.model.guardian("UntrustedGuardian")
    with open_session(lab.source_host.connection_spec()) as s:
        escrow_pair(s, lab.source_host, owner.signing.thumbprint, owner.encryption.thumbprint)
    run = assert_migration_sends_what_was_shown(lab, MigrationOptions("Win11-B", unseal="carry"))
    assert "from the vault" in run.text and "▶ Escrow" not in run.text  # imported from the vault's copy
    assert EscrowedPair.objects.count() == 1 and lab.target.model.vm("Win11-B").state == "Running"


def test_carrying_to_a_target_whose_store_exists_sends_what_show_powershell_shows(lab: Any) -> None:
    with lab.target.model.changing() as model:
        model.store = {}  # created by an earlier TPM change, still empty
    assert_migration_sends_what_was_shown(lab, MigrationOptions("Win11-B", unseal="carry"))


def test_copying_from_the_sources_own_share_sends_what_show_powershell_shows(lab: Any) -> None:
    """The workgroup method, with the second hop refused as on Windows: the mapping with the share's account, the
    copy and the removal of the mapping are shown as sent (the password as a Get-Credential prompt)."""
    for sim in lab.hosts:
        sim.strict.second_hop, sim.model.domain = True, None
    lab.source.model.share_folder("VMExports", r"D:\VMExports", {r"HV01\vmshare": "Sh4re-only-Pa55!"})
    share = LabShare(path=r"\\HV01\VMExports", account=r"HV01\vmshare")
    share.set_password("Sh4re-only-Pa55!")
    share.save()
    share.hosts.set([lab.source_host, lab.target_host])
    opts = MigrationOptions("Win11-B", method="pull", unseal="authorise", share=share.path)
    script = preview(lab, opts)
    lines = script.lines()
    assert_runnable(lines)
    mapping = next(line for line in lines if line.startswith("New-PSDrive"))
    assert "-Credential (Get-Credential -UserName 'HV01\\vmshare'" in mapping and "Sh4re" not in "".join(lines)
    assert_migration_sends_what_was_shown(lab, opts)
    assert lab.target.model.vm("Win11-B").state == "Running"
