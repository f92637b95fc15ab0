"""Hyper-V on Windows 11/10 Pro (a desktop PC): the connection test says the host is a client edition and what that
changes, and the Prepare-a-host page covers such a PC (network profile Private, a local account, no domain)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from pypsrp.complex_objects import GenericComplexObject

from hosts.remoting import catalog
from hosts.remoting.catalog.host import CLIENT_EDITION_NOTE
from hosts.remoting.operation import PipelineResult
from tests.hosts.test_connection import run_test

pytestmark = pytest.mark.django_db


def os_facts(caption: str, build: str, **properties: Any) -> GenericComplexObject:
    """Win32_OperatingSystem as pypsrp gives it."""
    obj = GenericComplexObject()
    obj.types = ["Deserialized.Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_OperatingSystem"]
    obj.adapted_properties = {"Caption": caption, "BuildNumber": build, **properties}
    return obj


def test_the_product_type_tells_a_client_edition_from_a_server() -> None:
    test = catalog.TestConnection(require_local=False)
    client = test.parse(PipelineResult([os_facts("Microsoft Windows 10 Pro", "19045", ProductType=1)]))
    server = test.parse(PipelineResult([os_facts("Microsoft Windows Server 2022 Standard", "20348", ProductType=3)]))
    unsaid = test.parse(PipelineResult([os_facts("Microsoft Windows Server 2022 Standard", "20348")]))
    assert (client.client_edition, server.client_edition, unsaid.client_edition) == (True, False, False)
    assert client.as_dict()["product_type"] == 1


def test_the_connection_test_of_a_windows_11_pro_host_says_what_differs(
    operator_client: Client, sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("healthy", edition="client", name="PC01")
    host, page = run_test(operator_client, registered_host(sim))
    assert host.last_test_ok is True, host.last_test_message
    assert host.last_test_message.startswith("Connected: PC01: Microsoft Windows 11 Pro 10.0.22631")
    assert host.last_test_message.endswith(CLIENT_EDITION_NOTE)
    assert "Live migration needs both hosts in one Active Directory domain" in page


def test_a_server_hears_nothing_about_client_editions(
    operator_client: Client, sim_host: Any, registered_host: Any
) -> None:
    host, _page = run_test(operator_client, registered_host(sim_host("healthy")))
    assert host.last_test_ok is True and "client edition" not in host.last_test_message


def test_the_prepare_page_covers_a_desktop_pc(viewer_client: Client) -> None:
    page = viewer_client.get("/hosts/prepare/").content.decode()
    for expected in (
        "Windows 11 or 10 Pro",
        "Set-NetConnectionProfile -InterfaceAlias",
        "-NetworkCategory Private",
        "LocalAccountTokenFilterPolicy",
        "Active Directory domain",
        "PCNAME\\hvconsole",
    ):
        assert expected in page, expected
