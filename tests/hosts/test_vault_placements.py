"""The vault says where the console has placed each pair's private keys, and at whose request."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from console.models import AuditEvent
from hosts.models import Host
from hosts.vault.models import EscrowedPair, Placement, record_placement
from tests.hosts.test_vault import store
from tests.hosts.test_vault_support import unreachable_host


def test_an_import_recorded_by_the_workflow_shows_on_the_entry_and_the_list(
    viewer_client: Client, operator: Any
) -> None:
    pair = store()
    hv03 = unreachable_host("HV03")
    record_placement(pair, hv03, operator)
    detail = viewer_client.get(f"/vault/{pair.pk}/").content.decode()
    assert 'id="placements"' in detail and "HV03" in detail and "otto" in detail
    assert f'href="/hosts/{hv03.pk}/"' in detail
    listing = viewer_client.get("/vault/").content.decode()
    assert "Keys placed on" in listing and "HV03" in listing


def test_each_placement_is_audited_with_the_host_and_the_person(operator: Any) -> None:
    pair = store()
    record_placement(pair, unreachable_host("HV04"), operator)
    event = AuditEvent.objects.get(action="vault.placed")
    assert event.username == "otto" and event.detail["host"] == "HV04"
    assert event.object_id == str(pair.pk)


def test_a_pair_never_imported_says_so(viewer_client: Client) -> None:
    pair = store()
    detail = viewer_client.get(f"/vault/{pair.pk}/").content.decode()
    assert "has not imported this pair to any host" in detail


def test_the_record_outlives_the_host_and_names_a_system_import(viewer_client: Client) -> None:
    pair = store()
    host = unreachable_host("HV05")
    record_placement(pair, host, None)
    host.delete()
    placement = Placement.objects.get()
    assert placement.host is None and placement.host_name == "HV05" and placement.placed_by_name == ""
    detail = viewer_client.get(f"/vault/{pair.pk}/").content.decode()
    assert "HV05" in detail and "no longer registered" in detail and "the console" in detail


def test_the_list_names_each_host_once_newest_first(operator: Any) -> None:
    pair = store()
    hv06 = unreachable_host("HV06")
    hv07 = Host.objects.create(name="HV07", address="127.0.0.1", port=10, username="labadmin")
    for host in (hv06, hv07, hv06):
        record_placement(pair, host, operator)
    assert EscrowedPair.objects.prefetch_related("placements").get().placed_on == ["HV06", "HV07"]


def test_the_list_reads_placements_in_a_constant_number_of_queries(viewer_client: Client, operator: Any) -> None:
    host = unreachable_host("HV08")
    record_placement(store(slot=0), host, operator)
    viewer_client.get("/vault/")  # sessions and the like, once
    with CaptureQueriesContext(connection) as one:
        viewer_client.get("/vault/")
    for slot in (1, 2):
        record_placement(store(slot=slot), host, operator)
    with CaptureQueriesContext(connection) as three:
        viewer_client.get("/vault/")
    assert len(three) == len(one)
