"""The workgroup method ("pull") between two simulated workgroup hosts as Windows has them (`second_hop` on, its
default): the console's sessions are NTLM, so nothing reaches a third machine on the session's own credentials.

The method maps a share of the source on the target with the share's own account, given as a PSCredential. Here:
what the preflight says to configure when it cannot work, and its faults (wrong share credentials, the share gone in
the middle of the copy), which end the job with the remedy, the ledger undone, the mapping removed, and the share's
password nowhere. Each method in each world, this one included, is the table of test_migrate_worlds.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from hosts.models import LabShare
from jobs.kinds import JobFailed
from jobs.workflows.migrate.page import live_preview
from jobs.workflows.migrate.plan import MigrationOptions
from tests.plugins.runs import DirectRun
from tests.plugins.worlds import ACCOUNT, FOLDER, PASSWORD, SHARE, ntlm_pair, serve_source_share
from tests.workflows.test_migrate import migrate

pytestmark = pytest.mark.django_db
PULL = MigrationOptions("Win11-B", method="pull", unseal="authorise", share=SHARE)


@pytest.fixture
def world(sim_lab: Any, registered_host: Any) -> Any:
    lab = ntlm_pair(sim_lab, registered_host)
    serve_source_share(lab)
    return lab


def cmdlets(sim: Any) -> list[str]:
    return [c["cmdlet"] for c in sim.command_log]


def leftovers(lab: Any) -> dict[str, list[str]]:
    """Exports on the source's share folder and copies of them on the target (named gc-…-migrate)."""
    found = {"source": list(lab.source.model.files.snapshot(FOLDER))}
    found["target"] = [p for p in lab.target.model.files.snapshot("C:\\") if "-migrate" in p]
    return found


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


def test_a_share_without_its_account_or_not_served_by_the_source_is_refused(world: Any) -> None:
    share = LabShare.objects.get(path=SHARE)
    share.account, share.password = "", ""
    share.save()
    plan, _, _ = live_preview(world.source_host, world.target_host, PULL)
    assert plan is not None
    assert any("No account is stored for \\\\HV01\\VMExports" in f for f in plan.failures), plan.failures
    world.source.model.shares.clear()
    share.account = ACCOUNT
    share.set_password(PASSWORD)
    share.save()
    plan, _, _ = live_preview(world.source_host, world.target_host, PULL)
    assert plan is not None
    assert any("HV01 has no share named 'VMExports' (Get-SmbShare)" in f for f in plan.failures), plan.failures


# -- faults ------------------------------------------------------------------------------------------------------


def test_wrong_share_credentials_end_the_job_with_the_remedy_and_nothing_half_moved(world: Any) -> None:
    world.source.model.shares["vmexports"].accounts = {ACCOUNT: "changed-on-the-host"}
    run = DirectRun()
    with pytest.raises(JobFailed) as failed:
        migrate(world, PULL, run)
    message = str(failed.value)
    assert "The user name or password is incorrect." in message
    assert f"check the account {ACCOUNT} and its password stored for {SHARE} (Hosts › Lab shares)" in message
    assert "Undone:" in message and "export of 'Win11-B'" in message and "The VM is on HV01 (Off)" in message
    assert_put_back(world)
    assert PASSWORD not in run.text + message and "changed-on-the-host" not in run.text


def test_a_share_gone_in_the_middle_of_the_copy_ends_the_job_with_the_mapping_removed(world: Any) -> None:
    world.source.model.shares["vmexports"].vanishes_after = 2  # the export's folder and one file open, then gone
    run = DirectRun()
    with pytest.raises(JobFailed) as failed:
        migrate(world, PULL, run)
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
