"""Preflights ask the stored inventory first: what the console already knows stops a job that would fail, says why,
and links to the page that fixes it — before any host is asked (the hosts here listen nowhere)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from hosts.inventory.models import Certificate, Guardian, VirtualMachine
from hosts.vault.services import store_pair
from jobs.models import Job
from tests.hosts.test_risks import give_guardian, give_vm, make_host, thumb
from tests.hosts.test_vault_support import PASSWORD, make_pair

pytestmark = pytest.mark.django_db


def test_the_vtpm_page_refuses_every_change_while_the_hosts_guardian_has_no_keys(
    operator: Any, admin_client: Client
) -> None:
    host = make_host("HV03")
    give_vm(host, "Win11-A", give_guardian(host, "hv03", private=False))
    assert Guardian.objects.get(host=host).needs_reset
    page = admin_client.get(f"/jobs/new/vtpm/?host={host.pk}&action=enable&vm=Win11-A").content.decode()
    assert "Not now: the UntrustedGuardian of HV03 has lost its private keys" in page
    assert f'id="preflight-fix" href="/jobs/new/reset/?host={host.pk}&amp;guardian=UntrustedGuardian"' in page
    assert 'name="confirm-Win11-A"' not in page  # nothing to confirm, nothing to start


def test_the_undo_of_a_reset_is_refused_once_a_new_guardian_took_the_name(admin_client: Client) -> None:
    host = make_host("HV03")
    give_guardian(host, "new")  # enabling a TPM after the reset made a new UntrustedGuardian
    removed = {"host": "HV03", "guardian_name": "UntrustedGuardian", "signing_thumbprint": thumb("oldS")}
    removed |= {"encryption_thumbprint": thumb("oldE"), "metadata_xml": ""}
    reset = Job.objects.create(kind="reset_guardian", state="succeeded", results={"removed_guardian": removed})
    reset.hosts.add(host)
    reset.host_names = ["HV03"]
    reset.save()
    page = admin_client.get(f"/jobs/new/reset/undo/?job={reset.pk}").content.decode()
    assert "has a new guardian named &#x27;UntrustedGuardian&#x27;" in page
    assert f'href="/guardians/{thumb("newS")}-{thumb("newE")}/"' in page and "undo-submit" not in page


def test_the_migration_wizard_refuses_a_target_that_has_the_vms_id_already(operator_client: Client) -> None:
    source, target = make_host("HV01"), make_host("HV04")
    give_vm(source, "Win11-A", give_guardian(source, "hv01"))
    twin = VirtualMachine.objects.create(host=target, vm_id="id-Win11-A", name="Win11-A-old", state="Off", generation=2)
    choose = {"form": "1", "host": str(source.pk), "target": str(target.pk), "vm": "Win11-A", "preview": "1"}
    choose |= {"method": "live", "unseal": "authorise", "source_after": "off", "start": "on"}
    page = operator_client.get("/jobs/new/migrate/", choose).content.decode()
    assert "HV04 already has a VM with the id of &#x27;Win11-A&#x27;" in page
    assert f'href="/vms/{twin.pk}/"' in page and "Show PowerShell" not in page


def test_the_import_is_refused_where_the_keys_are_already(admin_client: Client) -> None:
    signing, encryption = make_pair("UntrustedGuardian", "HV01")
    pair = store_pair(signing, encryption, PASSWORD, user=None, origin="upload").pair
    host = make_host("HV01")
    for thumbprint in (pair.signing_thumbprint, pair.encryption_thumbprint):
        Certificate.objects.create(host=host, thumbprint=thumbprint, subject="CN=x", has_private_key=True)
    Guardian.objects.create(
        host=host,
        name="UntrustedGuardian",
        signing_thumbprint=pair.signing_thumbprint,
        encryption_thumbprint=pair.encryption_thumbprint,
        has_private_signing_key=True,
        has_private_encryption_key=True,
    )
    page = admin_client.get(f"/jobs/new/import/?host={host.pk}&pair={pair.pk}").content.decode()
    assert "already holds" in page and "nothing to import" in page
    assert f'href="/guardians/{pair.signing_thumbprint}-{pair.encryption_thumbprint}/"' in page


def test_a_restore_with_no_copy_anywhere_links_to_the_rescue(operator_client: Client) -> None:
    host = make_host("HV02")
    give_vm(host, "Win11-A", (thumb("goneS"), thumb("goneE")))
    page = operator_client.get(f"/jobs/new/restore/?host={host.pk}&vm=Win11-A").content.decode()
    assert "No registered host holds them either" in page
    assert f'href="/jobs/new/rescue/?host={host.pk}&amp;vm=Win11-A"' in page
