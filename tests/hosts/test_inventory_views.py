"""The inventory pages: guardians across hosts, VMs with "can it start here?", and who may see or refresh them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from hosts.inventory.models import HostInventory, VirtualMachine
from hosts.models import Host
from jobs.inventory import INVENTORY_REFRESH
from jobs.models import Job, JobState
from tests.hosts.test_risks import give_guardian, give_vm, make_host, thumb

pytestmark = pytest.mark.django_db


@dataclass
class Lab:
    hv01: Host
    hv02: Host
    pair: tuple[str, str]
    healthy: VirtualMachine
    orphan: VirtualMachine


def lab() -> Lab:
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    pair = give_guardian(hv01, "hv01")
    healthy = give_vm(hv01, "Win11-A", pair)
    orphan = give_vm(hv02, "Win11-Orphan", (thumb("goneS"), thumb("goneE")))
    return Lab(hv01, hv02, pair, healthy, orphan)


def test_vm_page_answers_can_it_start_for_every_host(viewer_client: Client) -> None:
    objects = lab()
    response = viewer_client.get(f"/vms/{objects.healthy.pk}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-host="HV01"' in page and 'data-host="HV02"' in page
    assert "Yes: HV01 holds the private key of guardian UntrustedGuardian" in page
    assert "No: HV02 holds the private keys of none" in page
    assert "one reinstall away from loss" in page


def test_orphaned_vm_page_says_it_can_start_nowhere(viewer_client: Client) -> None:
    objects = lab()
    page = viewer_client.get(f"/vms/{objects.orphan.pk}/").content.decode()
    assert "VM can start on no registered host" in page
    assert "no registered host" in page


def test_guardian_page_lists_identities_with_hosts_vms_and_escrow(viewer_client: Client) -> None:
    objects = lab()
    page = viewer_client.get("/guardians/").content.decode()
    signing, encryption = objects.pair
    assert f'id="{signing}-{encryption}"' in page
    assert "Win11-A" in page and "owner" in page
    assert "not escrowed" in page or "vault unavailable" in page
    # the orphan's guardian exists on no host: shown with no host holding its keys
    assert f'id="{thumb("goneS")}-{thumb("goneE")}"' in page and "none" in page


def test_vm_list_flags_vms_that_start_nowhere(viewer_client: Client) -> None:
    lab()
    page = viewer_client.get("/vms/").content.decode()
    assert "Win11-Orphan" in page and "nowhere" in page


def test_unknown_vm_is_a_404_not_a_500(viewer_client: Client) -> None:
    assert viewer_client.get("/vms/999999/").status_code == 404


def test_pages_need_a_role(nobody: Any) -> None:
    client = Client()
    client.force_login(nobody)
    objects = lab()
    for url in ("/guardians/", "/vms/", f"/vms/{objects.healthy.pk}/", "/"):
        assert client.get(url).status_code == 403, url


def test_pages_need_a_login() -> None:
    for url in ("/guardians/", "/vms/", "/"):
        response = Client().get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_viewers_cannot_refresh_and_refresh_needs_post(viewer_client: Client, operator_client: Client) -> None:
    hv01 = make_host("HV01")
    assert viewer_client.post(f"/hosts/{hv01.pk}/refresh/").status_code == 403
    assert operator_client.get(f"/hosts/{hv01.pk}/refresh/").status_code == 405
    assert operator_client.post("/hosts/999999/refresh/").status_code == 404


def test_host_page_shows_the_inventory_panel_and_stale_state(operator_client: Client) -> None:
    objects = lab()
    hv02 = objects.hv02
    HostInventory.objects.filter(host=hv02).update(stale=True, last_error="10.0.0.2:5985 refused the connection")
    page = operator_client.get(f"/hosts/{hv02.pk}/").content.decode()
    assert 'id="inventory"' in page and 'id="refresh-inventory"' in page
    assert "stale" in page and "refused the connection" in page
    assert "Win11-Orphan" in page


def test_operators_get_the_next_step_links_and_viewers_do_not(operator_client: Client, viewer_client: Client) -> None:
    objects = lab()
    signing, encryption = objects.pair
    hv01, orphan = objects.hv01, objects.orphan
    escrow = f"/jobs/new/escrow/?host={hv01.pk}&amp;guardian={signing}:{encryption}"
    rescue = f"/jobs/new/rescue/?host={orphan.host_id}&amp;vm=Win11-Orphan"  # its keys are in no vault

    assert escrow in operator_client.get("/guardians/").content.decode()
    assert escrow not in viewer_client.get("/guardians/").content.decode()
    assert rescue in operator_client.get(f"/vms/{orphan.pk}/").content.decode()
    assert rescue not in viewer_client.get(f"/vms/{orphan.pk}/").content.decode()


def test_admins_get_reset_and_vtpm_links_operators_only_the_harmless_ones(
    admin_client: Client, operator_client: Client
) -> None:
    hv03 = make_host("HV03")
    vm = give_vm(hv03, "Win11-B", give_guardian(hv03, "hv03", private=False))
    reset = f"/jobs/new/reset/?host={hv03.pk}&amp;guardian=UntrustedGuardian"
    vtpm_off = f"/jobs/new/vtpm/?host={hv03.pk}&amp;vm=Win11-B&amp;action=disable"
    migrate = f"/jobs/new/migrate/?host={hv03.pk}&amp;vm=Win11-B"

    assert reset in admin_client.get(f"/hosts/{hv03.pk}/").content.decode()
    assert reset not in operator_client.get(f"/hosts/{hv03.pk}/").content.decode()
    admin_page = admin_client.get(f"/vms/{vm.pk}/").content.decode()
    operator_page = operator_client.get(f"/vms/{vm.pk}/").content.decode()
    assert vtpm_off in admin_page and migrate in admin_page
    assert vtpm_off not in operator_page and migrate in operator_page


def test_refresh_buttons_are_for_operators_and_post_only(viewer_client: Client, operator_client: Client) -> None:
    make_host("HV01")
    assert viewer_client.post("/hosts/refresh/").status_code == 403
    assert operator_client.get("/hosts/refresh/").status_code == 405
    assert 'id="refresh-all"' in operator_client.get("/").content.decode()
    assert 'id="refresh-all"' not in viewer_client.get("/").content.decode()


def test_refresh_buttons_queue_a_job_instead_of_reading_the_host(operator_client: Client) -> None:
    hv01 = make_host("HV01")  # 10.0.0.x answers nothing: a synchronous read would hang or fail here

    response = operator_client.post(f"/hosts/{hv01.pk}/refresh/")

    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == INVENTORY_REFRESH and job.state == JobState.QUEUED and job.host_names == ["HV01"]


def test_refresh_all_without_hosts_says_there_is_nothing_to_refresh(operator_client: Client) -> None:
    response = operator_client.post("/hosts/refresh/", follow=True)
    assert response.status_code == 200 and b"nothing to refresh" in response.content
    assert not Job.objects.exists()
