"""A vault pair's private keys go onto a host that never held them only by an admin's import, non-exportable unless
the admin ticks "Exportable"; every placement is in the audit trail (issue 11, item 3)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from django.test import Client

from console.models import AuditEvent
from hosts.inventory.models import Guardian, VirtualMachine
from hosts.remoting import open_session
from hosts.vault.models import EscrowedPair
from hosts.vault.services import store_pair
from hypervsim.scenarios import previous_guardian_backup
from jobs.kinds import JobContext, JobFailed
from jobs.models import Job
from jobs.workflows.import_guardian.kind import import_guardian_job
from jobs.workflows.import_guardian.plan import import_pair
from jobs.workflows.migrate.plan import MigrationOptions
from jobs.workflows.migrate.run import migrate_vm
from jobs.workflows.placement import check_placement, has_held, record_placement
from jobs.workflows.restore.plan import restore_vm
from tests.hosts.test_vault_support import PASSWORD, make_pair, unreachable_host
from tests.plugins.powershell import shown_powershell
from tests.plugins.runs import DirectRun
from tests.plugins.sim import kind_to_the_second_hop, reinstalled_with_backup_in_vault
from tests.plugins.worlds import registered

pytestmark = pytest.mark.django_db
PREFLIGHT_URLS = pytest.mark.urls("tests.hosts.test_vault_support")


def uploaded_pair() -> EscrowedPair:
    signing, encryption = make_pair()
    return store_pair(signing, encryption, PASSWORD, user=None, origin="upload").pair


def import_job_of(user: Any, host: Any, pair: EscrowedPair, **params: Any) -> JobContext:
    """What the import kind reads of its context before it opens any session."""
    params = {"vault_entry": pair.pk} | params
    return cast(
        JobContext, SimpleNamespace(host=host, the_host=lambda _missing: host, user=user, params=params, job=None)
    )


@PREFLIGHT_URLS
def test_an_operator_cannot_put_a_pair_on_a_host_that_never_held_it(operator_client: Client) -> None:
    host, pair = unreachable_host(), uploaded_pair()
    page = operator_client.get(f"/jobs/new/import/?host={host.pk}&pair={pair.pk}").content.decode()
    assert "has never held" in page and "admin action" in page and "Show PowerShell" not in page
    response = operator_client.post("/jobs/new/import/", {"host": host.pk, "pair": pair.pk})
    assert response.status_code == 400 and Job.objects.count() == 0


@PREFLIGHT_URLS
def test_an_operator_may_give_a_host_back_a_pair_its_inventory_shows(operator_client: Client) -> None:
    host, pair = unreachable_host(), uploaded_pair()
    Guardian.objects.create(
        host=host, name="UntrustedGuardian", signing_thumbprint=pair.signing_thumbprint,
        encryption_thumbprint=pair.encryption_thumbprint,
    )  # fmt: skip
    response = operator_client.post("/jobs/new/import/", {"host": host.pk, "pair": pair.pk})
    assert response.status_code == 302 and Job.objects.get().params == {"vault_entry": pair.pk}


@PREFLIGHT_URLS
def test_only_an_admin_is_offered_exportable_and_show_powershell_follows_it(
    admin_client: Client, operator_client: Client
) -> None:
    host, pair = unreachable_host(), uploaded_pair()
    url = f"/jobs/new/import/?host={host.pk}&pair={pair.pk}"
    assert "you are placing its private keys on a new host" in admin_client.get(url).content.decode()
    record_placement(None, host, pair, exportable=False)  # held before: an operator may import it again
    assert 'name="exportable"' not in operator_client.get(url).content.decode()
    refused = operator_client.get(url + "&exportable=on").content.decode()
    assert "Only an admin may import private keys as exportable" in refused
    offered = admin_client.get(url).content.decode()
    assert 'name="exportable"' in offered
    plain = "\n".join(shown_powershell(offered))
    exportable = "\n".join(shown_powershell(admin_client.get(url + "&exportable=on").content.decode()))
    assert "Import-PfxCertificate" in plain and "-Exportable" not in plain
    assert "-Exportable" in exportable
    admin_client.post("/jobs/new/import/", {"host": host.pk, "pair": pair.pk, "exportable": "on"})
    assert Job.objects.get().params == {"vault_entry": pair.pk, "exportable": True}


def test_the_job_refuses_an_operator_before_anything_is_sent(operator: Any, admin: Any) -> None:
    host, pair = unreachable_host(), uploaded_pair()  # nobody listens there: a session would fail differently
    with pytest.raises(JobFailed, match="has never held .* admin action.*Nothing was sent"):
        import_guardian_job(import_job_of(operator, host, pair))
    record_placement(admin, host, pair, exportable=False)
    with pytest.raises(JobFailed, match="Only an admin may import private keys as exportable"):
        import_guardian_job(import_job_of(operator, host, pair, exportable=True))


def test_keys_are_imported_non_exportable_and_the_placement_is_audited(
    sim_host: Any, registered_host: Any, admin: Any
) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    signing, encryption, password = previous_guardian_backup(sim)
    pair = store_pair(signing, encryption, password, user=None, origin="upload", allow_expired=True).pair
    assert not has_held(host, pair)
    with DirectRun(), open_session(host.connection_spec()) as session:
        import_pair(session, host, pair)
    imports = [c["parameters"] for c in sim.command_log if c["cmdlet"] == "Import-PfxCertificate"]
    assert len(imports) == 2 and all("Exportable" not in params for params in imports)
    record_placement(admin, host, pair, exportable=False, job=None)
    event = AuditEvent.objects.get(action="vault.placed")
    assert event.username == "ada" and event.object_id == str(pair.pk) and event.detail["host"] == str(host)
    assert event.detail["exportable"] is False
    assert has_held(host, pair)


def test_a_restore_by_an_operator_stops_before_the_keys_are_copied(
    sim_host: Any, registered_host: Any, operator: Any
) -> None:
    sim, host, _pair, _password = reinstalled_with_backup_in_vault(sim_host, registered_host)
    refused = pytest.raises(JobFailed, match="has never held")
    with DirectRun(), open_session(host.connection_spec()) as session, refused:
        restore_vm(session, host, "Win11-A", lambda pair: check_placement(operator, host, pair))
    sent = {c["cmdlet"] for c in sim.command_log}
    assert not sent & {"Set-Content", "Import-PfxCertificate", "New-HgsGuardian", "Start-VM"}


@PREFLIGHT_URLS
def test_the_restore_page_refuses_an_operator_a_new_host(operator_client: Client) -> None:
    host, pair = unreachable_host(), uploaded_pair()
    key = {"signing": pair.signing_thumbprint, "encryption": pair.encryption_thumbprint}
    VirtualMachine.objects.create(
        host=host, vm_id="1", name="Win11-A", state="Off", has_key_protector=True, tpm_enabled=True,
        kp_owner_thumbprints=key,
    )  # fmt: skip
    page = operator_client.get(f"/jobs/new/restore/?host={host.pk}&vm=Win11-A").content.decode()
    assert "has never held" in page and "Show PowerShell" not in page


@pytest.fixture
def lab(sim_lab: Any, registered_host: Any) -> Any:
    # The carry's placement rule, over the export method from NTLM sessions: not a second-hop story.
    lab = registered(kind_to_the_second_hop(sim_lab(scenarios=["migration"])), registered_host)
    return lab


def test_an_operator_cannot_carry_the_owner_pair_to_a_target_that_never_held_it(lab: Any, operator: Any) -> None:
    hosts = (lab.source_host, lab.target_host)
    opts = MigrationOptions("Win11-B", method="export", unseal="carry")
    with (
        DirectRun(operator) as run,
        open_session(hosts[0].connection_spec()) as s,
        open_session(hosts[1].connection_spec()) as t,
        pytest.raises(JobFailed, match="Nothing was changed.*HV02 has never held"),
    ):
        migrate_vm(run, (s, t), hosts, opts)
    sent = {c["cmdlet"] for sim in lab.hosts for c in sim.command_log}
    assert not sent & {"Export-PfxCertificate", "Import-PfxCertificate", "Export-VM", "Set-Content"}


@PREFLIGHT_URLS
def test_the_wizard_refuses_an_operator_s_carry_and_offers_it_to_an_admin(
    lab: Any, operator_client: Client, admin_client: Client
) -> None:
    choose = {"form": "1", "host": lab.source_host.pk, "target": lab.target_host.pk, "vm": "Win11-B"}
    choose |= {"method": "export", "unseal": "carry", "source_after": "off", "start": "on", "preview": "1"}
    refused = operator_client.post("/jobs/new/migrate/", choose)
    assert refused.status_code == 400 and "HV02 has never held" in refused.content.decode()
    assert admin_client.post("/jobs/new/migrate/", choose).status_code == 302
