"""VM names are wildcard patterns on Hyper-V: a VM literally named `*`, `Win11-?` or `Win11-[AB]` must make the
console's commands touch that VM only — the TPM switch, a start, an export — and Show PowerShell prints the name
escaped, as it is sent."""

from __future__ import annotations

from typing import Any

import pytest

from hosts.remoting import open_session
from hosts.remoting.catalog.vms import DisableTpm, GetVM, StartVM
from hosts.remoting.operation import literal_name, render_powershell
from hosts.vault.services import store_pair
from hypervsim import SimHost
from hypervsim.model import VHD_ROOT
from hypervsim.scenarios import previous_guardian_backup
from jobs.workflows.migrate.plan import MigrationOptions
from jobs.workflows.migrate.run import migrate_vm
from jobs.workflows.restore.plan import restore_vm
from jobs.workflows.vtpm.plan import TpmChange, change_vtpm
from tests.plugins.runs import DirectRun
from tests.plugins.sim import kind_to_the_second_hop

pytestmark = pytest.mark.django_db
PATTERNS = ("*", "Win11-?")


def add_sealed_copies(sim: SimHost, *names: str, like: str = "Win11-B") -> None:
    """VMs with these names, Off, sealed as `like` is (the same key protector, so the same guardians unseal them).
    Their disks get plain file names: `*` and `?` cannot be in one."""
    with sim.model.changing() as model:
        for index, name in enumerate(names):
            disk = rf"{VHD_ROOT}\copy-{index}.vhdx"
            model.add_vm(name, tpm_enabled=True, key_protector=model.vm(like).key_protector, vhd_paths=[disk])


def states(sim: SimHost) -> dict[str, tuple[str, bool]]:
    return {vm.name: (vm.state, vm.tpm_enabled) for vm in sim.model.vms.values()}


def sent(sim: SimHost, cmdlet: str) -> list[dict[str, Any]]:
    return [entry["parameters"] for entry in sim.command_log if entry["cmdlet"] == cmdlet]


def test_wildcard_characters_are_escaped_as_windows_escapes_them() -> None:
    assert literal_name("Win11-A") == "Win11-A"
    assert literal_name("*") == "`*"
    assert literal_name("Win11-[AB]?`") == "Win11-`[AB`]`?``"
    assert render_powershell(DisableTpm("Win11-?")) == ["Disable-VMTPM -VMName 'Win11-`?'"]


def test_tpm_off_on_vms_named_like_patterns_changes_only_them(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    assert sim.strict.wildcard_names  # the host matches names as Windows does
    add_sealed_copies(sim, *PATTERNS)
    host = registered_host(sim)
    before = states(sim)
    with open_session(host.connection_spec()) as session:
        for name in PATTERNS:
            assert change_vtpm(DirectRun(), session, host, TpmChange(name, "disable")) == f"{name}: TPM off"
    after = states(sim)
    assert {name: after[name] for name in PATTERNS} == {"*": ("Off", False), "Win11-?": ("Off", False)}
    others = {name: state for name, state in before.items() if name not in PATTERNS}
    assert {name: after[name] for name in others} == others
    assert sent(sim, "Disable-VMTPM") == [{"VMName": "`*"}, {"VMName": "Win11-`?"}]
    assert all(entry["outcome"] == "ok" for entry in sim.command_log)  # not even a refusal for a running Win11-A


def test_starting_a_vm_named_like_a_pattern_starts_only_it(sim_host: Any, registered_host: Any) -> None:
    """The restore reads the VM's key protector (one VM's), imports its guardian and starts the VM: on a host whose
    Win11-A and Win11-B are sealed to the same guardian, they stay off."""
    sim = sim_host("reinstalled")
    add_sealed_copies(sim, *PATTERNS, like="Win11-A")
    host = registered_host(sim)
    signing, encryption, password = previous_guardian_backup(sim)
    store_pair(signing, encryption, password, user=None, origin="upload", allow_expired=True)
    with DirectRun() as run, open_session(host.connection_spec(), log=run.log) as session:
        restore_vm(session, host, "Win11-?")
        assert session.run(GetVM("Win11-?")).state == "Running"  # type: ignore[union-attr]
        session.run(StartVM("*"))
    running = {name for name, (state, _tpm) in states(sim).items() if state == "Running"}
    assert running == {"Win11-?", "*"}
    assert sent(sim, "Start-VM") == [{"Name": "Win11-`?"}, {"Name": "`*"}]
    assert sent(sim, "Get-VMKeyProtector") == [{"VMName": "Win11-`?"}]


def test_exporting_a_vm_named_like_a_pattern_moves_only_it(sim_lab: Any, registered_host: Any) -> None:
    """`[` and `]` are allowed in a folder name, so this one exports: by export and import to the other host."""
    lab = kind_to_the_second_hop(sim_lab(scenarios=["migration"]))  # VM names, not the second hop, are the subject
    source, target = lab.hosts
    add_sealed_copies(source, *PATTERNS, "Win11-[AB]")
    hosts = (registered_host(source), registered_host(target))
    opts = MigrationOptions("Win11-[AB]", method="export", unseal="carry")
    with (
        DirectRun() as run,
        open_session(hosts[0].connection_spec()) as s,
        open_session(hosts[1].connection_spec()) as t,
    ):
        migrate_vm(run, (s, t), hosts, opts)
    assert [vm.name for vm in target.model.vms.values()] == ["Win11-[AB]"]
    assert target.model.vm("Win11-[AB]").state == "Running"
    assert sent(source, "Export-VM")[0]["Name"] == "Win11-`[AB`]"
    assert states(source)["Win11-A"] == ("Running", True) and states(source)["Win11-B"] == ("Off", True)
