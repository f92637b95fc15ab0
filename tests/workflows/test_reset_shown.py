"""What the reset and undo pages show under "Show PowerShell" is what their jobs send: the preview made from a
simulated host's last inventory, then the job run against that host, compared command by command."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from hosts.inventory.refresh import refresh_host
from hosts.models import Host
from hosts.remoting import open_session
from jobs.models import Job
from jobs.workflows.powershell import PowerShellScript
from jobs.workflows.reset.plan import (
    RemovedGuardian,
    certificates_in_inventory,
    plan_from_inventory,
    reset_guardian,
    reset_script,
    undo_reset,
    undo_script,
)
from tests.plugins.powershell import TEMP_TOKEN, assert_shown_is_sent, sent_commands, shown_commands, shown_powershell
from tests.plugins.runs import DirectRun
from tests.workflows.test_reset import lose_signing_key_but_keep_an_older_pair

# Preview text against the commands a simulated host received: the rows behind both are read by the same queries
# as in the workflow's own tests, which run on PostgreSQL too, so this module runs on SQLite only.
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls("tests.hosts.test_vault_support"),
    pytest.mark.same_on_every_database,
]
GUARDIAN = "UntrustedGuardian"


def as_compared(lines: list[str]) -> list[str]:
    return [TEMP_TOKEN.sub("gc-*-", line) for line in lines]


def assert_page_shows(client: Client, url: str, *scripts: PowerShellScript) -> None:
    """The page's Show PowerShell blocks are these scripts (apart from the sample token of temporary names)."""
    page = client.get(url).content.decode()
    assert as_compared(shown_powershell(page)) == as_compared([line for s in scripts for line in s.lines()])


def reset_previewed_and_run(sim: Any, host: Host, client: Client) -> DirectRun:
    """Show the reset for the host's last inventory, run it, and check the host received exactly what was shown."""
    assert refresh_host(host).ok
    script = reset_script(plan_from_inventory(host, GUARDIAN), host)
    assert_page_shows(client, f"/jobs/new/reset/?host={host.pk}&guardian={GUARDIAN}", script)
    since = len(sim.command_log)
    with DirectRun() as run, open_session(host.connection_spec()) as session:
        reset_guardian(run, session, host)
    assert_shown_is_sent(shown_commands(script), sent_commands(sim, since))
    return run


def undo_previewed_and_run(sim: Any, host: Host, client: Client, reset: DirectRun) -> str:
    """The same for the undo of that reset, once the host's inventory shows the reset done."""
    assert refresh_host(host).ok
    job = Job.objects.create(kind="reset_guardian", host_names=[host.name], results=reset.results)
    job.hosts.set([host])
    removed = RemovedGuardian.from_record(reset.results["removed_guardian"])
    by_thumbprints = certificates_in_inventory(host, removed)
    script = undo_script(job, removed, by_thumbprints)
    other = undo_script(job, removed, not by_thumbprints, looks=False)
    assert_page_shows(client, f"/jobs/new/reset/undo/?job={job.pk}", script, other)
    since = len(sim.command_log)
    with DirectRun() as run, open_session(host.connection_spec()) as session:
        summary = undo_reset(run, session, host, removed)
    assert_shown_is_sent(shown_commands(script), sent_commands(sim, since))
    return summary


def test_reset_of_a_guardian_whose_certificates_were_deleted_sends_what_it_shows(
    sim_host: Any, registered_host: Any, admin_client: Client
) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    reset = reset_previewed_and_run(sim, host, admin_client)
    assert sim.model.guardian(GUARDIAN) is None
    assert "from its metadata" in undo_previewed_and_run(sim, host, admin_client, reset)
    assert sim.model.guardian(GUARDIAN) is not None


def test_reset_that_escrows_first_sends_what_it_shows(
    sim_host: Any, registered_host: Any, admin_client: Client
) -> None:
    sim = sim_host("healthy")
    lose_signing_key_but_keep_an_older_pair(sim)
    host = registered_host(sim)
    reset_previewed_and_run(sim, host, admin_client)
    assert "Export-PfxCertificate" in {c["cmdlet"] for c in sim.command_log}


def test_undo_by_thumbprints_sends_what_it_shows(sim_host: Any, registered_host: Any, admin_client: Client) -> None:
    sim = sim_host("healthy")
    with sim.model.changing() as model:  # private keys deleted, certificates left in the store
        model.store = {t: c.public_only() for t, c in model.store.items()}
    host = registered_host(sim)
    reset = reset_previewed_and_run(sim, host, admin_client)
    assert "by thumbprints" in undo_previewed_and_run(sim, host, admin_client, reset)
