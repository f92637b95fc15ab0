"""A domain pair reached with CredSSP over HTTPS (issue 10): the second hop as Windows has it (`second_hop` on), and
the console's sessions hold the account's credentials, so the lab share and live migration both work; a host whose
CredSSP server role is off stops the job before anything changed, with the remedy and no credential in its log.
That each method moves the VM in this world is the table of test_migrate_worlds.py."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.models import Job, JobLogLine, JobState
from jobs.runner import execute
from jobs.workflows.migrate.page import live_preview
from jobs.workflows.migrate.plan import MigrationOptions
from tests.plugins.worlds import credssp_pair


@pytest.fixture
def lab(sim_lab: Any, registered_host: Any) -> Any:
    return credssp_pair(sim_lab, registered_host)


@pytest.mark.django_db
def test_the_preflight_rates_live_migration_and_the_share_as_possible_and_says_why(lab: Any) -> None:
    plan, _, error = live_preview(lab.source_host, lab.target_host, MigrationOptions("Win11-A", method="live"))
    assert plan is not None, error
    assert {key: verdict.runnable for key, verdict in plan.methods.items()} == {
        "pull": False,  # the lab share is not a share of the source: the workgroup method has nothing to copy from
        "export": True,
        "live": True,
        "register": True,
    }
    live = " ".join(plan.methods["live"].reasons)
    assert "both in domain lab.test" in live and "logs on to it with CredSSP" in live
    assert "holds the account's credentials for the share" in " ".join(plan.methods["export"].reasons)
    assert plan.failures == []


@pytest.mark.django_db(transaction=True)
def test_credssp_refused_by_the_target_ends_the_job_with_the_remedy_and_nothing_moved(
    sim_lab: Any, registered_host: Any, operator: Any
) -> None:
    lab = credssp_pair(sim_lab, registered_host)
    with lab.target.model.changing() as model:
        model.credssp_server = False  # Disable-WSManCredSSP -Role Server on HV02
    opts = MigrationOptions("Win11-A", method="live", unseal="carry")
    job = Job.objects.create(
        kind="migrate_vm", host_names=["HV01", "HV02"], vms=["Win11-A"], params=opts.as_params(), requested_by=operator
    )
    job.hosts.set([lab.source_host, lab.target_host])
    assert execute(job.pk) == JobState.FAILED
    job.refresh_from_db()
    assert "HV02 cannot be reached" in job.error and "does not accept CredSSP" in job.error
    assert "Enable-WSManCredSSP -Role Server -Force" in job.error
    log = "\n".join(JobLogLine.objects.filter(job=job).values_list("text", flat=True))
    assert lab.source.password not in log + job.error
    assert lab.source.model.vm("Win11-A").state == "Running"
    assert "Win11-A" not in {vm.name for vm in lab.target.model.vms.values()}
