"""Show PowerShell of a restore is what the job sends: the preview for a simulated host, from its last inventory,
then the restore against that host, compared command by command."""

from __future__ import annotations

from typing import Any

import pytest

from hosts.inventory.refresh import refresh_host
from hosts.models import Host
from hosts.remoting import open_session
from hosts.vault.services import store_pair
from hypervsim.scenarios import previous_guardian_backup
from jobs.workflows.restore.plan import restore_script, restore_vm
from tests.plugins.powershell import assert_shown_is_sent, sent_commands, shown_commands
from tests.plugins.runs import DirectRun

# Preview text against the commands a simulated host received: the rows behind both are read by the same queries
# as in the workflow's own tests, which run on PostgreSQL too, so this module runs on SQLite only.
pytestmark = [pytest.mark.django_db, pytest.mark.same_on_every_database]


def reinstalled_with_backup_in_vault(sim: Any, registered_host: Any) -> Host:
    host: Host = registered_host(sim)
    signing, encryption, password = previous_guardian_backup(sim)
    store_pair(signing, encryption, password, user=None, origin="upload", allow_expired=True)
    assert refresh_host(host).ok
    return host


def assert_restore_sends_what_is_shown(sim: Any, host: Host, vm_name: str) -> list[str]:
    """The preview's commands are the restore's; returns the cmdlets shown."""
    _plan, script = restore_script(host, vm_name)
    since = len(sim.command_log)
    with DirectRun() as run, open_session(host.connection_spec()) as session:
        restore_vm(session, host, vm_name)
    shown = shown_commands(script)
    assert_shown_is_sent(shown, sent_commands(sim, since))
    assert f"VM '{vm_name}' is running on" in run.text
    return [name for name, _params in shown]


def test_restore_after_reinstall_sends_what_its_preview_shows(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("reinstalled")
    host = reinstalled_with_backup_in_vault(sim, registered_host)
    shown = assert_restore_sends_what_is_shown(sim, host, "Win11-A")
    assert "Import-PfxCertificate" in shown and shown[-2:] == ["Start-VM", "Get-VM"]
    assert sim.model.vm("Win11-A").state == "Running"


def test_restore_of_a_second_vm_of_the_same_guardian_only_starts_it_as_shown(
    sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("reinstalled")
    host = reinstalled_with_backup_in_vault(sim, registered_host)
    with DirectRun(), open_session(host.connection_spec()) as session:
        restore_vm(session, host, "Win11-A")
    assert refresh_host(host).ok  # the inventory now shows the guardian back on the host
    shown = assert_restore_sends_what_is_shown(sim, host, "Win11-B")
    assert "Import-PfxCertificate" not in shown and "New-HgsGuardian" not in shown and "Start-VM" in shown
