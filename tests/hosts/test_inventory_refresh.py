"""Refreshing a host's inventory from a simulated host over real sockets: what it reads, what it costs, and what
happens when the host fails half-way (nothing half-saved, the last inventory kept and marked stale)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from django.test import Client

from hosts.inventory.analysis import Inventory
from hosts.inventory.models import Certificate, Guardian, HostInventory, VirtualMachine
from hosts.inventory.refresh import refresh_host, refresh_hosts
from hosts.jea import JeaEndpoint
from hosts.remoting import open_session
from hosts.remoting.catalog import ReadHostInventory
from hypervsim import Strictness
from hypervsim.certs import guardian_pair
from hypervsim.keyprotector import KeyProtector

pytestmark = [pytest.mark.timeout(90), pytest.mark.django_db]


def snapshot(host: Any) -> tuple[list[Any], list[Any], list[Any]]:
    return (
        sorted(
            VirtualMachine.objects.filter(host=host).values_list("name", "state", "tpm_enabled", "kp_owner_thumbprints")
        ),
        sorted(Guardian.objects.filter(host=host).values_list("name", "signing_thumbprint", "has_private_signing_key")),
        sorted(Certificate.objects.filter(host=host).values_list("thumbprint", "has_private_key")),
    )


def test_healthy_host_inventory_names_the_owner_of_every_vm(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h)

    outcome = refresh_host(host)

    assert outcome.ok, outcome.error
    guardian = h.model.guardian("UntrustedGuardian")
    vms = {vm.name: vm for vm in VirtualMachine.objects.filter(host=host)}
    assert set(vms) == {"Win11-A", "Win11-B", "Win11-C", "Srv-Plain"}
    a = vms["Win11-A"]
    assert a.state == "Running" and a.generation == 2 and a.tpm_enabled
    assert a.owner_pair == (guardian.signing.thumbprint, guardian.encryption.thumbprint)
    assert a.guardian_pairs == [a.owner_pair]
    assert "(UntrustedGuardian) (HV01)" in a.kp_guardian_thumbprints[0]["subject"]
    assert vms["Win11-B"].checkpoint_count == 1
    assert vms["Win11-C"].has_saved_state
    assert not vms["Srv-Plain"].tpm_enabled and not vms["Srv-Plain"].has_key_protector
    g = Guardian.objects.get(host=host)
    assert (g.name, g.signing_thumbprint, g.has_private_signing_key) == (
        "UntrustedGuardian",
        guardian.signing.thumbprint,
        True,
    )
    assert Certificate.objects.filter(host=host, has_private_key=True).count() == 2
    state = HostInventory.objects.get(host=host)
    assert state.mode == "Local" and not state.stale and state.facts["computer_name"] == h.name
    assert 0 < outcome.requests <= 10


def test_the_three_seed_scenarios_show_their_risks(sim_host: Any, registered_host: Any) -> None:
    hosts = {
        scenario: registered_host(sim_host(scenario=scenario, name=name), name=name)
        for scenario, name in (("healthy", "HV01"), ("reinstalled", "HV02"), ("deleted-certs", "HV03"))
    }
    for host in hosts.values():
        assert refresh_host(host).ok

    risks = Inventory().risks()
    by_code: dict[str, set[str]] = {}
    for risk in risks:
        by_code.setdefault(risk.code, set()).add(risk.subject)

    assert by_code["single_copy"] == {"Win11-A on HV01", "Win11-B on HV01", "Win11-C on HV01"}
    assert {"Win11-A on HV02", "Win11-B on HV02"} <= by_code["vm_cannot_start"]
    assert "Win11-A on HV03" in by_code["vm_cannot_start"]
    assert by_code["guardian_without_keys"] == {"UntrustedGuardian on HV03"}


def asked(h: Any) -> int:
    """How many key protectors the host has been asked to name the guardians of so far (one statement each)."""
    guardians = {"ExpandProperty": "Guardians"}
    return sum(1 for c in h.command_log if c["cmdlet"] == "Select-Object" and c["parameters"] == guardians)


def test_requests_per_refresh_of_200_unchanged_vms_stay_at_10(sim_host: Any, registered_host: Any) -> None:
    h, host = windows_host(sim_host, registered_host)
    few = refresh_host(host).requests
    guardian = h.model.guardian("UntrustedGuardian")
    signing, encryption = h.model.store[guardian.signing.thumbprint], h.model.store[guardian.encryption.thumbprint]
    with h.model.changing() as model:
        for i in range(196):
            model.add_vm(
                f"Extra-{i:03}", tpm_enabled=True, key_protector=KeyProtector.create(signing, encryption).to_bytes()
            )
    # The first read of 196 new key protectors sends their bytes (~3 KB each) to the host and reads its answers:
    # more than one 500 KB envelope each way, so more requests, once.
    assert refresh_host(host).ok and asked(h) == 3 + 196
    pair = (guardian.signing.thumbprint, guardian.encryption.thumbprint)
    paced = h.paced_replies

    again = refresh_host(host)

    # One pipeline whose ~1.4 MB of output fills three 500 KB replies: 10 requests. A host busy between two
    # statements (here: the simulator sharing two loaded cores with the test; on Windows, a slow Get-VM) may send
    # what it has before the pipeline ends: those extra replies are its pace, not what the console asked for.
    assert again.ok and few <= 10 and again.requests - (h.paced_replies - paced) <= 10
    assert asked(h) == 3 + 196  # the same bytes name the same guardians: none was sent again
    sealed = VirtualMachine.objects.filter(host=host, has_key_protector=True)
    assert sealed.count() == 199 and {vm.owner_pair for vm in sealed} == {pair}


def test_a_key_protector_that_changed_is_read_by_the_host_again(sim_host: Any, registered_host: Any) -> None:
    h, host = windows_host(sim_host, registered_host)
    assert refresh_host(host).ok and asked(h) == 3
    with h.model.changing() as model:  # Win11-B's protector is granted to a peer guardian: new bytes
        owner = model.guardian("UntrustedGuardian")
        signing, encryption = model.store[owner.signing.thumbprint], model.store[owner.encryption.thumbprint]
        peer_s, peer_e = guardian_pair("Peer", "HV09", key_label="refresh-test/peer")
        vm = model.vm("Win11-B")
        vm.key_protector = KeyProtector.create(signing, encryption).grant(model.store, peer_s, peer_e).to_bytes()

    outcome = refresh_host(host)

    assert outcome.ok and asked(h) == 3 + 1  # only Win11-B's new bytes
    row = VirtualMachine.objects.get(host=host, name="Win11-B")
    assert set(row.guardian_pairs) == {row.owner_pair, (peer_s.thumbprint, peer_e.thumbprint)}
    assert VirtualMachine.objects.get(host=host, name="Win11-A").owner_pair == row.owner_pair


def test_unreachable_host_keeps_its_last_inventory_marked_stale(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h)
    assert refresh_host(host).ok
    before = snapshot(host)
    h.down()

    outcome = refresh_host(host)

    assert not outcome.ok and outcome.kind == "refused"
    state = HostInventory.objects.get(host=host)
    assert state.stale and "refused" in state.last_error
    assert state.attempted_at is not None and state.refreshed_at is not None
    assert state.attempted_at >= state.refreshed_at
    assert snapshot(host) == before


def test_a_host_dropping_the_connection_mid_refresh_saves_nothing_half(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h)
    assert refresh_host(host).ok
    before = snapshot(host)
    with h.model.changing() as model:  # a change that must not be half-applied to the inventory
        model.add_vm("New-VM")
    h.faults.drop_on_cmdlet = "Get-VMKeyProtector"  # the second pipeline dies, on the retry too

    outcome = refresh_host(host)

    assert not outcome.ok and outcome.kind == "dropped"
    assert snapshot(host) == before
    assert HostInventory.objects.get(host=host).stale


def test_garbage_from_a_host_is_a_clear_error(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h)
    h.faults.http_500 = 50

    outcome = refresh_host(host)

    assert not outcome.ok and outcome.kind == "winrm_fault"
    state = HostInventory.objects.get(host=host)
    assert state.stale and state.refreshed_at is None and "HTTP 500" in state.last_error
    assert h.password not in state.last_error


def test_a_refresh_can_reuse_the_jobs_session(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h)
    with open_session(host.connection_spec()) as session:
        outcome = refresh_host(host, session=session)
    assert outcome.ok and VirtualMachine.objects.filter(host=host).count() == 4


@pytest.mark.django_db(transaction=True)
def test_several_hosts_refresh_in_parallel(sim_host: Any, registered_host: Any) -> None:
    hosts = [registered_host(sim_host(scenario="healthy", name=f"HV{i:02}"), name=f"HV{i:02}") for i in (1, 2, 3)]
    broken_sim = sim_host(scenario="healthy", name="HV09")
    broken = registered_host(broken_sim, name="HV09")
    broken_sim.down()

    outcomes = refresh_hosts([*hosts, broken])

    assert all(outcomes[h.pk].ok for h in hosts)
    assert VirtualMachine.objects.filter(host__in=hosts).count() == 12
    assert not outcomes[broken.pk].ok and outcomes[broken.pk].kind == "refused"
    assert HostInventory.objects.get(host=broken).stale


def test_wrong_password_marks_the_host_stale_with_a_401_and_no_secret(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h, password="Wrong-Passw0rd!")

    outcome = refresh_host(host)

    assert not outcome.ok and outcome.kind == "auth"
    state = HostInventory.objects.get(host=host)
    assert state.stale and "401" in state.last_error
    assert "Wrong-Passw0rd!" not in state.last_error and h.password not in state.last_error


def test_no_page_shows_the_host_password_after_a_refresh(
    sim_host: Any, registered_host: Any, admin_client: Client
) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h)
    assert refresh_host(host).ok
    vm = VirtualMachine.objects.filter(host=host).first()
    assert vm is not None

    for url in ("/", "/guardians/", "/vms/", f"/vms/{vm.pk}/", f"/hosts/{host.pk}/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert h.password.encode() not in response.content, url


def test_a_host_without_any_vm_is_inventoried(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="migration-target")  # a new host: no VM, no guardian, no certificate store yet
    host = registered_host(h)

    lines: list[tuple[str, str]] = []

    outcome = refresh_host(host, log=lambda text, level: lines.append((level, text)))

    assert outcome.ok, outcome.error
    assert VirtualMachine.objects.filter(host=host).count() == 0
    assert HostInventory.objects.get(host=host).facts["store_exists"] is False
    # the missing store is an answer (Test-Path first), not an error line in every refresh's log
    assert [text for level, text in lines if level in ("error", "warning")] == []
    assert any(level == "info" and "store does not exist yet" in text for level, text in lines)
    assert [c["cmdlet"] for c in h.command_log].count("Test-Path") == 1
    assert outcome.requests <= 10


def test_fresh_host_lists_its_vm_without_tpm(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="fresh")
    host = registered_host(h)

    assert refresh_host(host).ok
    vm = VirtualMachine.objects.get(host=host)
    assert (vm.name, vm.tpm_enabled, vm.has_key_protector) == ("Srv-Plain", False, False)
    assert Guardian.objects.filter(host=host).count() == 0


def test_a_vm_page_url_keeps_working_after_a_refresh_and_a_vanished_vm_disappears(
    sim_host: Any, registered_host: Any, viewer_client: Client
) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h)
    assert refresh_host(host).ok
    kept = VirtualMachine.objects.get(host=host, name="Win11-A")
    gone = VirtualMachine.objects.get(host=host, name="Win11-B")
    guardian_pks = set(Guardian.objects.filter(host=host).values_list("pk", flat=True))
    with h.model.changing() as model:  # on the host: one VM deleted, another one stopped
        del model.vms[model.vm("Win11-B").id]
        model.vm("Win11-A").state = "Off"

    assert refresh_host(host).ok

    page = viewer_client.get(f"/vms/{kept.pk}/")
    assert page.status_code == 200 and b"Win11-A" in page.content
    assert VirtualMachine.objects.get(pk=kept.pk).state == "Off"  # the same row, updated
    assert viewer_client.get(f"/vms/{gone.pk}/").status_code == 404
    assert not VirtualMachine.objects.filter(host=host, name="Win11-B").exists()
    assert set(Guardian.objects.filter(host=host).values_list("pk", flat=True)) == guardian_pks


# -- a host as strict as Windows ---------------------------------------------------------------------------------


def windows_host(sim_host: Any, registered_host: Any, scenario: str = "healthy", **strict: bool) -> tuple[Any, Any]:
    """A simulated host with every Windows behaviour on (or the ones named turned off), registered."""
    h = sim_host(scenario=scenario, strict=replace(Strictness.windows(), **strict))
    return h, registered_host(h)


def test_security_settings_without_a_vm_name_are_matched_to_vms_by_their_order(
    sim_host: Any, registered_host: Any
) -> None:
    h, host = windows_host(sim_host, registered_host)

    outcome = refresh_host(host)

    assert outcome.ok, outcome.error
    tpm = dict(VirtualMachine.objects.filter(host=host).values_list("name", "tpm_enabled"))
    assert tpm == {"Win11-A": True, "Win11-B": True, "Win11-C": True, "Srv-Plain": False}
    assert VirtualMachine.objects.filter(host=host, details_read=False).count() == 0
    # One read for all VMs: no per-VM second read because the answers did not name their VM.
    assert not [c for c in h.command_log if c["cmdlet"] == "Get-VMSecurity" and "VMName" in c["parameters"]]
    assert outcome.requests <= 10


def test_the_host_names_the_guardians_of_opaque_key_protectors(sim_host: Any, registered_host: Any) -> None:
    h, host = windows_host(sim_host, registered_host)
    guardian = h.model.guardian("UntrustedGuardian")
    pair = (guardian.signing.thumbprint, guardian.encryption.thumbprint)

    outcome = refresh_host(host)

    assert outcome.ok, outcome.error
    for vm in VirtualMachine.objects.filter(host=host, has_key_protector=True):
        assert (vm.kp_readable, vm.owner_pair, vm.guardian_pairs) == (True, pair, [pair]), vm.name
    assert (
        "(UntrustedGuardian) (HV01)" in VirtualMachine.objects.get(name="Win11-A").kp_guardian_thumbprints[0]["subject"]
    )
    converted = [c for c in h.command_log if c["cmdlet"] == "ConvertTo-HgsKeyProtector"]
    assert len(converted) == 3 and all(c["outcome"] == "ok" for c in converted)  # one per sealed VM, bytes sent once
    assert HostInventory.objects.get(host=host).problems == []
    assert outcome.requests - h.paced_replies <= 10  # replies a busy host sent early are its pace (see above)


def test_a_key_protector_sealed_to_several_guardians_names_its_owner(sim_host: Any, registered_host: Any) -> None:
    h, host = windows_host(sim_host, registered_host)
    model = h.model
    with model.changing():
        owner = model.guardian("UntrustedGuardian")
        signing, encryption = model.store[owner.signing.thumbprint], model.store[owner.encryption.thumbprint]
        peer_s, peer_e = guardian_pair("Peer", "HV09", key_label="refresh-test/peer")
        vm = model.vm("Win11-B")
        vm.key_protector = KeyProtector.create(signing, encryption).grant(model.store, peer_s, peer_e).to_bytes()

    assert refresh_host(host).ok

    row = VirtualMachine.objects.get(host=host, name="Win11-B")
    assert row.owner_pair == (owner.signing.thumbprint, owner.encryption.thumbprint)
    assert set(row.guardian_pairs) == {row.owner_pair, (peer_s.thumbprint, peer_e.thumbprint)}
    asked = [c["parameters"] for c in h.command_log if c["cmdlet"] == "Select-Object"]
    assert asked.count({"ExpandProperty": "Owner"}) == 1  # only the VM sealed to several guardians is asked


def test_a_key_protector_the_host_cannot_read_is_unknown_never_can_start_nowhere(
    sim_host: Any, registered_host: Any, viewer_client: Client
) -> None:
    h, host = windows_host(sim_host, registered_host)
    with h.model.changing() as model:  # bytes that are no key protector the host can read
        model.vm("Win11-A").key_protector = b"<?xml version='1.0'?><KeyProtector Version='9'/>" + bytes(64)

    assert refresh_host(host).ok

    vm = VirtualMachine.objects.get(host=host, name="Win11-A")
    assert (vm.has_key_protector, vm.kp_readable, vm.guardian_pairs, vm.owner_pair) == (True, False, [], None)
    assert vm.kp_sha256 == ""  # nothing learned: the next refresh asks the host again
    assert any("Who may unseal VM 'Win11-A' is unknown" in p for p in vm.problems)
    assert "Win11-A on HV01" not in {r.subject for r in Inventory().risks() if r.code == "vm_cannot_start"}
    page = viewer_client.get(f"/vms/{vm.pk}/").content.decode()
    assert "Unknown: the guardians of its key protector could not be read" in page
    assert "can start nowhere" not in page and "no registered host" not in page
    listing = viewer_client.get("/vms/").content.decode()
    row = listing[listing.index(f'href="/vms/{vm.pk}/"') :]
    assert ">unknown<" in row[: row.index("</tr>")]
    # The other VMs were still read by the host, in the same pipeline.
    assert VirtualMachine.objects.get(host=host, name="Win11-B").kp_readable


def test_the_der_scan_reads_the_key_protectors_when_the_host_cannot(sim_host: Any, registered_host: Any) -> None:
    # A JEA role without ConvertTo-HgsKeyProtector, on a host whose key protectors still embed DER certificates.
    commands = sorted(set(ReadHostInventory.CMDLETS) - {"ConvertTo-HgsKeyProtector"})
    role = JeaEndpoint("GuardianConsole", "hvconsole", tuple(commands))
    h = sim_host(
        scenario="healthy",
        configurations={
            "GuardianConsole": {"VisibleCmdlets": role.visible_cmdlets, "VisibleFunctions": role.visible_functions}
        },
        strict=replace(Strictness.windows(), opaque_key_protector=False),
    )
    host = registered_host(h, configuration_name="GuardianConsole")
    guardian = h.model.guardian("UntrustedGuardian")

    assert refresh_host(host).ok

    vm = VirtualMachine.objects.get(host=host, name="Win11-A")
    assert vm.kp_readable and vm.owner_pair == (guardian.signing.thumbprint, guardian.encryption.thumbprint)
    assert any("read by scanning its bytes" in p and "ConvertTo-HgsKeyProtector" in p for p in vm.problems)
    assert vm.kp_sha256 == ""  # a guess from the bytes is not the host's answer: the next refresh asks again


def test_a_vm_whose_text_holds_control_characters_is_listed_with_a_note(sim_host: Any, registered_host: Any) -> None:
    h, host = windows_host(sim_host, registered_host)
    with h.model.changing() as model:
        model.add_vm("Bell\x07VM", vhd_paths=[r"C:\Windows\Temp\bell.vhdx"])

    assert refresh_host(host).ok

    assert VirtualMachine.objects.filter(host=host).count() == 5
    vm = VirtualMachine.objects.get(host=host, name="Bell\x07VM")
    assert vm.details_read and not vm.tpm_enabled
    problems = HostInventory.objects.get(host=host).problems
    assert any("Bell\\x07VM" in p and "control characters" in p for p in problems), problems


def test_the_refresh_stores_whether_live_migration_is_enabled_on_the_host(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h)
    assert refresh_host(host).ok
    assert HostInventory.objects.get(host=host).live_migration_enabled is False  # off on a new host
    h.model.live_migration = True  # Enable-VMMigration on the host
    assert refresh_host(host).ok
    assert HostInventory.objects.get(host=host).live_migration_enabled is True
    assert "Get-VMHost" in [c["cmdlet"] for c in h.command_log]
