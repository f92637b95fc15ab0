"""Show PowerShell of an import is what the job sends: the preview for a simulated host, from its last inventory,
then the import against that host, compared command by command — for each branch the inventory can predict."""

from __future__ import annotations

from typing import Any

import pytest

from hosts.inventory.models import Guardian
from hosts.inventory.refresh import refresh_host
from hosts.models import Host
from hosts.remoting import open_session
from hosts.vault.models import EscrowedPair
from hosts.vault.services import store_pair
from hypervsim.scenarios import previous_guardian_backup
from jobs.workflows.escrow.plan import escrow_pair
from jobs.workflows.import_guardian.plan import import_pair, import_script
from tests.hosts.test_vault_support import PASSWORD, make_pair
from tests.plugins.powershell import assert_shown_is_sent, sent_commands, shown_commands
from tests.plugins.runs import DirectRun

# Preview text against the commands a simulated host received: the rows behind both are read by the same queries
# as in the workflow's own tests, which run on PostgreSQL too, so this module runs on SQLite only.
pytestmark = [pytest.mark.django_db, pytest.mark.same_on_every_database]


def inventoried(sim: Any, registered_host: Any) -> Host:
    host: Host = registered_host(sim)
    assert refresh_host(host).ok
    return host


def assert_import_sends_what_is_shown(sim: Any, host: Host, pair: EscrowedPair) -> list[str]:
    """The preview's commands are the import's; returns the cmdlets shown."""
    plan, script = import_script(host, pair)
    since = len(sim.command_log)
    with DirectRun(), open_session(host.connection_spec()) as session:
        assert import_pair(session, host, pair) == plan.name
    shown = shown_commands(script)
    assert_shown_is_sent(shown, sent_commands(sim, since))
    return [name for name, _params in shown]


def test_import_to_a_reinstalled_host_sends_what_its_preview_shows(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("reinstalled")
    host = inventoried(sim, registered_host)
    signing, encryption, password = previous_guardian_backup(sim)
    pair = store_pair(signing, encryption, password, user=None, origin="upload", allow_expired=True).pair
    shown = assert_import_sends_what_is_shown(sim, host, pair)
    assert shown.count("Import-PfxCertificate") == 2 and "New-HgsGuardian" in shown


def test_import_to_a_host_without_the_store_creates_it_as_shown(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("fresh")
    host = inventoried(sim, registered_host)
    pair = store_pair(*make_pair(host="OLDHOST"), PASSWORD, user=None, origin="upload").pair
    shown = assert_import_sends_what_is_shown(sim, host, pair)
    assert shown.index("New-Item") < shown.index("Set-Content")


def test_import_of_a_name_taken_by_another_guardian_sends_what_its_preview_shows(
    sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("healthy")
    host = inventoried(sim, registered_host)
    pair = store_pair(*make_pair(host="OTHERHOST", slot=3), PASSWORD, user=None, origin="upload").pair
    assert_import_sends_what_is_shown(sim, host, pair)
    assert sim.model.guardian(f"UntrustedGuardian-{pair.signing_thumbprint[:8]}") is not None


def test_import_that_gives_a_guardian_its_deleted_keys_back_sends_what_its_preview_shows(
    sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    guardian = sim.model.guardian("UntrustedGuardian")
    with open_session(host.connection_spec()) as session:
        pair = escrow_pair(session, host, guardian.signing.thumbprint, guardian.encryption.thumbprint)
    with sim.model.changing() as model:  # someone deletes the certificates: the guardian stays, keyless
        model.store = {}
    assert refresh_host(host).ok and not Guardian.objects.get(host=host).has_private_signing_key
    shown = assert_import_sends_what_is_shown(sim, host, pair)
    assert "Import-PfxCertificate" in shown and "New-HgsGuardian" not in shown


def test_import_of_a_pair_the_host_holds_only_reads_as_shown(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = inventoried(sim, registered_host)
    guardian = sim.model.guardian("UntrustedGuardian")
    with open_session(host.connection_spec()) as session:
        pair = escrow_pair(session, host, guardian.signing.thumbprint, guardian.encryption.thumbprint)
    assert assert_import_sends_what_is_shown(sim, host, pair) == ["Get-HgsGuardian"]
