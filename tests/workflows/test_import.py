"""Import a guardian from the vault over a simulated host: store created, keys usable, idempotent, faults clean."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from hosts.fields import seal_text
from hosts.remoting import open_session
from hosts.remoting.catalog.guardians import GetGuardians, thumbprints_of
from hosts.remoting.errors import RemotingError
from hosts.vault.models import EscrowedPair
from hosts.vault.services import store_pair
from hypervsim.scenarios import previous_guardian_backup
from jobs.kinds import JobFailed
from jobs.models import Job
from jobs.workflows.escrow.plan import escrow_pair
from jobs.workflows.import_guardian import plan as import_guardian
from jobs.workflows.import_guardian.plan import import_pair
from tests.hosts.test_vault_support import (
    PASSWORD,
    assert_no_secret,
    make_pair,
    temp_pfx_left,
    unreachable_host,
)
from tests.plugins.powershell import assert_runnable, shown_powershell
from tests.plugins.runs import DirectRun

pytestmark = pytest.mark.django_db
# The preflight pages' URLs, whether or not jobs/urls.py includes them yet.
PREFLIGHT_URLS = pytest.mark.urls("tests.hosts.test_vault_support")


def backup_in_vault(sim: Any) -> EscrowedPair:
    signing, encryption, password = previous_guardian_backup(sim)
    return store_pair(signing, encryption, password, user=None, origin="upload", allow_expired=True).pair


def cmdlets(sim: Any) -> list[str]:
    return [c["cmdlet"] for c in sim.command_log]


def test_import_gives_a_reinstalled_host_its_old_guardian_once(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    pair = backup_in_vault(sim)
    with DirectRun() as run, open_session(host.connection_spec(), log=run.log) as session:
        name = import_pair(session, host, pair)
        sent = len(sim.command_log)
        assert import_pair(session, host, pair) == name
    assert name == "UntrustedGuardian"
    guardian = sim.model.guardian(name)
    assert guardian is not None and guardian.signing.thumbprint == pair.signing_thumbprint
    assert temp_pfx_left(sim) == []
    second_run = cmdlets(sim)[sent:]
    assert "Import-PfxCertificate" not in second_run and "New-HgsGuardian" not in second_run
    assert "nothing changed" in run.text
    assert_no_secret(pair.open()[2], run.text, str([c["parameters"] for c in sim.command_log]))


def test_import_creates_the_store_on_a_fresh_host(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("fresh")
    host = registered_host(sim)
    signing, encryption = make_pair(host="OLDHOST")
    pair = store_pair(signing, encryption, PASSWORD, user=None, origin="upload").pair
    with DirectRun() as run, open_session(host.connection_spec(), log=run.log) as session:
        import_pair(session, host, pair)
    assert cmdlets(sim).index("New-Item") < cmdlets(sim).index("Import-PfxCertificate")
    assert "creating it" in run.text
    assert [text for level, text in run.lines if level == "error"] == []  # a missing store is expected, not an error
    assert pair.signing_thumbprint in sim.model.store and temp_pfx_left(sim) == []


def test_name_collision_keeps_the_existing_guardian(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    before = sim.model.guardian("UntrustedGuardian").signing.thumbprint
    signing, encryption = make_pair(host="OTHERHOST", slot=3)
    pair = store_pair(signing, encryption, PASSWORD, user=None, origin="upload").pair
    with open_session(host.connection_spec()) as session:
        name = import_pair(session, host, pair)
    assert name == f"UntrustedGuardian-{pair.signing_thumbprint[:8]}"
    assert sim.model.guardian("UntrustedGuardian").signing.thumbprint == before
    assert sim.model.guardian(name) is not None


def test_expired_pair_is_imported_with_allow_expired(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("fresh")
    host = registered_host(sim)
    signing, encryption = make_pair(host="OLDHOST", not_before=datetime(2012, 1, 1, tzinfo=UTC), days=3650)
    pair = store_pair(signing, encryption, PASSWORD, user=None, origin="upload", allow_expired=True).pair
    with open_session(host.connection_spec()) as session:
        assert import_pair(session, host, pair) == "UntrustedGuardian"
    new = next(c for c in sim.command_log if c["cmdlet"] == "New-HgsGuardian")
    assert "AllowExpired" in new["parameters"]


def test_connection_dropped_during_import_cleans_up_and_a_rerun_finishes(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    pair = backup_in_vault(sim)
    with DirectRun() as run, open_session(host.connection_spec(), log=run.log) as session:
        sim.faults.drop_on_cmdlet = "Import-PfxCertificate"
        with pytest.raises(RemotingError):
            import_pair(session, host, pair)
    assert temp_pfx_left(sim) == [], run.text
    assert EscrowedPair.objects.get().open()  # nothing lost from the vault
    sim.faults.clear()
    with open_session(host.connection_spec()) as session:
        assert import_pair(session, host, pair) == "UntrustedGuardian"
    assert temp_pfx_left(sim) == []


def test_tampered_vault_entry_is_never_sent(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    pair = backup_in_vault(sim)
    other = store_pair(*make_pair(slot=2), PASSWORD, user=None, origin="upload").pair
    pair.signing_pfx = other.signing_pfx
    pair.save()
    with open_session(host.connection_spec()) as session, pytest.raises(JobFailed, match="cannot be used"):
        import_pair(session, host, EscrowedPair.objects.get(pk=pair.pk))
    assert "Set-Content" not in cmdlets(sim) and temp_pfx_left(sim) == []
    assert EscrowedPair.objects.count() == 2


def test_a_vault_entry_with_the_wrong_password_is_refused_before_anything_is_sent(
    sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    pair = backup_in_vault(sim)
    EscrowedPair.objects.filter(pk=pair.pk).update(pfx_password=seal_text("not-the-pfx-password"))
    with open_session(host.connection_spec()) as session, pytest.raises(JobFailed) as failed:
        import_pair(session, host, EscrowedPair.objects.get(pk=pair.pk))
    assert "cannot be used" in str(failed.value) and "password" in str(failed.value)
    assert "Nothing was sent to the host" in str(failed.value)
    assert "Set-Content" not in cmdlets(sim) and temp_pfx_left(sim) == []
    assert EscrowedPair.objects.filter(pk=pair.pk).exists()  # reported, kept for a person to look at


def test_a_pfx_password_the_host_refuses_fails_like_windows_and_removes_the_files(
    sim_host: Any, registered_host: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a password ever pass the vault's check and still not open the PFX on the host: the host's own error,
    temporary files removed, the guardian not created, the vault entry intact."""
    sim = sim_host("reinstalled")
    host = registered_host(sim)
    pair = backup_in_vault(sim)
    signing, encryption, password = pair.open()
    monkeypatch.setattr(import_guardian, "open_pair", lambda _pair: (signing, encryption, "wrong-" + password))
    with (
        DirectRun() as run,
        open_session(host.connection_spec(), log=run.log) as session,
        pytest.raises(RemotingError) as failed,
    ):
        import_pair(session, host, pair)
    assert "requires either a different password" in str(failed.value)
    assert temp_pfx_left(sim) == [] and "Temporary PFX files removed" in run.text
    assert "New-HgsGuardian" not in cmdlets(sim) and sim.model.guardian("UntrustedGuardian") is None
    assert EscrowedPair.objects.get().open() == (signing, encryption, password)
    assert_no_secret(password, run.text, str(failed.value), str([c["parameters"] for c in sim.command_log]))


