"""The job pages: list with filters, one job, its log as text, cancel and re-run, each behind the right role."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from console.models import AuditEvent
from hosts.models import Host
from jobs.models import Job, JobLogLine, JobState
from jobs.services import create_job

pytestmark = pytest.mark.django_db


def make_host(name: str) -> Host:
    """A registered host that no test talks to (these tests never reach a host)."""
    host = Host(
        name=name,
        address="127.0.0.1",
        port=40000 + Host.objects.count(),
        transport="http",
        auth="negotiate",
        username="labadmin",
    )
    host.set_password("Passw0rd!sim")
    host.save()
    return host


def job_on(host: Host | None, user: Any, state: str = JobState.SUCCEEDED, kind: str = "inventory_refresh") -> Job:
    job = Job.objects.create(
        kind=kind,
        state=state,
        requested_by=user,
        requested_by_name=user.username,
        host_names=[host.name] if host else [],
    )
    if host:
        job.hosts.add(host)
    return job


def test_job_list_filters_by_host_state_user_and_date(viewer_client: Client, operator: Any, admin: Any) -> None:
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    a = job_on(hv01, operator, JobState.SUCCEEDED)
    b = job_on(hv02, admin, JobState.FAILED)
    old = job_on(hv01, operator, JobState.LOST)
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))

    def listed(query: str) -> set[int]:
        response = viewer_client.get("/jobs/" + query)
        assert response.status_code == 200
        return {job.pk for job in response.context["page"]}

    assert listed("") == {a.pk, b.pk, old.pk}
    assert listed(f"?host={hv02.pk}") == {b.pk}
    assert listed("?state=failed") == {b.pk}
    assert listed(f"?user={operator.username}") == {a.pk, old.pk}
    assert listed("?kind=inventory_refresh&since=" + (timezone.now() - timedelta(days=1)).date().isoformat()) == {
        a.pk,
        b.pk,
    }
    # Nonsense filters are ignored, never a server error.
    assert listed("?host=abc&state=exploded&since=yesterday&page=-3") == {a.pk, b.pk, old.pk}


def test_job_page_shows_state_and_the_log_downloads_as_text(viewer_client: Client, operator: Any) -> None:
    job = job_on(make_host("HV01"), operator, JobState.FAILED)
    Job.objects.filter(pk=job.pk).update(error="Host unreachable: connection refused")
    now = timezone.now()
    JobLogLine.objects.bulk_create(
        [JobLogLine(job=job, seq=i, at=now, level="error" if i == 3 else "info", text=f"line {i}") for i in (1, 2, 3)]
    )
    page = viewer_client.get(f"/jobs/{job.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Host unreachable: connection refused" in body and f'data-joblog="{job.pk}"' in body
    assert "Cancel job" not in body and "Run again" not in body  # a viewer may watch, not act
    download: Any = viewer_client.get(f"/jobs/{job.pk}/log.txt")
    text = b"".join(download.streaming_content).decode()
    assert [line.split(None, 3)[-1] for line in text.splitlines()] == ["line 1", "line 2", "line 3"]
    assert "ERROR" in text.splitlines()[2]
    assert viewer_client.get("/jobs/999999/").status_code == 404


def test_people_without_a_role_see_no_jobs(operator: Any, nobody: Any) -> None:
    job = job_on(None, operator)
    client = Client()
    client.force_login(nobody)
    for url in ("/jobs/", f"/jobs/{job.pk}/", f"/jobs/{job.pk}/log.txt"):
        assert client.get(url).status_code == 403
    assert Client().get("/jobs/").status_code == 302  # anonymous → login


def test_a_viewer_cannot_cancel_or_rerun(viewer_client: Client, operator: Any) -> None:
    job = job_on(None, operator, JobState.QUEUED)
    assert viewer_client.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    assert viewer_client.post(f"/jobs/{job.pk}/rerun/").status_code == 403
    job.refresh_from_db()
    assert job.state == JobState.QUEUED


def test_cancelling_a_queued_job_ends_it_without_running(operator_client: Client, operator: Any) -> None:
    job = job_on(None, operator, JobState.QUEUED)
    response = operator_client.post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.started_at is None
    assert AuditEvent.objects.filter(action="job.cancel", object_id=str(job.pk)).exists()
    assert operator_client.get(f"/jobs/{job.pk}/cancel/").status_code == 405


def test_rerun_creates_a_new_job_with_the_same_targets(
    operator_client: Client, operator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    host = make_host("HV01")
    job = create_job(operator, "inventory_refresh", hosts=[host])
    Job.objects.filter(pk=job.pk).update(state=JobState.FAILED)
    response = operator_client.post(f"/jobs/{job.pk}/rerun/")
    new = Job.objects.exclude(pk=job.pk).get()
    assert response["Location"] == f"/jobs/{new.pk}/"
    assert new.rerun_of == job and list(new.hosts.all()) == [host] and new.state == JobState.QUEUED


def test_refresh_form_starts_an_inventory_job(operator_client: Client, viewer_client: Client) -> None:
    host = make_host("HV01")
    assert viewer_client.get("/jobs/refresh/").status_code == 403
    assert operator_client.post("/jobs/refresh/", {"hosts": []}).status_code == 200  # form error, not a job
    assert operator_client.post("/jobs/refresh/", {"hosts": ["x"]}).status_code == 200
    response = operator_client.post("/jobs/refresh/", {"hosts": [host.pk]})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/" and job.kind == "inventory_refresh"
    assert job.host_names == ["HV01"] and job.requested_by_name == "otto"


def test_job_parameters_refuse_secrets(operator: Any) -> None:
    with pytest.raises(ValueError, match="secrets"):
        create_job(operator, "inventory_refresh", params={"pfx_password": "x"})
    with pytest.raises(ValueError, match="secrets"):
        create_job(operator, "inventory_refresh", params={"nested": {"Password": "x"}})
    assert not Job.objects.exists()


def test_job_list_and_dashboard_partial_render_live_badges(viewer_client: Client, operator: Any) -> None:
    job = job_on(None, operator, JobState.WAITING)
    Job.objects.filter(pk=job.pk).update(waiting_for="HV01")
    body = viewer_client.get("/jobs/").content.decode()
    assert f'data-job-state="{job.pk}">waiting for HV01' in body and "data-joblist" in body
    from django.template import Context, Template

    html = Template("{% load jobs_tags %}{% recent_jobs 5 %}").render(Context({}))
    assert f'data-job-state="{job.pk}"' in html and "joblog.js" in html


def test_an_operator_cannot_cancel_a_job_whose_kind_needs_more(operator_client: Client, admin: Any) -> None:
    retired = job_on(None, admin, JobState.QUEUED, kind="retired_kind")
    assert operator_client.post(f"/jobs/{retired.pk}/cancel/").status_code == 403
    assert operator_client.post(f"/jobs/{retired.pk}/rerun/").status_code == 302  # explained, not a server error
    retired.refresh_from_db()
    assert retired.state == JobState.QUEUED


def test_a_running_job_without_heartbeat_is_flagged_on_its_page(viewer_client: Client, operator: Any) -> None:
    job = job_on(None, operator, JobState.RUNNING)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert "No heartbeat from the worker" in viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
    assert "No heartbeat from the worker" not in viewer_client.get(f"/jobs/{job.pk}/").content.decode()
