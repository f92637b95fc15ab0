"""Rescue after a reinstall with no backup of the keys: the VM runs again as a new VM without a vTPM, on its own
disks and with its own settings, and the old VM is kept, renamed, with its key protector."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import Client

from hosts.inventory.refresh import refresh_host
from hosts.remoting import open_session
from hypervsim.model import LAB_SWITCH
from jobs.kinds import JobFailed, Step
from jobs.workflows.rescue.plan import kept_name, rescue_vm
from tests.plugins.runs import DirectRun
from tests.plugins.sim import reinstalled_with_backup_in_vault

pytestmark = pytest.mark.django_db


def lost_vm_with_settings(sim: Any) -> Any:
    """Win11-A of a reinstalled host, given settings a rescue must carry over."""
    with sim.model.changing():
        vm = sim.model.vm("Win11-A")
        vm.memory_mb, vm.processor_count, vm.secure_boot_template = 6144, 4, "MicrosoftUEFICertificateAuthority"
        sim.model.write_file(r"C:\VMs\Win11-A-data.vhdx", b"data")
        vm.vhd_paths.append(r"C:\VMs\Win11-A-data.vhdx")
        sim.model.switches.append("Lab-Internal")
        vm.network_adapters.append({"name": "Backend", "switch": "Lab-Internal"})
    return vm


def test_a_vm_with_no_copy_of_its_keys_runs_again_without_a_vtpm(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    old = lost_vm_with_settings(sim)
    with DirectRun() as run, open_session(host.connection_spec(), log=run.log) as session:
        plan = rescue_vm(run, session, host, "Win11-A")
    new = sim.model.vm("Win11-A")
    kept = sim.model.vm(kept_name("Win11-A"))
    assert kept.id == old.id and kept.tpm_enabled and kept.key_protector == old.key_protector  # kept for reference
    assert new.id != old.id and new.state == "Running" and not new.tpm_enabled
    assert (new.generation, new.memory_mb, new.processor_count) == (2, 6144, 4)
    assert new.secure_boot and new.secure_boot_template == "MicrosoftUEFICertificateAuthority"
    assert new.vhd_paths == old.vhd_paths  # the same disks, in their order
    assert [a["switch"] for a in new.network_adapters] == [LAB_SWITCH, "Lab-Internal"]
    assert run.results["old_vm"]["disks"] == old.vhd_paths and run.results["kept_as"] == plan.kept_as
    assert "recovery key" in run.text  # the BitLocker warning is in the log


def test_a_vm_whose_keys_are_in_the_vault_is_sent_to_the_restore_and_nothing_changes(
    sim_host: Any, registered_host: Any
) -> None:
    sim, host, _pair, _password = reinstalled_with_backup_in_vault(sim_host, registered_host)
    with (
        DirectRun() as run,
        open_session(host.connection_spec()) as session,
        pytest.raises(JobFailed, match="restore the VM instead"),
    ):
        rescue_vm(run, session, host, "Win11-A")
    assert not {"Rename-VM", "New-VM", "Start-VM"} & {c["cmdlet"] for c in sim.command_log}


def test_a_running_vm_needs_no_rescue(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    with DirectRun() as run, open_session(host.connection_spec()) as session, pytest.raises(JobFailed, match="running"):
        rescue_vm(run, session, host, "Win11-A")


def test_the_rescue_page_reads_the_vm_from_the_host_and_shows_what_it_sends(
    sim_host: Any, registered_host: Any, operator: Any
) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    assert refresh_host(host).ok
    client = Client()
    client.force_login(operator)
    page = client.get(f"/jobs/new/rescue/?host={host.pk}&vm=Win11-A").content.decode()
    assert "Get-VMHardDiskDrive -VMName &#x27;Win11-A&#x27;" in page
    assert "New-VM -Name &#x27;Win11-A&#x27; -Generation 2" in page and "Rename-VM" in page
    assert "recovery key" in page and 'name="vm" value="Win11-A"' in page


def test_the_rescue_page_sends_a_vm_whose_keys_are_escrowed_to_the_restore(
    sim_host: Any, registered_host: Any, operator: Any
) -> None:
    sim, host, _pair, _password = reinstalled_with_backup_in_vault(sim_host, registered_host)
    assert refresh_host(host).ok
    client = Client()
    client.force_login(operator)
    page = client.get(f"/jobs/new/rescue/?host={host.pk}&vm=Win11-A").content.decode()
    assert "restore it instead" in page and f'href="/jobs/new/restore/?host={host.pk}&amp;vm=Win11-A"' in page
    assert "Show PowerShell" not in page


class ResumedRun(DirectRun):
    """A job delivered again after its worker stopped: the steps `done` are skipped, as JobContext skips them."""

    resumed = True

    def __init__(self, done: set[str]) -> None:
        super().__init__()
        self.done = done

    @contextmanager
    def step(self, title: str, destructive: bool = False) -> Iterator[Step]:
        if title in self.done:
            yield Step(title=title, needed=False)
            return
        with super().step(title, destructive) as step:
            yield step


def test_a_rescue_delivered_again_after_the_rename_carries_on_from_the_kept_vm(
    sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    with sim.model.changing():
        sim.model.vm("Win11-A").name = kept_name("Win11-A")  # what the first delivery did before its worker died
    run = ResumedRun({f"Rename-VM 'Win11-A' on {host}"})
    with run, open_session(host.connection_spec()) as session:
        rescue_vm(run, session, host, "Win11-A")
    assert sim.model.vm("Win11-A").state == "Running" and sim.model.vm(kept_name("Win11-A")).tpm_enabled
    assert [c["cmdlet"] for c in sim.command_log].count("Rename-VM") == 0