@PREFLIGHT_URLS
def test_import_preflight_names_the_collision_and_starts_a_job(admin_client: Client) -> None:
    host = unreachable_host()  # it never held the pair: an admin's import (tests/workflows/test_import_placement.py)
    signing, encryption = make_pair()
    pair = store_pair(signing, encryption, PASSWORD, user=None, origin="upload").pair
    page = admin_client.get(f"/jobs/new/import/?host={host.pk}&pair={pair.pk}").content.decode()
    assert "Show PowerShell" in page and "Import-PfxCertificate" in page and "New-HgsGuardian" in page
    assert "-AllowExpired -AllowUntrustedRoot" in page and PASSWORD not in page
    assert_runnable(shown_powershell(page))
    response = admin_client.post("/jobs/new/import/", {"host": host.pk, "pair": pair.pk})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/" and job.params == {"vault_entry": pair.pk}


def test_import_gives_a_guardian_back_the_keys_that_were_deleted(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    with open_session(host.connection_spec()) as session:
        guardian = next(g for g in session.run(GetGuardians()) if g.name == "UntrustedGuardian")
        pair = escrow_pair(session, host, *thumbprints_of(guardian))
        with sim.model.changing() as model:  # someone deletes the certificates: the guardian stays, keyless
            model.store = {}
        assert not next(g for g in session.run(GetGuardians()) if g.name == "UntrustedGuardian").has_private_signing_key
        assert import_pair(session, host, pair) == "UntrustedGuardian"
        repaired = next(g for g in session.run(GetGuardians()) if g.name == "UntrustedGuardian")
    assert repaired.has_private_signing_key and "New-HgsGuardian" not in cmdlets(sim)
    assert temp_pfx_left(sim) == []
