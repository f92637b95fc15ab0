"""Every risk and object the inventory shows offers the workflow page that fixes or changes it, to the roles that may
run it only; and every such link really lands on that workflow's page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import resolve
from django.utils import timezone

from hosts.inventory.actions import Action
from hosts.inventory.analysis import Inventory
from hosts.inventory.models import VirtualMachine
from hosts.models import Host
from hosts.vault.models import EscrowedPair
from tests.hosts.test_risks import give_guardian, give_vm, make_host, thumb

pytestmark = pytest.mark.django_db

PAGE_OF = {  # action code → URL name of the workflow page it must land on
    "restore": "restore_preflight",
    "upload": "vault_upload",
    "rescue": "rescue_preflight",
    "escrow": "escrow_preflight",
    "escrow_all": "escrow_preflight",
    "reset": "reset_preflight",
    "vtpm_off": "vtpm_preflight",
    "vtpm_off_many": "vtpm_preflight",
    "restore_all": "restore_all_preflight",
    "vtpm_on": "vtpm_preflight",
    "migrate": "migrate_wizard",
}


@dataclass
class Fleet:
    hv01: Host  # healthy: Win11-A's keys only here (single copy), Srv-Plain without vTPM
    hv02: Host  # reinstalled: Win11-Orphan starts nowhere
    hv03: Host  # deleted certificates: UntrustedGuardian without private keys
    pair: tuple[str, str]
    healthy: VirtualMachine
    plain: VirtualMachine
    orphan: VirtualMachine


def fleet() -> Fleet:
    hv01, hv02, hv03 = make_host("HV01"), make_host("HV02"), make_host("HV03")
    pair = give_guardian(hv01, "hv01")
    healthy = give_vm(hv01, "Win11-A", pair)
    plain = give_vm(hv01, "Srv Plain", tpm=False)
    orphan = give_vm(hv02, "Win11-Orphan", (thumb("goneS"), thumb("goneE")))
    give_guardian(hv03, "hv03", private=False)
    return Fleet(hv01, hv02, hv03, pair, healthy, plain, orphan)


def offered(page: str) -> dict[str, list[str]]:
    """The action links of a page, by action code."""
    found: dict[str, list[str]] = {}
    for url, code in re.findall(r'<a class="button [a-z]+ action" href="([^"]+)" data-action="([a-z_]+)"', page):
        found.setdefault(code, []).append(url.replace("&amp;", "&"))
    return found


def test_every_action_resolves_to_its_workflow_page_with_the_right_query(admin_client: Client) -> None:
    f = fleet()
    inventory = Inventory()
    actions = [a for r in inventory.risks() for a in r.actions]
    actions += inventory.vm_actions(f.healthy) + inventory.vm_actions(f.plain) + inventory.host_actions(f.hv01)
    by_code: dict[str, Action] = {}
    for action in actions:
        by_code.setdefault(action.code, action)
    # The orphan's keys are in no vault: rescued, not restored (restore_all's own story: tests/workflows/test_bulk.py)
    assert set(by_code) == set(PAGE_OF) - {"restore", "restore_all"}

    for code, action in by_code.items():
        parts = urlsplit(action.url)
        assert resolve(parts.path).url_name == PAGE_OF[code], code
        response = admin_client.get(action.url)
        assert response.status_code == 200, (code, action.url, response.status_code)

    query = {code: {k: v[0] for k, v in parse_qs(urlsplit(a.url).query).items()} for code, a in by_code.items()}
    assert query["rescue"] == {"host": str(f.hv02.pk), "vm": "Win11-Orphan"}
    assert query["escrow"] == {"host": str(f.hv01.pk), "guardian": f"{f.pair[0]}:{f.pair[1]}"}
    assert query["escrow_all"] == {"host": str(f.hv01.pk), "guardian": "all"}
    assert query["reset"] == {"host": str(f.hv03.pk), "guardian": "UntrustedGuardian"}
    assert query["vtpm_off"] == {"host": str(f.hv02.pk), "vm": "Win11-Orphan", "action": "disable"}  # its way out
    assert query["vtpm_off_many"] == {"host": str(f.hv01.pk), "action": "disable"}  # tick VMs, type each name
    assert query["vtpm_on"] == {"host": str(f.hv01.pk), "vm": "Srv Plain", "action": "enable"}
    assert query["migrate"] == {"host": str(f.hv01.pk), "vm": "Win11-A"}


def test_viewers_see_the_risks_but_no_action(viewer_client: Client) -> None:
    f = fleet()
    pages = ["/", "/guardians/", f"/vms/{f.orphan.pk}/", f"/vms/{f.healthy.pk}/"]
    pages += [f"/hosts/{h.pk}/" for h in (f.hv01, f.hv02, f.hv03)]
    for url in pages:
        page = viewer_client.get(url).content.decode()
        assert offered(page) == {}, url
    assert "VM can start on no registered host" in viewer_client.get("/").content.decode()


def test_operators_get_the_harmless_actions_admins_every_one(operator_client: Client, admin_client: Client) -> None:
    f = fleet()
    harmless = {"restore", "upload", "rescue", "escrow", "escrow_all", "migrate"}
    pages = {
        "/": {"rescue", "vtpm_off", "upload", "escrow", "reset"},
        "/guardians/": {"escrow", "reset"},
        f"/vms/{f.orphan.pk}/": {"rescue", "upload", "migrate", "vtpm_off"},
        f"/vms/{f.healthy.pk}/": {"escrow", "migrate", "vtpm_off"},
        f"/vms/{f.plain.pk}/": {"migrate", "vtpm_on"},
        # the single copy's risk and guardian row, the host buttons
        f"/hosts/{f.hv01.pk}/": {"escrow", "escrow_all", "vtpm_off_many"},
        f"/hosts/{f.hv02.pk}/": {"rescue", "vtpm_off", "upload", "vtpm_off_many"},
        f"/hosts/{f.hv03.pk}/": {"reset"},
    }
    for url, codes in pages.items():
        assert set(offered(admin_client.get(url).content.decode())) == codes, url
        assert set(offered(operator_client.get(url).content.decode())) == codes & harmless, url


def test_host_page_offers_escrow_per_guardian_and_for_the_whole_host(operator_client: Client) -> None:
    f = fleet()
    links = offered(operator_client.get(f"/hosts/{f.hv01.pk}/").content.decode())
    guardian = f"guardian={f.pair[0]}:{f.pair[1]}"
    assert len(links["escrow"]) == 2 and all(guardian in url for url in links["escrow"])  # risk + guardian row
    assert links["escrow_all"] == [f"/jobs/new/escrow/?host={f.hv01.pk}&guardian=all"]
    assert "Escrow every pair on this host…" in operator_client.get(f"/hosts/{f.hv01.pk}/").content.decode()


def test_an_escrowed_pair_links_to_its_vault_entry_and_needs_no_upload(operator_client: Client) -> None:
    f = fleet()
    gone = (thumb("goneS"), thumb("goneE"))
    entry = EscrowedPair.objects.create(
        signing_thumbprint=gone[0],
        encryption_thumbprint=gone[1],
        guardian_name="UntrustedGuardian (old HV02)",
        not_before=timezone.now(),
        not_after=timezone.now(),
    )

    guardians = operator_client.get("/guardians/").content.decode()
    vm_page = operator_client.get(f"/vms/{f.orphan.pk}/").content.decode()

    assert f'<a class="vault-entry" href="/vault/{entry.pk}/"><span class="badge ok">escrowed</span></a>' in guardians
    assert "UntrustedGuardian (old HV02)" in guardians and "(unnamed guardian)" not in guardians
    assert f'href="/vault/{entry.pk}/"' in vm_page
    links = offered(vm_page)
    assert "upload" not in links and "restore" in links  # the vault has the pair: restore from it, nothing to upload
    imports = links["import"]  # and every host that cannot start it is offered the import of the entry
    assert f"/jobs/new/import/?pair={entry.pk}&host={f.hv01.pk}" in imports


def test_a_vm_that_starts_nowhere_is_offered_the_vtpm_off_only_where_hyper_v_allows_it(admin_client: Client) -> None:
    f = fleet()
    stuck = give_vm(f.hv03, "Win11-Stuck", (thumb("lostS"), thumb("lostE")))  # HV03's guardian has lost its keys
    dashboard = offered(admin_client.get("/").content.decode())
    assert any("vm=Win11-Orphan" in url for url in dashboard["vtpm_off"])  # HV02: no broken guardian
    assert not any("vm=Win11-Stuck" in url for url in dashboard["vtpm_off"])  # refused there until the reset
    assert any("vm=Win11-Stuck" in url for url in dashboard["rescue"])
    page = admin_client.get(f"/vms/{stuck.pk}/").content.decode()
    assert "once the guardian of HV03 is reset" in page
