"""Escrow over a simulated host: the guardian's private keys reach the vault once, and nothing stays behind."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.test import Client

from console.models import AuditEvent
from hosts.inventory.models import Guardian
from hosts.remoting import open_session
from hosts.remoting.catalog.guardians import GetGuardians, thumbprints_of
from hosts.remoting.errors import OperationCancelled, RemotingError
from hosts.vault.models import EscrowedPair
from hosts.vault.services import store_pair
from hypervsim.certs import guardian_pair
from jobs.kinds import JobFailed
from jobs.models import Job
from jobs.workflows.escrow.plan import escrow_host, escrow_pair
from tests.hosts.test_vault_support import PASSWORD, assert_no_secret, make_pair, temp_pfx_left, unreachable_host
from tests.plugins.powershell import assert_runnable, shown_powershell
from tests.plugins.runs import DirectRun

pytestmark = pytest.mark.django_db
# The preflight pages' URLs, whether or not jobs/urls.py includes them yet.
PREFLIGHT_URLS = pytest.mark.urls("tests.hosts.test_vault_support")


def untrusted_guardian(session: Any) -> Any:
    return next(g for g in session.run(GetGuardians()) if g.name == "UntrustedGuardian")


def test_escrow_stores_the_healthy_hosts_guardian_once(sim_host: Any, registered_host: Any, operator: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    with DirectRun() as run, open_session(host.connection_spec(), log=run.log) as session:
        guardian = untrusted_guardian(session)
        pair = escrow_pair(session, host, guardian.signing_thumbprint, guardian.encryption_thumbprint, user=operator)
        exports_before = sum(c["cmdlet"] == "Export-PfxCertificate" for c in sim.command_log)
        again = escrow_pair(session, host, guardian.signing_thumbprint, guardian.encryption_thumbprint)
    assert again.pk == pair.pk and EscrowedPair.objects.count() == 1
    assert sum(c["cmdlet"] == "Export-PfxCertificate" for c in sim.command_log) == exports_before == 2
    assert (pair.signing_thumbprint, pair.encryption_thumbprint) == thumbprints_of(guardian)
    assert pair.source_host == host and pair.guardian_name == "UntrustedGuardian"
    signing, encryption, password = pair.open()
    assert len(password) >= 40 and signing and encryption
    assert temp_pfx_left(sim) == []
    exported = [c for c in sim.command_log if c["cmdlet"] == "Export-PfxCertificate"]
    assert all(c["parameters"]["Password"] == "********" for c in exported)
    events = " ".join(str(e.detail) for e in AuditEvent.objects.all())
    assert "already in the vault" in run.text
    assert_no_secret(password, run.text, events, str([c["parameters"] for c in sim.command_log]))


def test_every_pair_with_private_keys_on_a_host_is_escrowed(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    with open_session(host.connection_spec()) as session:
        assert escrow_host(session, host) == (1, 0, [])
        assert escrow_host(session, host) == (0, 1, [])
    assert EscrowedPair.objects.count() == 1 and temp_pfx_left(sim) == []


def test_an_older_pair_left_in_the_store_is_escrowed_too(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    old_signing, old_encryption = guardian_pair("UntrustedGuardian", "HV01", key_label="previous/HV01")
    with sim.model.changing() as model:  # what a guardian reset leaves behind: certificates without a guardian
        model.store[old_signing.thumbprint] = old_signing
        model.store[old_encryption.thumbprint] = old_encryption
    host = registered_host(sim)
    with open_session(host.connection_spec()) as session:
        assert escrow_host(session, host) == (2, 0, [])
    assert EscrowedPair.objects.filter(signing_thumbprint=old_signing.thumbprint).exists()
    assert temp_pfx_left(sim) == []


def test_a_guardian_without_private_keys_cannot_be_escrowed(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    with open_session(host.connection_spec()) as session:
        guardian = untrusted_guardian(session)
        with pytest.raises(JobFailed, match="not in the shielded store|no private key"):
            escrow_pair(session, host, guardian.signing_thumbprint, guardian.encryption_thumbprint)
    assert EscrowedPair.objects.count() == 0
    assert not any(c["cmdlet"] == "Export-PfxCertificate" for c in sim.command_log)


def test_connection_dropped_while_reading_the_export_leaves_no_file_and_no_entry(
    sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    with DirectRun() as run, open_session(host.connection_spec(), log=run.log) as session:
        guardian = untrusted_guardian(session)
        sim.faults.drop_on_cmdlet = "Get-Content"
        with pytest.raises(RemotingError):
            escrow_pair(session, host, guardian.signing_thumbprint, guardian.encryption_thumbprint)
    assert temp_pfx_left(sim) == [], run.text
    assert EscrowedPair.objects.count() == 0
    assert "Temporary PFX files removed" in run.text


def test_escrow_is_refused_over_https_without_certificate_check(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy", https=True)
    host = registered_host(sim, cert_check="none", ca_bundle="")
    with open_session(host.connection_spec()) as session:
        guardian = untrusted_guardian(session)
        with pytest.raises(JobFailed, match="will not send a PFX password"):
            escrow_pair(session, host, guardian.signing_thumbprint, guardian.encryption_thumbprint)
    assert not any(c["cmdlet"] == "Export-PfxCertificate" for c in sim.command_log)


@PREFLIGHT_URLS
def test_escrow_preflight_shows_the_powershell_and_starts_a_job(operator_client: Client) -> None:
    host = unreachable_host()
    sign, enc = "A" * 40, "B" * 40
    page = operator_client.get(f"/jobs/new/escrow/?host={host.pk}&guardian={sign}:{enc}").content.decode()
    assert "Show PowerShell" in page and "Export-PfxCertificate" in page
    assert "Read-Host -AsSecureString &#x27;&lt;password&gt;&#x27;" in page
    assert "Remove-Item" in page and "What could go wrong" in page
    assert_runnable(shown_powershell(page))
    response = operator_client.post("/jobs/new/escrow/", {"host": host.pk, "guardian": f"{sign}:{enc}"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == "escrow_guardian" and job.params["signing_thumbprint"] == sign


@PREFLIGHT_URLS
def test_viewer_cannot_open_the_escrow_preflight(viewer_client: Client) -> None:
    assert viewer_client.get("/jobs/new/escrow/").status_code == 403


@PREFLIGHT_URLS
def test_escrow_preflight_warns_before_a_job_that_cannot_work(operator_client: Client) -> None:
    host = unreachable_host()
    sign, enc = "C" * 40, "D" * 40
    Guardian.objects.create(host=host, name="UntrustedGuardian", signing_thumbprint=sign, encryption_thumbprint=enc)
    page = operator_client.get(f"/jobs/new/escrow/?host={host.pk}&guardian={sign}:{enc}").content.decode()
    assert "without its private signing key" in page and "NO private signing key" in page
    assert "Show PowerShell" not in page and 'href="/vault/upload/"' in page  # no doomed job: what to do instead
    assert operator_client.post("/jobs/new/escrow/", {"host": host.pk, "guardian": f"{sign}:{enc}"}).status_code == 400
    pair = store_pair(*make_pair(), PASSWORD, user=None, origin="upload").pair
    both = f"{pair.signing_thumbprint}:{pair.encryption_thumbprint}"
    page = operator_client.get(f"/jobs/new/escrow/?host={host.pk}&guardian={both}").content.decode()
    assert "already in the vault" in page
    page = operator_client.get(f"/jobs/new/escrow/?host={host.pk}&guardian=junk:%27;rm").content.decode()
    assert "Choose a guardian from the list" in page and "Show PowerShell" not in page
    assert operator_client.post("/jobs/new/escrow/", {"host": host.pk, "guardian": "x:y"}).status_code == 400
    assert operator_client.get("/jobs/new/escrow/?host=abc").status_code == 200


def test_escrow_cancelled_while_reading_the_files_still_removes_them(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    sim.faults.slow_cmdlet = ("Get-Content", 10.0)
    with DirectRun() as run, open_session(host.connection_spec(), log=run.log) as session:
        guardian = untrusted_guardian(session)
        exported = threading.Event()

        def cancel_once_exported() -> None:  # the job runner's cancel, from another thread
            while not exported.wait(0.05):
                if sum(c["cmdlet"] == "Export-PfxCertificate" for c in sim.command_log) == 2:
                    exported.set()
            session.stop_current()

        canceller = threading.Thread(target=cancel_once_exported, daemon=True)
        canceller.start()
        with pytest.raises(OperationCancelled):
            escrow_pair(session, host, *thumbprints_of(guardian))
        canceller.join(5)
    assert temp_pfx_left(sim) == [], run.text
    assert "Temporary PFX files removed" in run.text
    assert EscrowedPair.objects.count() == 0
