"""Every migration method between two simulated hosts as Windows has them (the `second_hop` switch on, its
default): the console's sessions are NTLM, so nothing reaches a third machine on the session's own credentials.

The table: each method × each world the simulator's logon model can put the console in. A method Windows would
refuse fails in the preflight with its reason and changes nothing; the others move the VM and start it on the target.
The workgroup method ("pull") maps a share of the source on the target with the share's own account, given as a
PSCredential; its faults (wrong share credentials, the share gone in the middle of the copy) end the job with the
remedy, the ledger undone, the mapping removed, and the share's password nowhere.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from hosts.models import LabShare
from hosts.remoting import open_session
from hypervsim.cmdlets import invoke
from hypervsim.model import MIGRATION_KERBEROS, VM_ROOT
from jobs.kinds import JobFailed
from jobs.workflows.migrate.page import live_preview
from jobs.workflows.migrate.plan import MigrationOptions
from jobs.workflows.migrate.run import migrate_vm
from tests.plugins.runs import DirectRun

pytestmark = pytest.mark.django_db

SHARE, FOLDER = r"\\HV01\VMExports", r"D:\VMExports"
ACCOUNT, PASSWORD = r"HV01\vmshare", "Sh4re-only-Pa55!"
# "register": the VM's files, carried by hand into a folder the target reports for VMs (the only place it may register)
COPIED = rf"{VM_ROOT}\Win11-B"

WORLDS = {
    # world: (domain of both hosts, their migration authentication); the console's sessions are NTLM in both
    "workgroup, NTLM": (None, None),
    "domain, Kerberos migrations, NTLM session": ("lab.test", MIGRATION_KERBEROS),
}
# (world, method) -> None: it moves and starts the VM; else a text among the preflight's failures.
EXPECTED = {
    ("workgroup, NTLM", "pull"): None,
    ("workgroup, NTLM", "export"): "holds no credentials for a third machine (the second hop)",
    ("workgroup, NTLM", "live"): "A workgroup pair cannot live-migrate",
    ("workgroup, NTLM", "register"): None,
    ("domain, Kerberos migrations, NTLM session", "pull"): None,
    ("domain, Kerberos migrations, NTLM session", "export"): "holds no credentials for a third machine",
    ("domain, Kerberos migrations, NTLM session", "live"): "No credentials are available in the security package",
    ("domain, Kerberos migrations, NTLM session", "register"): None,
}


@pytest.fixture
def world(request: Any, sim_lab: Any, registered_host: Any) -> Any:
    lab = sim_lab(scenarios=["migration"])
    domain, authentication = WORLDS[request.param]
    for sim in lab.hosts:
        assert sim.strict.second_hop  # Windows' behaviour is the default
        sim.model.domain = domain
        sim.model.migration_authentication = authentication or sim.model.migration_authentication
    lab.source, lab.target = lab.hosts
    lab.source.model.share_folder("VMExports", FOLDER, {ACCOUNT: PASSWORD})
    lab.source_host, lab.target_host = registered_host(lab.source), registered_host(lab.target)
    share = LabShare(path=SHARE, account=ACCOUNT)
    share.set_password(PASSWORD)
    share.save()
    share.hosts.set([lab.source_host, lab.target_host])
    lab.world = request.param
    return lab


def options(lab: Any, method: str) -> MigrationOptions:
    files = ""
    if method == "register":
        files = carry_files_by_hand(lab)
    return MigrationOptions("Win11-B", method=method, unseal="authorise", share=SHARE, files_path=files)


def carry_files_by_hand(lab: Any) -> str:
    """The VM exported on the source and its folder copied to the target (a USB disk): what "register" expects."""
    vm = lab.source.model.vm("Win11-B")
    invoke(lab.source.model, "Export-VM", {"Name": "Win11-B", "Path": r"C:\Export"})
    shutil.copytree(lab.source.model.files.resolve(r"C:\Export\Win11-B"), lab.target.model.files.resolve(COPIED))
    return rf"{COPIED}\Virtual Machines\{vm.id.upper()}.vmcx"


def migrate(lab: Any, opts: MigrationOptions, run: DirectRun | None = None) -> tuple[str, DirectRun]:
    run = run or DirectRun()
    hosts = (lab.source_host, lab.target_host)
    with run, open_session(hosts[0].connection_spec()) as s, open_session(hosts[1].connection_spec()) as t:
        return migrate_vm(run, (s, t), hosts, opts), run


def cmdlets(sim: Any) -> list[str]:
    return [c["cmdlet"] for c in sim.command_log]


def leftovers(lab: Any) -> dict[str, list[str]]:
    """Exports on the source's share folder and copies of them on the target (named gc-…-migrate)."""
    found = {"source": list(lab.source.model.files.snapshot(FOLDER))}
    found["target"] = [p for p in lab.target.model.files.snapshot("C:\\") if "-migrate" in p]
    return found


