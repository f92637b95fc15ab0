"""One-click reset of a broken guardian, and its undo, over the simulator (the `deleted-certs` story)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from hosts.inventory.refresh import refresh_host
from hosts.remoting import open_session
from hosts.remoting.catalog.vms import DisableTpm
from hosts.remoting.errors import RemoteCommandError
from hosts.vault.models import EscrowedPair, find_pair
from hypervsim.certs import guardian_pair
from hypervsim.keyprotector import KeyProtector
from jobs.kinds import JobFailed
from jobs.models import Job
from jobs.workflows.reset.plan import RemovedGuardian, reset_guardian, undo_reset
from jobs.workflows.vtpm.plan import TpmChange, change_vtpm
from tests.plugins.powershell import assert_runnable, shown_powershell
from tests.plugins.runs import DirectRun

# The preflight pages' URLs, whether or not jobs/urls.py includes the workflows' URLs yet.
pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.hosts.test_vault_support")]
GUARDIAN = "UntrustedGuardian"


def thumbprints(sim: Any) -> tuple[str, str]:
    g = sim.model.guardian(GUARDIAN)
    return g.signing.thumbprint, g.encryption.thumbprint


def lose_signing_key_but_keep_an_older_pair(sim: Any) -> tuple[str, str]:
    """A host whose UntrustedGuardian lost its signing key, while Win11-B is also sealed to an older pair whose
    private keys are still in the store and not in the vault: that pair would be left unguarded by a reset."""
    model = sim.model
    with model.changing():
        guardian = model.guardian(GUARDIAN)
        owner_s, owner_e = (model.store[guardian.signing.thumbprint], model.store[guardian.encryption.thumbprint])
        old_s, old_e = guardian_pair("Previous", model.name, key_label="reset-test/previous")
        model.store.update({old_s.thumbprint: old_s, old_e.thumbprint: old_e})
        vm = model.vm("Win11-B")
        vm.key_protector = KeyProtector.create(owner_s, owner_e).grant(model.store, old_s, old_e).to_bytes()
        model.store[owner_s.thumbprint] = owner_s.public_only()
    return old_s.thumbprint, old_e.thumbprint


def removed_by(run: DirectRun) -> RemovedGuardian:
    """What the reset run through `run` kept for its undo."""
    return RemovedGuardian.from_record(run.results["removed_guardian"])


def test_reset_on_deleted_certs_host_makes_tpm_changes_work_again(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    removed = thumbprints(sim)
    with DirectRun() as run, open_session(host.connection_spec()) as session:
        with pytest.raises(RemoteCommandError, match="does not have a private key"):
            session.run(DisableTpm("Srv-Plain"))  # the symptom: any TPM change fails
        summary = reset_guardian(run, session, host)
        assert sim.model.guardian(GUARDIAN) is None
        # A real TPM change now works, and creates a fresh UntrustedGuardian with private keys.
        change_vtpm(run, session, host, TpmChange("Srv-Plain", "enable"))
    assert "TPM changes work again" in summary
    record = run.results["removed_guardian"]
    assert (record["signing_thumbprint"], record["encryption_thumbprint"]) == removed
    assert set(run.results["sealed_vms"]) == {"Win11-A", "Win11-B", "Win11-C"}
    assert "NOT escrowed anywhere" in run.text  # the preflight said what cannot be saved
    fresh = sim.model.guardian(GUARDIAN)
    assert fresh is not None and sim.model.private_key_held(fresh.signing)
    assert sim.model.vm("Srv-Plain").tpm_enabled
    assert EscrowedPair.objects.count() == 0  # nothing held private keys: nothing to escrow
    assert [c["cmdlet"] for c in sim.command_log].count("Remove-HgsGuardian") == 1


def test_reset_escrows_keys_still_on_the_host_before_removing(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    old = lose_signing_key_but_keep_an_older_pair(sim)
    host = registered_host(sim)
    run = DirectRun()
    with open_session(host.connection_spec()) as session:
        reset_guardian(run, session, host)
    assert find_pair(*old) is not None
    log = [c["cmdlet"] for c in sim.command_log]
    assert log.index("Export-PfxCertificate") < log.index("Remove-HgsGuardian")
    assert sim.model.guardian(GUARDIAN) is None


def test_reset_stops_before_removing_when_escrow_fails(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    lose_signing_key_but_keep_an_older_pair(sim)
    host = registered_host(sim)
    sim.faults.drop_on_cmdlet = "Export-PfxCertificate"
    run = DirectRun()
    with (
        open_session(host.connection_spec()) as session,
        pytest.raises(JobFailed, match="NOT removed and nothing changed"),
    ):
        reset_guardian(run, session, host)
    sim.faults.clear()
    assert sim.model.guardian(GUARDIAN) is not None
    assert "Remove-HgsGuardian" not in {c["cmdlet"] for c in sim.command_log}
    assert EscrowedPair.objects.count() == 0


def test_reset_refuses_a_guardian_that_has_its_keys(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    with open_session(host.connection_spec()) as session, pytest.raises(JobFailed, match="not broken"):
        reset_guardian(DirectRun(), session, host)
    assert sim.model.guardian(GUARDIAN) is not None
    assert "Remove-HgsGuardian" not in {c["cmdlet"] for c in sim.command_log}


def test_undo_brings_back_a_guardian_whose_certificates_are_gone(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    before = thumbprints(sim)
    run = DirectRun()
    with open_session(host.connection_spec()) as session:
        reset_guardian(run, session, host)
        summary = undo_reset(run, session, host, removed_by(run))
    assert "from its metadata" in summary
    assert thumbprints(sim) == before
    assert "Import-HgsGuardian" in {c["cmdlet"] for c in sim.command_log}
    assert not list(sim.model.files.resolve("C:\\Windows\\Temp").glob("gc-*"))  # temporary XML removed


def test_undo_recreates_by_thumbprints_when_certificates_stayed(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    with sim.model.changing() as model:  # private keys deleted, certificates left in the store
        model.store = {t: c.public_only() for t, c in model.store.items()}
    host = registered_host(sim)
    before = thumbprints(sim)
    run = DirectRun()
    with open_session(host.connection_spec()) as session:
        reset_guardian(run, session, host)
        assert "by thumbprints" in undo_reset(run, session, host, removed_by(run))
    assert thumbprints(sim) == before
    new_guardian = [c for c in sim.command_log if c["cmdlet"] == "New-HgsGuardian"]
    assert new_guardian[-1]["parameters"]["SigningCertificateThumbprint"] == before[0]


def test_undo_refuses_to_replace_a_guardian_made_after_the_reset(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    run = DirectRun()
    with open_session(host.connection_spec()) as session:
        reset_guardian(run, session, host)
        change_vtpm(run, session, host, TpmChange("Srv-Plain", "enable"))  # makes a new UntrustedGuardian
        fresh = thumbprints(sim)
        with pytest.raises(JobFailed, match="new guardian named 'UntrustedGuardian'"):
            undo_reset(run, session, host, removed_by(run))
    assert thumbprints(sim) == fresh


# -- pages ----------------------------------------------------------------------------------------------------------


def test_reset_is_offered_for_the_broken_guardian_and_shows_its_vms(
    sim_host: Any, registered_host: Any, admin_client: Client
) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    assert refresh_host(host).ok
    listing = admin_client.get("/jobs/new/reset/").content.decode()
    assert f"?host={host.pk}&amp;guardian=UntrustedGuardian" in listing
    page = admin_client.get(f"/jobs/new/reset/?host={host.pk}&guardian=UntrustedGuardian").content.decode()
    for vm in ("Win11-A", "Win11-B", "Win11-C"):
        assert vm in page
    assert "not escrowed anywhere" in page
    assert "Show PowerShell" in page and "Remove-HgsGuardian -Name &#x27;UntrustedGuardian&#x27;" in page
    lines = shown_powershell(page)
    assert any(line.endswith("= Get-VMKeyProtector -VMName 'Win11-C'") for line in lines)  # as the job reads them
    assert_runnable(lines)  # each VM's key protector, read into a variable of its own, is what the host converts
    check = [line for line in lines if line.startswith(("Enable-VMTPM", "Disable-VMTPM"))]
    vm = sim.model.vm(check[0].split("'")[1])
    assert len(check) == 1 and vm.state == "Off" and check[0].startswith("Enable" if vm.tpm_enabled else "Disable")
    assert "Export-PfxCertificate" not in page  # no private key left to escrow on this host
    assert_runnable(lines)


def test_reset_preflight_shows_the_escrow_it_will_do_first(
    sim_host: Any, registered_host: Any, admin_client: Client
) -> None:
    sim = sim_host("healthy")
    old_signing, old_encryption = lose_signing_key_but_keep_an_older_pair(sim)
    host = registered_host(sim)
    assert refresh_host(host).ok
    lines = shown_powershell(admin_client.get(f"/jobs/new/reset/?host={host.pk}&guardian={GUARDIAN}").content.decode())
    exports = [line for line in lines if line.startswith("Export-PfxCertificate")]
    assert [old_signing in exports[0], old_encryption in exports[1]] == [True, True] and len(exports) == 2
    assert lines.index(exports[0]) < lines.index("Remove-HgsGuardian -Name 'UntrustedGuardian'")
    assert_runnable(lines)


def test_reset_page_starts_the_job_for_admins_only(
    sim_host: Any, registered_host: Any, admin_client: Client, operator_client: Client
) -> None:
    host = registered_host(sim_host("deleted-certs"))
    assert operator_client.get("/jobs/new/reset/").status_code == 403
    assert operator_client.post("/jobs/new/reset/", {"host": host.pk}).status_code == 403
    assert Job.objects.count() == 0
    response = admin_client.post("/jobs/new/reset/", {"host": host.pk, "guardian": GUARDIAN})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == "reset_guardian" and job.params == {"guardian_name": GUARDIAN}


def test_undo_page_refuses_a_job_that_removed_nothing(admin_client: Client) -> None:
    page = admin_client.get("/jobs/new/reset/undo/?job=999")
    assert page.status_code == 200 and "Choose a reset job that removed a guardian" in page.content.decode()
    assert admin_client.get("/jobs/new/reset/?host=abc").status_code == 200  # bad input: no 500


def test_undo_page_shows_runnable_lines_with_the_kept_metadata(
    sim_host: Any, registered_host: Any, admin_client: Client
) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    run = DirectRun()
    with open_session(host.connection_spec()) as session:
        reset_guardian(run, session, host)
    job = Job.objects.create(kind="reset_guardian", host_names=[host.name], results=run.results)
    job.hosts.set([host])
    lines = shown_powershell(admin_client.get(f"/jobs/new/reset/undo/?job={job.pk}").content.decode())
    kept = run.results["removed_guardian"]["metadata_xml"]
    assert f"$guardianXml = [Convert]::FromBase64String('{kept}')" in lines
    assert any(
        line.startswith("Set-Content -Path 'C:\\Windows\\Temp\\gc-") and "-Value $guardianXml" in line for line in lines
    )
    assert_runnable(lines)
