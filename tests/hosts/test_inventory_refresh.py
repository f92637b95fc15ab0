"""Refreshing a host's inventory from a simulated host over real sockets: what it reads, what it costs, and what
happens when the host fails half-way (nothing half-saved, the last inventory kept and marked stale)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from hosts.inventory.analysis import Inventory
from hosts.inventory.models import Certificate, Guardian, HostInventory, VirtualMachine
from hosts.inventory.refresh import refresh_host, refresh_hosts
from hosts.remoting import open_session
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


def test_requests_per_refresh_do_not_grow_with_the_vm_count(sim_host: Any, registered_host: Any) -> None:
    h = sim_host(scenario="healthy")
    host = registered_host(h)
    few = refresh_host(host).requests
    guardian = h.model.guardian("UntrustedGuardian")
    signing, encryption = h.model.store[guardian.signing.thumbprint], h.model.store[guardian.encryption.thumbprint]
    with h.model.changing() as model:
        for i in range(30):
            model.add_vm(
                f"Extra-{i:02}", tpm_enabled=True, key_protector=KeyProtector.create(signing, encryption).to_bytes()
            )

    many = refresh_host(host)

    assert many.ok and VirtualMachine.objects.filter(host=host).count() == 34
    # One pipeline whatever the VM count; the host may split a larger output over one more Receive reply.
    assert few <= 10 and many.requests <= 10 and many.requests - few <= 1


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
