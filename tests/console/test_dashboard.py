"""The dashboard: how many of each risk, linking to what is affected, and every host's last refresh and health."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from hosts.inventory.models import HostInventory
from tests.hosts.test_risks import give_guardian, give_vm, make_host, thumb

pytestmark = pytest.mark.django_db


def tile_count(page: str, code: str) -> int:
    match = re.search(rf'data-risk="{code}">\s*<div class="count">(\d+)</div>', page)
    assert match, code
    return int(match.group(1))


def test_dashboard_counts_each_risk_and_links_to_the_objects(viewer_client: Client) -> None:
    hv01, hv02, hv03 = make_host("HV01"), make_host("HV02"), make_host("HV03")
    healthy = give_vm(hv01, "Win11-A", give_guardian(hv01, "hv01"))
    orphan = give_vm(hv02, "Win11-Orphan", (thumb("goneS"), thumb("goneE")))
    give_vm(hv03, "Win11-B", give_guardian(hv03, "hv03", private=False))

    page = viewer_client.get("/").content.decode()

    assert tile_count(page, "single_copy") == 1
    assert tile_count(page, "vm_cannot_start") == 2  # the orphan, and HV03's VM whose keys were deleted
    assert tile_count(page, "guardian_without_keys") == 1
    assert tile_count(page, "hgs_mode") == 0
    assert f'href="/vms/{healthy.pk}/"' in page and f'href="/vms/{orphan.pk}/"' in page
    assert 'href="#risk-single_copy"' in page and 'id="risk-single_copy"' in page


def test_dashboard_lists_hosts_with_last_refresh_and_health(viewer_client: Client) -> None:
    make_host("HV01")
    stale = make_host("HV02")
    HostInventory.objects.filter(host=stale).update(stale=True, last_error="10.0.0.9:5985 refused the connection")
    never = make_host("HV03")
    HostInventory.objects.filter(host=never).delete()

    page = viewer_client.get("/").content.decode()
    rows = dict(re.findall(r'<tr data-host="(HV0\d)">(.*?)</tr>', page, re.S))

    assert ">ok<" in rows["HV01"]
    assert ">stale<" in rows["HV02"] and "refused the connection" in rows["HV02"]
    assert "never refreshed" in rows["HV03"]
    assert tile_count(page, "stale_inventory") == 1


def test_empty_dashboard_invites_to_register_a_host(admin_client: Client) -> None:
    page = admin_client.get("/").content.decode()
    assert "No hosts registered yet" in page and "/hosts/new/" in page


def tile_words(page: str, code: str) -> str:
    match = re.search(rf'data-risk="{code}">\s*<div class="count">\d+</div><div>(.*?)</div>', page)
    assert match, code
    return match.group(1)


def test_each_tile_reads_right_after_its_count(viewer_client: Client) -> None:
    """ "1 VM that…", "2 VMs that…", "0 hosts in HGS mode": the tile's words agree with its number."""
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    give_vm(hv01, "Win11-A", (thumb("goneS"), thumb("goneE")))
    page = viewer_client.get("/").content.decode()
    assert tile_words(page, "vm_cannot_start") == "VM that can start on no registered host"
    assert tile_words(page, "hgs_mode") == "Hosts in HGS mode"
    give_vm(hv02, "Win11-B", (thumb("lostS"), thumb("lostE")))
    page = viewer_client.get("/").content.decode()
    assert tile_words(page, "vm_cannot_start") == "VMs that can start on no registered host"
    japanese = viewer_client.get("/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert tile_words(japanese, "vm_cannot_start") == "登録済みのどのホストでも起動できない VM"