@pytest.mark.parametrize("world", list(WORLDS), indirect=True)
@pytest.mark.parametrize("method", ["pull", "export", "live", "register"])
def test_each_method_in_each_world_moves_the_vm_or_is_refused_in_the_preflight(world: Any, method: str) -> None:
    opts = options(world, method)
    expected = EXPECTED[(world.world, method)]
    plan, _, error = live_preview(world.source_host, world.target_host, opts)
    assert plan is not None, error
    if expected is not None:
        assert any(expected in failure for failure in plan.failures), plan.failures
        with pytest.raises(JobFailed, match="Nothing was changed"):
            migrate(world, opts)
        assert world.source.model.vm("Win11-B").key_protector  # untouched, and nothing on the target
        assert "Win11-B" not in [vm.name for vm in world.target.model.vms.values()]
        return
    assert not plan.failures, plan.failures
    assert plan.methods[method].runnable is True
    summary, _ = migrate(world, opts)
    assert "running there" in summary
    assert world.target.model.vm("Win11-B").state == "Running"
    assert leftovers(world) == {"source": [], "target": []}
    if method == "pull":
        sent = cmdlets(world.target)
        assert sent.index("New-PSDrive") < sent.index("Copy-Item") < sent.index("Remove-PSDrive")
        assert "Get-SmbShare" in cmdlets(world.source) and "Export-VM" in cmdlets(world.source)


@pytest.mark.parametrize("world", ["workgroup, NTLM"], indirect=True)
def test_the_preflight_says_why_not_and_what_to_configure(world: Any) -> None:
    plan, _, _ = live_preview(world.source_host, world.target_host, MigrationOptions("Win11-B", method="export"))
    assert plan is not None
    verdicts = {key: verdict.runnable for key, verdict in plan.methods.items()}
    # The lab share \\LAB\share is not the source's own: "pull" needs a share of the source.
    assert verdicts == {"pull": False, "export": False, "live": False, "register": True}
    assert "not a share of HV01" in plan.methods["pull"].reasons[0]
    configure = "\n".join(plan.methods["pull"].configure)
    assert "New-SmbShare -Name 'VMExports' -Path 'D:\\VMExports' -ReadAccess 'HV01\\vmshare'" in configure
    assert "Hosts › Lab shares: \\\\HV01\\VMExports for HV01 and HV02, with the account HV01\\vmshare" in configure
    assert "Set-NetFirewallRule -DisplayGroup 'File And Printer Sharing' -Enabled True -Profile Private" in configure
    assert "Copy from the source's own share" in plan.methods["export"].configure[0]
    live = "\n".join(plan.methods["live"].configure)
    assert "Add-Computer -DomainName <domain> -Restart" in live


@pytest.mark.parametrize("world", ["workgroup, NTLM"], indirect=True)
def test_a_share_without_its_account_or_not_served_by_the_source_is_refused(world: Any) -> None:
    share = LabShare.objects.get(path=SHARE)
    share.account, share.password = "", ""
    share.save()
    plan, _, _ = live_preview(world.source_host, world.target_host, options(world, "pull"))
    assert plan is not None
    assert any("No account is stored for \\\\HV01\\VMExports" in f for f in plan.failures), plan.failures
    world.source.model.shares.clear()
    share.account = ACCOUNT
    share.set_password(PASSWORD)
    share.save()
    plan, _, _ = live_preview(world.source_host, world.target_host, options(world, "pull"))
    assert plan is not None
    assert any("HV01 has no share named 'VMExports' (Get-SmbShare)" in f for f in plan.failures), plan.failures


# -- faults ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", ["workgroup, NTLM"], indirect=True)
def test_wrong_share_credentials_end_the_job_with_the_remedy_and_nothing_half_moved(world: Any) -> None:
    world.source.model.shares["vmexports"].accounts = {ACCOUNT: "changed-on-the-host"}
    run = DirectRun()
    with pytest.raises(JobFailed) as failed:
        migrate(world, options(world, "pull"), run)
    message = str(failed.value)
    assert "The user name or password is incorrect." in message
    assert f"check the account {ACCOUNT} and its password stored for {SHARE} (Hosts › Lab shares)" in message
    assert "Undone:" in message and "export of 'Win11-B'" in message and "The VM is on HV01 (Off)" in message
    assert_put_back(world)
    assert PASSWORD not in run.text + message and "changed-on-the-host" not in run.text


@pytest.mark.parametrize("world", ["workgroup, NTLM"], indirect=True)
def test_a_share_gone_in_the_middle_of_the_copy_ends_the_job_with_the_mapping_removed(world: Any) -> None:
    world.source.model.shares["vmexports"].vanishes_after = 2  # the export's folder and one file open, then gone
    run = DirectRun()
    with pytest.raises(JobFailed) as failed:
        migrate(world, options(world, "pull"), run)
    message = str(failed.value)
    assert "The specified network name is no longer available." in message
    assert "check that HV01 is on the network and still shares \\\\HV01\\VMExports, then migrate again" in message
    assert "The VM is on HV01 (Off)" in message
    assert_put_back(world)
    assert PASSWORD not in run.text + message


def assert_put_back(lab: Any) -> None:
    """The job's ledger undone: the mapping removed (after the copy or by the unwind), the source's export and the
    target's partial copy deleted, the VM only on the source, off, as it was."""
    sent = cmdlets(lab.target)
    assert "Remove-PSDrive" in sent and sent.index("New-PSDrive") < sent.index("Remove-PSDrive")
    assert "Import-VM" not in sent and "Win11-B" not in [vm.name for vm in lab.target.model.vms.values()]
    assert leftovers(lab) == {"source": [], "target": []}
    assert lab.source.model.vm("Win11-B").state == "Off"
    assert all(PASSWORD not in str(c["parameters"]) for c in lab.target.command_log)
