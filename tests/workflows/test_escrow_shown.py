"""Show PowerShell of an escrow is what the job sends: the preview for a simulated host, from its last inventory,
then the escrow against that host, compared command by command."""

from __future__ import annotations

from typing import Any

import pytest

from hosts.inventory.models import Guardian
from hosts.inventory.refresh import refresh_host
from hosts.models import Host
from hosts.remoting import open_session
from hypervsim.certs import guardian_pair
from jobs.workflows.escrow.plan import escrow_host, escrow_host_script, escrow_pair, escrow_pair_script
from tests.plugins.powershell import assert_shown_is_sent, sent_commands, shown_commands
from tests.plugins.runs import DirectRun

# Preview text against the commands a simulated host received: the rows behind both are read by the same queries
# as in the workflow's own tests, which run on PostgreSQL too, so this module runs on SQLite only.
pytestmark = [pytest.mark.django_db, pytest.mark.same_on_every_database]


def inventoried(sim: Any, registered_host: Any) -> Host:
    host: Host = registered_host(sim)
    assert refresh_host(host).ok
    return host


def test_escrow_of_one_guardian_sends_what_its_preview_shows(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = inventoried(sim, registered_host)
    guardian = Guardian.objects.get(host=host, name="UntrustedGuardian")
    shown = shown_commands(escrow_pair_script(*guardian.identity))
    since = len(sim.command_log)
    with DirectRun() as run, open_session(host.connection_spec()) as session:
        escrow_pair(session, host, *guardian.identity, guardian_name=guardian.name)
    assert_shown_is_sent(shown, sent_commands(sim, since))
    assert "Escrowed" in run.text


def test_escrow_of_every_pair_on_a_host_sends_what_its_preview_shows(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    old_signing, old_encryption = guardian_pair("UntrustedGuardian", sim.name, key_label=f"previous/{sim.name}")
    with sim.model.changing() as model:  # what a guardian reset leaves behind: certificates without a guardian
        model.store[old_signing.thumbprint] = old_signing
        model.store[old_encryption.thumbprint] = old_encryption
    host = inventoried(sim, registered_host)
    shown = shown_commands(escrow_host_script(host))
    since = len(sim.command_log)
    with DirectRun(), open_session(host.connection_spec()) as session:
        assert escrow_host(session, host) == (2, 0, [])
    assert_shown_is_sent(shown, sent_commands(sim, since))
    assert [name for name, _params in shown].count("Export-PfxCertificate") == 4


def test_a_host_whose_pairs_are_all_in_the_vault_is_only_read(sim_host: Any, registered_host: Any) -> None:
    sim = sim_host("healthy")
    host = inventoried(sim, registered_host)
    with open_session(host.connection_spec()) as session:
        escrow_host(session, host)
    shown = shown_commands(escrow_host_script(host))
    since = len(sim.command_log)
    with open_session(host.connection_spec()) as session:
        assert escrow_host(session, host) == (0, 1, [])
    assert_shown_is_sent(shown, sent_commands(sim, since))
    assert "Export-PfxCertificate" not in [name for name, _params in shown]
