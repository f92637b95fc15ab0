"""Prepare a host for moving VMs: live migration (Enable-VMMigration, the authentication type, the firewall, the
delegation) and the share the workgroup method copies from (the SMB share and its account), every value from the
registry quoted as a PowerShell literal, the share's password nowhere."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from hosts.models import Host, LabShare
from tests.console.test_powershell_quoting import HOSTILE, assert_quoted

pytestmark = pytest.mark.django_db


def commands(page: str, section: str) -> str:
    found = re.search(rf'<section class="card" id="{section}">(.*?)</section>', page, re.S)
    assert found is not None, section
    return html.unescape(found.group(1))


def test_the_prepare_page_says_how_to_turn_on_live_migration(viewer_client: Client) -> None:
    source = Host.objects.create(name="HV05", address="hv05.lab.test", username="LAB\\hvconsole")
    Host.objects.create(name="HV06", address="hv06.lab.test", username="LAB\\hvconsole")
    live = commands(viewer_client.get(f"/hosts/prepare/?host={source.pk}").content.decode(), "live-migration")
    assert "Enable-VMMigration" in live
    assert "Set-VMHost -VirtualMachineMigrationAuthenticationType Kerberos" in live
    assert "-LocalPort 6600 -Action Allow -RemoteAddress 'HV06'" in live
    assert (
        "Set-ADComputer -Identity 'HV05' -Add @{'msDS-AllowedToDelegateTo'=@('Microsoft Virtual System Migration "
        "Service/HV06', 'cifs/HV06')}" in live
    )


def test_the_prepare_page_sets_up_the_share_the_workgroup_method_copies_from(viewer_client: Client) -> None:
    host = Host.objects.create(name="HV01", address="192.0.2.1", username="HV01\\hvconsole")
    share = LabShare(path=r"\\HV01\VM'Exports", account="HV01\\o'brien")
    share.set_password("Sh4re-only-Pa55!")
    share.save()
    page = viewer_client.get(f"/hosts/prepare/?host={host.pk}").content.decode()
    access = commands(page, "share-access")
    assert "New-LocalUser -Name 'o''brien'" in access
    assert "New-SmbShare -Name 'VM''Exports' -Path 'D:\\VMExports' -ReadAccess 'HV01\\o''brien'" in access
    assert "icacls 'D:\\VMExports' /grant 'HV01\\hvconsole:(OI)(CI)M'" in access
    assert "Sh4re-only-Pa55!" not in page


@pytest.mark.parametrize("name", [name for name in HOSTILE if "\n" not in name])
def test_hostile_names_from_the_registry_stay_literals(viewer_client: Client, name: str) -> None:
    host = Host.objects.create(name="HV01", address="192.0.2.1", username="hvconsole")
    Host.objects.create(name=name, address="192.0.2.2", username="hvconsole")
    LabShare.objects.create(path=r"\\HV01\exports", account=f"HV01\\{name}")
    page = html.unescape(viewer_client.get(f"/hosts/prepare/?host={host.pk}").content.decode())
    live, access = commands(page, "live-migration"), commands(page, "share-access")
    line = next(text for text in live.splitlines() if "-RemoteAddress" in text)
    assert_quoted(line.split("-RemoteAddress ", 1)[1], name)
    line = next(text for text in access.splitlines() if text.startswith("New-SmbShare"))
    assert_quoted(line.split("-ReadAccess ", 1)[1], f"HV01\\{name}")
