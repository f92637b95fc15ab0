"""Jobs that talk to simulated Hyper-V hosts over real WSMan/PSRP: the inventory refresh kind, the refresh after
every job, and a cancel that stops the PowerShell pipeline running on the host (ctrl_c)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hosts.inventory.models import HostInventory
from hosts.remoting.catalog import vms as vm_catalog
from jobs.kinds import JobContext, job_kind
from jobs.models import Job, JobLogLine, JobState
from jobs.services import cancel_job, create_job
from tests.plugins.jobs import wait_for_job, wait_for_line

WORKER_JOB_KINDS = True  # the worker process imports this module for the kinds below

pytestmark = pytest.mark.worker


@job_kind("test_read_vm_host", label="Read the Hyper-V host (test)", mutating=True, refresh_inventory=True)
def read_vm_host(ctx: JobContext) -> str:
    assert ctx.host is not None
    session = ctx.session(ctx.host)
    ctx.log("asking the host")
    facts = session.run(vm_catalog.GetVmHost())
    ctx.check_cancelled()
    return f"read {facts}"


@job_kind("test_read_vm", label="Read a VM (test)", mutating=True, refresh_inventory=True)
def read_vm(ctx: JobContext) -> str:
    assert ctx.host is not None
    session = ctx.session(ctx.host)
    ctx.log("asking the host")
    vm = session.run(vm_catalog.GetVM(vm_name=ctx.params["vm"]))
    ctx.check_cancelled()
    return f"{ctx.params['vm']} is {vm.state if vm else 'missing'}"


def log_of(job: Job) -> str:
    return "\n".join(JobLogLine.objects.filter(job=job).order_by("seq").values_list("text", flat=True))


def test_inventory_refresh_job_reads_two_hosts(
    celery_worker_process: Any, sim_host: Any, registered_host: Any, operator: Any
) -> None:
    hosts = [registered_host(sim_host("healthy")), registered_host(sim_host("fresh"))]
    job = create_job(operator, "inventory_refresh", hosts=hosts)
    wait_for_job(job)
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.summary == "Refreshed 2 of 2 hosts"
    for host in hosts:
        inventory = HostInventory.objects.get(host=host)
        assert inventory.refreshed_at is not None and not inventory.stale
    log = log_of(job)
    assert "HV01: inventory refreshed" in log and "HV02: inventory refreshed" in log
    assert hosts[0].get_password() not in log


def test_refresh_of_an_unreachable_host_fails_with_a_clear_message(
    celery_worker_process: Any, sim_host: Any, registered_host: Any, operator: Any
) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    sim.down()
    job = create_job(operator, "inventory_refresh", hosts=[host])
    wait_for_job(job)
    assert job.state == JobState.FAILED
    assert job.error.startswith("Could not refresh HV01")
    assert "HV01:" in log_of(job) and "stale" in log_of(job)
    assert sim.password not in log_of(job) + job.error


def test_after_a_job_the_touched_host_inventory_is_refreshed(
    celery_worker_process: Any, sim_host: Any, registered_host: Any, operator: Any
) -> None:
    host = registered_host(sim_host("healthy"))
    job = create_job(operator, "test_read_vm", hosts=[host], params={"vm": "Win11-A"})
    wait_for_job(job)
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.summary == "Win11-A is Running"
    assert "Refreshing the inventory of HV01" in log_of(job)
    assert HostInventory.objects.get(host=host).refreshed_at is not None


def test_cancel_stops_the_powershell_pipeline_on_the_host(
    celery_worker_process: Any, sim_host: Any, registered_host: Any, operator: Any
) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    sim.faults.slow_cmdlet = ("Get-VMHost", 30)
    job = create_job(operator, "test_read_vm_host", hosts=[host])
    wait_for_line(job, "asking the host")
    time.sleep(0.5)  # the Get-VMHost pipeline is now running on the host
    cancelled_at = time.monotonic()
    cancel_job(job, operator)
    # The running Get-VMHost has already read its 30 s delay; the inventory refresh that follows the cancel (a job
    # of its own, created once the pipeline has stopped) must not sit through them too.
    sim.faults.slow_cmdlet = None
    wait_for_job(job, timeout=15)
    assert job.state == JobState.CANCELLED, job.error
    assert time.monotonic() - cancelled_at < 10  # not the 30 s the cmdlet would have taken
    assert any(entry["cmdlet"] == "Get-VMHost" and entry["outcome"] == "stopped" for entry in sim.command_log)
    assert job.summary == "Cancelled by otto; done before the cancel: no step had completed."
    # The inventory is refreshed by a job of its own, so the cancel did not wait for it.
    follow_up = Job.objects.get(kind="inventory_refresh", params__after_job=job.pk)
    assert f"is refreshed by job #{follow_up.pk}" in log_of(job)
    wait_for_job(follow_up)
    assert follow_up.state == JobState.SUCCEEDED, follow_up.error
