"""What the vTPM page shows under "Show PowerShell" is what the job sends: the preview made from a simulated host's
last inventory, then the job's changes run against that host, compared command by command."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from hosts.inventory.refresh import refresh_host
from hosts.models import Host
from hosts.remoting import open_session
from jobs.workflows.vtpm.plan import change_vtpms, changes_from, vtpm_script
from tests.plugins.powershell import assert_shown_is_sent, sent_commands, shown_commands, shown_powershell
from tests.plugins.runs import DirectRun

# Preview text against the commands a simulated host received: the rows behind both are read by the same queries
# as in the workflow's own tests, which run on PostgreSQL too, so this module runs on SQLite only.
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls("tests.hosts.test_vault_support"),
    pytest.mark.same_on_every_database,
]


def previewed_and_run(sim: Any, host: Host, client: Client, params: dict[str, Any], vms: list[str]) -> str:
    """Show the change for the host's last inventory, run it as the job would with `params`, and check the host
    received exactly what was shown."""
    assert refresh_host(host).ok
    script = vtpm_script(host, changes_from(params, vms))
    query = urlencode([("host", host.pk), ("action", params["action"]), *(("vm", vm) for vm in vms)])
    page = client.get(f"/jobs/new/vtpm/?{query}").content.decode()
    assert shown_powershell(page) == script.lines()  # the page shows this very script
    since = len(sim.command_log)
    with DirectRun() as run, open_session(host.connection_spec()) as session:
        summary = change_vtpms(run, session, host, changes_from(params, vms))
    assert_shown_is_sent(shown_commands(script), sent_commands(sim, since))
    return summary


def test_turning_tpms_off_sends_what_it_shows(sim_host: Any, registered_host: Any, admin_client: Client) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    params = {"action": "disable", "confirmed": ["Win11-B", "Win11-C"], "remove_saved_state": ["Win11-C"]}
    summary = previewed_and_run(sim, host, admin_client, params, ["Win11-B", "Win11-C"])
    assert summary == "Win11-B: TPM off; Win11-C: TPM off"


def test_turning_tpms_on_sends_what_it_shows(sim_host: Any, registered_host: Any, admin_client: Client) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    off = {"action": "disable", "confirmed": ["Win11-B"]}
    previewed_and_run(sim, host, admin_client, off, ["Win11-B"])
    # Win11-B keeps its key protector with the TPM off; Srv-Plain has none: enabling seals it first.
    summary = previewed_and_run(sim, host, admin_client, {"action": "enable"}, ["Srv-Plain", "Win11-B"])
    assert summary == "Srv-Plain: TPM on; Win11-B: TPM on"
    assert [c["cmdlet"] for c in sim.command_log].count("Set-VMKeyProtector") == 1
