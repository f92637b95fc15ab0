"""The Refresh buttons (a host's page, "Refresh all hosts" on the dashboard) start an inventory refresh job on the
real worker and open its page, instead of reading the hosts inside the web request."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from hosts.inventory.models import HostInventory, VirtualMachine
from jobs.inventory import INVENTORY_REFRESH
from jobs.models import Job, JobLogLine, JobState
from tests.plugins.jobs import wait_for_job

pytestmark = [pytest.mark.worker, pytest.mark.timeout(90)]


def job_of(response: Any) -> Job:
    assert response.status_code == 302, response.status_code
    job = Job.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert response["Location"] == f"/jobs/{job.pk}/"
    return job


def test_the_host_refresh_button_runs_a_job_and_opens_its_page(
    celery_worker_process: Any, sim_host: Any, registered_host: Any, operator: Any
) -> None:
    host = registered_host(sim_host("healthy"))
    client = Client()
    client.force_login(operator)

    job = job_of(client.post(f"/hosts/{host.pk}/refresh/"))

    assert job.kind == INVENTORY_REFRESH and list(job.hosts.all()) == [host] and job.requested_by == operator
    assert wait_for_job(job).state == JobState.SUCCEEDED, job.error
    assert VirtualMachine.objects.filter(host=host).count() == 4
    page = client.get(f"/jobs/{job.pk}/")
    assert page.status_code == 200 and b"HV01" in page.content


def test_refresh_all_hosts_with_one_unreachable_ends_partly_failed_and_marks_it_stale(
    celery_worker_process: Any, sim_host: Any, registered_host: Any, operator: Any
) -> None:
    up, down = sim_host("healthy"), sim_host("fresh")
    hosts = [registered_host(up), registered_host(down)]
    down.down()
    client = Client()
    client.force_login(operator)

    job = job_of(client.post("/hosts/refresh/"))

    assert sorted(h.name for h in job.hosts.all()) == ["HV01", "HV02"]
    # Not green: one of the two hosts was not refreshed.
    assert wait_for_job(job).state == JobState.PARTLY_FAILED
    assert job.summary == "Refreshed 1 of 2 hosts; unreachable: HV02"
    assert job.error.startswith("Could not refresh HV02")
    assert HostInventory.objects.get(host=hosts[1]).stale and not HostInventory.objects.get(host=hosts[0]).stale
    log = "\n".join(JobLogLine.objects.filter(job=job).values_list("text", flat=True))
    assert "HV02" in log and "refused" in log and down.password not in log
