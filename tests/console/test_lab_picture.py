"""The lab as a picture and what the team gave up on: the SVG map of hosts → guardians → VMs on the dashboard and
the host page (escaped, bounded for a large lab), the host × risk grid, the guardian page, and marking a VM or a
guardian lost or retired — audited, reversible, its risks leaving the dashboard while the marks page lists it."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from console.models import AuditEvent
from hosts.inventory import labmap
from hosts.inventory.models import KnownGuardian
from tests.hosts.test_inventory_actions import fleet
from tests.hosts.test_risks import give_guardian, give_vm, make_host

pytestmark = pytest.mark.django_db


def map_labels(page: str, map_id: str) -> list[tuple[str, str]]:
    """(state, label) of every node the map draws."""
    figure = page.split(f'id="{map_id}"', 1)[1].split("</figure>", 1)[0]
    return re.findall(r'class="map-node ([a-z]+)" data-label="([^"]*)"', figure)


def test_the_dashboard_draws_hosts_guardians_and_vms_with_their_states(operator_client: Client) -> None:
    f = fleet()
    page = operator_client.get("/").content.decode()
    nodes = dict((label, state) for state, label in map_labels(page, "dashboard-lab-map"))
    assert nodes["HV02"] == "muted" and nodes["Win11-Orphan on HV02"] == "bad"  # starts nowhere
    assert nodes["Win11-A on HV01"] == "warn"  # one copy, not escrowed
    assert '<path class="map-edge keys"' in page and '<path class="map-edge sealed"' in page
    assert '<path class="map-edge missing"' in page  # HV02's orphan needs a guardian no host holds
    assert 'style="' not in page.split('id="dashboard-lab-map"', 1)[1].split("</figure>", 1)[0]  # the CSP: classes only
    grid = page.split('id="risk-grid"', 1)[1].split("</section>", 1)[0]
    assert f'href="/risks/?code=vm_cannot_start&amp;host={f.hv02.pk}"' in grid


def test_names_are_escaped_in_the_picture(operator_client: Client) -> None:
    host = make_host('HV"<script>')
    give_vm(host, "<b>Win11</b>", give_guardian(host, "x"))
    page = operator_client.get("/").content.decode()
    assert "<b>Win11</b>" not in page and "&lt;b&gt;Win11&lt;/b&gt; on HV&quot;&lt;script&gt;" in page


def test_a_large_lab_is_summarised_not_drawn_whole(operator_client: Client) -> None:
    hosts = [make_host(f"H{index:03d}") for index in range(labmap.MAX_HOSTS + 3)]
    pair = give_guardian(hosts[0], "big")
    for index in range(labmap.MAX_VMS + 5):
        give_vm(hosts[0], f"VM{index:02d}", pair)
    picture = labmap.lab_map(hosts)
    labels = [node.label for node in picture.hosts + picture.vms]
    assert len(picture.hosts) == labmap.MAX_HOSTS + 1 and "+3 more hosts" in labels and "+5 more VMs" in labels
    assert len(picture.vms) == labmap.MAX_VMS + 1


def test_the_guardian_page_says_where_it_is_and_what_depends_on_it(operator_client: Client) -> None:
    f = fleet()
    key = f"{f.pair[0]}-{f.pair[1]}"
    page = operator_client.get(f"/guardians/{key}/").content.decode()
    assert 'data-host="HV01"' in page and "UntrustedGuardian" in page and "Win11-A" in page
    assert "not escrowed" in page and 'data-action="escrow"' in page
    assert operator_client.get(f"/guardians/{'0' * 40}-{'1' * 40}/").status_code == 404


def test_marking_a_vm_lost_hides_its_risk_and_unmarking_brings_it_back(operator_client: Client) -> None:
    f = fleet()
    assert 'id="risk-vm_cannot_start"' in operator_client.get("/").content.decode()
    response = operator_client.post(f"/vms/{f.orphan.pk}/mark/", {"state": "lost"})
    assert response.status_code == 302
    dashboard = operator_client.get("/").content.decode()
    assert 'id="risk-vm_cannot_start"' not in dashboard and "1 VM or guardian marked lost or retired" in dashboard
    risks = operator_client.get("/risks/?code=vm_cannot_start").content.decode()
    assert "Win11-Orphan" not in risks and 'href="/marks/">1 VM or guardian marked' in risks
    marks_page = operator_client.get("/marks/").content.decode()
    assert 'data-mark="Win11-Orphan on HV02"' in marks_page
    mark_id = re.search(r'action="/marks/(\d+)/unmark/"', marks_page)
    assert mark_id is not None
    assert operator_client.post(f"/marks/{mark_id[1]}/unmark/")["Location"] == f"/vms/{f.orphan.pk}/"
    assert 'id="risk-vm_cannot_start"' in operator_client.get("/").content.decode()
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions[-2:] == ["vm.mark_lost", "vm.unmark"]


def test_marking_a_guardian_retired_hides_its_reset_risk(operator_client: Client) -> None:
    f = fleet()
    broken = KnownGuardian.objects.get(holdings__host=f.hv03)
    assert operator_client.post(f"/guardians/{broken.key}/mark/", {"state": "retired"}).status_code == 302
    assert 'id="risk-guardian_without_keys"' not in operator_client.get("/").content.decode()
    assert AuditEvent.objects.filter(action="guardian.mark_retired").count() == 1
    assert "marked retired" in operator_client.get(f"/guardians/{broken.key}/").content.decode()


def test_viewers_cannot_mark_and_an_unknown_state_is_refused(viewer_client: Client, operator_client: Client) -> None:
    f = fleet()
    assert viewer_client.post(f"/vms/{f.orphan.pk}/mark/", {"state": "lost"}).status_code == 403
    operator_client.post(f"/vms/{f.orphan.pk}/mark/", {"state": "gone"})
    assert 'id="risk-vm_cannot_start"' in operator_client.get("/").content.decode()
    assert not AuditEvent.objects.filter(action__startswith="vm.mark").exists()
