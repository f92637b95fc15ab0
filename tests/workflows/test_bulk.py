"""Bulk actions: one "Escrow…" per guardian however many VMs it alone can start, "Restore every restorable VM" of a
host in one job (a real Celery worker against a simulated reinstalled host), and the vTPM page for a selection of a
host's VMs, offered from the host page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from console.models import AuditEvent
from hosts.inventory.refresh import refresh_host
from hosts.vault.services import store_pair
from hypervsim.scenarios import previous_guardian_backup
from jobs.models import Job, JobState
from tests.hosts.test_inventory_actions import offered
from tests.hosts.test_risks import give_guardian, give_vm, make_host
from tests.plugins.jobs import wait_for_job
from tests.plugins.users import client_for


def escrow_buttons(page: str) -> list[str]:
    return re.findall(r'<a class="button [a-z]+ action" href="[^"]+" data-action="escrow">([^<]+)</a>', page)


@pytest.mark.django_db
def test_three_vms_of_one_guardian_get_one_escrow_button(operator_client: Client) -> None:
    hv01 = make_host("HV01")
    pair = give_guardian(hv01, "hv01")
    for name in ("Win11-A", "Win11-B", "Win11-C"):
        give_vm(hv01, name, pair)
    other = give_guardian(hv01, "other", name="Other")
    give_vm(hv01, "Win11-D", other)
    guardian = f"guardian={pair[0]}:{pair[1]}"
    # One button for the guardian where the risks are listed (the host page adds the guardian's own row).
    for url, expected in (("/", 1), ("/risks/?code=single_copy", 1), (f"/hosts/{hv01.pk}/", 2)):
        page = operator_client.get(url).content.decode()
        links = [link for link in offered(page)["escrow"] if guardian in link]
        assert len(links) == expected, (url, links)
        assert "Escrow… (protects Win11-A, Win11-B, Win11-C)" in escrow_buttons(page), url
        assert len(offered(page)["escrow"]) == 2 * expected, url  # and as many for Win11-D's own guardian


@pytest.mark.django_db
def test_restore_all_refuses_a_host_with_nothing_to_restore_and_viewers(
    operator_client: Client, viewer_client: Client
) -> None:
    hv01 = make_host("HV01")
    give_vm(hv01, "Win11-A", give_guardian(hv01, "hv01"))  # starts here: nothing to restore
    assert "restore_all" not in offered(operator_client.get(f"/hosts/{hv01.pk}/").content.decode())
    page = operator_client.get("/jobs/new/restore/all/", {"host": hv01.pk}).content.decode()
    assert "No VM of this host is restorable" in page
    assert operator_client.post("/jobs/new/restore/all/", {"host": hv01.pk}).status_code == 400
    assert viewer_client.get("/jobs/new/restore/all/", {"host": hv01.pk}).status_code == 403
    assert viewer_client.post("/jobs/new/restore/all/", {"host": hv01.pk}).status_code == 403
    assert Job.objects.count() == 0


@pytest.mark.worker
def test_restore_every_restorable_vm_of_a_reinstalled_host_in_one_job(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any, admin: Any
) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    assert refresh_host(host).ok
    client = client_for(admin)
    assert "restore_all" not in offered(client.get(f"/hosts/{host.pk}/").content.decode())  # no backup yet
    signing, encryption, password = previous_guardian_backup(sim)
    store_pair(signing, encryption, password, user=admin, origin="upload", allow_expired=True)
    assert refresh_host(host).ok
    links = offered(client.get(f"/hosts/{host.pk}/").content.decode())
    assert links["restore_all"] == [f"/jobs/new/restore/all/?host={host.pk}"]
    page = client.get(links["restore_all"][0]).content.decode()
    assert "&#x27;Win11-A&#x27;: Read the key protector" in page and "&#x27;Win11-B&#x27;: Read" in page
    assert "# VM &#x27;Win11-B&#x27;" in page and "Srv-Plain" not in page  # no vTPM: nothing to restore
    response = client.post("/jobs/new/restore/all/", {"host": host.pk})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/" and job.kind == "restore_vm"
    assert job.vms == ["Win11-A", "Win11-B"]
    assert AuditEvent.objects.filter(action="job.create", detail__vms=["Win11-A", "Win11-B"]).exists()
    job = wait_for_job(job)
    assert job.state == JobState.SUCCEEDED, job.error
    assert sim.model.vm("Win11-A").state == "Running" and sim.model.vm("Win11-B").state == "Running"
    assert password not in client.get(f"/jobs/{job.pk}/").content.decode()


@pytest.mark.django_db
@pytest.mark.urls("tests.hosts.test_vault_support")
def test_the_host_page_offers_the_vtpm_off_of_a_selection_each_name_typed(
    sim_host: Any, registered_host: Any, admin_client: Client, operator_client: Client
) -> None:
    host = registered_host(sim_host("reinstalled"))
    assert refresh_host(host).ok
    assert "vtpm_off_many" not in offered(operator_client.get(f"/hosts/{host.pk}/").content.decode())  # admins'
    url = offered(admin_client.get(f"/hosts/{host.pk}/").content.decode())["vtpm_off_many"][0]
    page = admin_client.get(url).content.decode()
    assert page.count('type="checkbox" name="vm"') == 3  # every VM of the host, to tick
    chosen = {"host": host.pk, "action": "disable", "vm": ["Win11-A", "Win11-B"]}
    page = admin_client.get("/jobs/new/vtpm/", chosen).content.decode()
    assert 'name="confirm-Win11-A"' in page and 'name="confirm-Win11-B"' in page
    one_typed = {**chosen, "confirm-Win11-A": "Win11-A", "confirm-Win11-B": "win11-b"}
    assert admin_client.post("/jobs/new/vtpm/", one_typed).status_code == 400 and Job.objects.count() == 0
    response = admin_client.post("/jobs/new/vtpm/", {**one_typed, "confirm-Win11-B": "Win11-B"})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/" and job.vms == ["Win11-A", "Win11-B"]
