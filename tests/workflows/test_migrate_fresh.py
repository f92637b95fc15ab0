"""Migrating from a healthy host to a freshly installed one — no shielded store, no guardian, live migration off, a
VM named like one on the source — as in the demo lab (HV01 → HV04), through the wizard and a real worker."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from hosts.inventory.refresh import refresh_host
from hosts.vault.models import EscrowedPair
from jobs.models import Job, JobState
from tests.plugins.jobs import wait_for_job
from tests.plugins.sim import kind_to_the_second_hop
from tests.plugins.users import client_for
from tests.plugins.worlds import registered


@pytest.fixture
def lab(sim_lab: Any, registered_host: Any) -> Any:
    # Both unseal choices over the export method from NTLM sessions: not a second-hop story.
    lab = registered(kind_to_the_second_hop(sim_lab(hosts=2, scenarios=["healthy", "fresh"])), registered_host)
    assert refresh_host(lab.source_host).ok and refresh_host(lab.target_host).ok
    return lab


def wizard(lab: Any, vm: str, unseal: str) -> dict[str, Any]:
    data = {"form": "1", "preview": "1", "host": lab.source_host.pk, "target": lab.target_host.pk, "vm": vm}
    return data | {"method": "export", "unseal": unseal, "source_after": "off", "start": "on"}


@pytest.mark.django_db
def test_vms_whose_name_is_taken_on_a_target_are_marked_before_choosing(lab: Any, operator_client: Client) -> None:
    page = operator_client.get("/jobs/new/migrate/", {"host": lab.source_host.pk}).content.decode()
    assert "Srv-Plain (Off) — name taken on HV02</option>" in page  # the fresh host has a Srv-Plain too
    assert "Win11-B (Off, vTPM)</option>" in page
    chosen = operator_client.get("/jobs/new/migrate/", {"host": lab.source_host.pk, "vm": "Srv-Plain"}).content
    assert f'<option value="{lab.target_host.pk}" data-name="HV02" disabled>HV02 — has a VM named' in chosen.decode()
    targeted = {"host": lab.source_host.pk, "target": lab.target_host.pk, "vm": "Win11-B", "step": "vm"}  # back
    listing = operator_client.get("/jobs/new/migrate/", targeted).content.decode()
    assert 'data-taken="' + str(lab.target_host.pk) + '" disabled>Srv-Plain' in listing
    refused = operator_client.post("/jobs/new/migrate/", wizard(lab, "Srv-Plain", "carry"))
    assert refused.status_code == 400
    assert "HV02 already has a VM named &#x27;Srv-Plain&#x27;" in refused.content.decode()
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_a_name_taken_in_another_case_is_taken_too_outside_ascii_as_well(lab: Any, operator_client: Client) -> None:
    """Hyper-V names are case-insensitive: the database finds the taken names (SQLite lowers ASCII only)."""
    with lab.source.model.changing() as model:
        model.add_vm("über-Gast", state="Off")
    with lab.target.model.changing() as model:
        model.add_vm("WIN11-B", state="Off")
        model.add_vm("ÜBER-GAST", state="Off")
    assert refresh_host(lab.source_host).ok and refresh_host(lab.target_host).ok
    page = operator_client.get("/jobs/new/migrate/", {"host": lab.source_host.pk}).content.decode()
    assert "Win11-B (Off, vTPM) — name taken on HV02</option>" in page
    assert "über-Gast (Off) — name taken on HV02</option>" in page
    assert page.count("— name taken on HV02</option>") == 3  # and Srv-Plain, as before; no other VM


@pytest.mark.worker
def test_both_unseal_choices_move_healthy_vms_to_a_fresh_host_from_the_wizard(
    celery_worker_process: Any, transactional_db: None, lab: Any, admin: Any
) -> None:
    client = client_for(admin)  # carrying HV01's keys to a host that never held them is an admin's migration
    for vm, unseal in (("Win11-A", "authorise"), ("Win11-B", "carry")):
        preview = client.get("/jobs/new/migrate/", wizard(lab, vm, unseal)).content.decode()
        assert 'id="migrate-submit"' in preview, preview
        response = client.post("/jobs/new/migrate/", wizard(lab, vm, unseal))
        assert response.status_code == 302, response.content.decode()
        job = wait_for_job(Job.objects.get(pk=int(response["Location"].strip("/").split("/")[-1])))
        assert job.state == JobState.SUCCEEDED, job.error
        assert lab.target.model.vm(vm).state == "Running", vm
        assert lab.source.model.vm(vm).state == "Off"
    # Authorise moved no private key; carry escrowed HV01's guardian and imported it on the fresh host.
    assert EscrowedPair.objects.count() == 1
    assert "Export-PfxCertificate" in [c["cmdlet"] for c in lab.source.command_log]
    assert {vm.name for vm in lab.target.model.vms.values()} == {"Srv-Plain", "Win11-A", "Win11-B"}
