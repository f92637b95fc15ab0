"""The job pages: list with filters, one job, its log as text, cancel and re-run, each behind the right role."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from console.models import AuditEvent
from hosts.inventory.models import VirtualMachine
from hosts.models import Host
from jobs.kinds import KINDS, JobContext, RerunNeedsPreflight, job_kind
from jobs.models import Job, JobLogLine, JobState
from jobs.services import create_job, rerun_job
from tests.plugins.users import client_for

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


def test_an_errored_job_is_listed_by_its_own_filter_with_a_bad_badge(viewer_client: Client, operator: Any) -> None:
    errored = job_on(None, operator, JobState.ERRORED)
    job_on(None, operator, JobState.FAILED)
    response = viewer_client.get("/jobs/?state=errored")
    assert [job.pk for job in response.context["page"]] == [errored.pk]
    body = response.content.decode()
    assert '<option value="errored" selected>errored</option>' in body
    assert f'<span class="badge errored" data-job-state="{errored.pk}">errored</span>' in body
    assert ".badge.errored" in (settings.BASE_DIR / "static" / "console.css").read_text()  # coloured as bad
    page = viewer_client.get(f"/jobs/{errored.pk}/").content.decode()
    assert 'data-state="errored" data-ended="true"' in page


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


# Job kinds for the "Run again" stories: destructive ones ask for their confirmation again.
@job_kind("test_wipe", label="Wipe (test)", permission="run_destructive_jobs", refresh_inventory=False)
def wipe_without_page(ctx: JobContext) -> str:
    return "wiped"


def wipe_page(job: Job) -> str:
    return "/jobs/new/wipe/?" + urlencode(
        {"host": job.hosts.get().pk, "vm": job.vms, "mode": job.params.get("mode", "")}, True
    )


@job_kind(
    "test_wipe_paged", label="Wipe with a page (test)", permission="run_destructive_jobs", preflight_url=wipe_page
)
def wipe_with_page(ctx: JobContext) -> str:
    return "wiped"


@job_kind(
    "test_wipe_offsite",
    label="Wipe elsewhere (test)",
    permission="run_destructive_jobs",
    preflight_url=lambda job: "//evil.example/jobs/new/wipe/",
)
def wipe_offsite(ctx: JobContext) -> str:
    return "wiped"


def test_job_page_links_its_hosts_and_vms_and_reads_parameters_and_results(
    viewer_client: Client, operator: Any
) -> None:
    hv01, hv02 = make_host("HV01"), make_host("HV02")
    vm = VirtualMachine.objects.create(host=hv02, vm_id="b1", name="Win11-B")
    VirtualMachine.objects.create(host=make_host("HV03"), vm_id="a3", name="Win11-A")  # not a host of this job
    job = Job.objects.create(
        kind="inventory_refresh",
        state=JobState.SUCCEEDED,
        requested_by=operator,
        host_names=["HV01", "HV02", "OLD-HOST"],
        vms=["Win11-B", "Win11-A"],
        params={"guardian_name": "UntrustedGuardian", "signing_thumbprint": "116F00AA"},
        results={"failed_hosts": [], "removed_guardian": {"guardian_name": "UG", "metadata_xml": "PD94" * 200}},
    )
    job.hosts.add(hv01, hv02)
    body = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'<a href="/hosts/{hv01.pk}/">HV01</a>, <a href="/hosts/{hv02.pk}/">HV02</a>, OLD-HOST' in body
    assert f'<a href="/vms/{vm.pk}/">Win11-B</a>, Win11-A<' in body  # Win11-A is on no host of the job: plain
    assert "<dt>signing thumbprint</dt><dd>116F00AA</dd>" in body and "{&#x27;" not in body  # lines, not a repr
    assert "Not refreshed" not in body  # empty results are left out
    # Results are sentences: the removed guardian by its name, its kept metadata never dumped (nor its size).
    assert "Removed guardian 'UG' from" in body and "its public metadata is kept for the undo" in body
    assert "PD94" not in body and "metadata_xml" not in body
    assert 'id="next-action"' not in body


@pytest.mark.parametrize(
    ("recorded", "button"),
    [
        ({"next_url": "/jobs/new/reset/undo/?job=5"}, ("/jobs/new/reset/undo/?job=5", "Undo this reset…")),
        ({"next_url": "/jobs/new/x/", "next_label": "Import it…"}, ("/jobs/new/x/", "Import it…")),
        ({"next_url": "//evil.example/jobs/"}, None),
        ({"next_url": "https://evil.example/"}, None),
        ({"next_url": "/\\evil.example/"}, None),
        ({"next_url": "javascript:alert(1)"}, None),
        ({"next_url": ["/jobs/"]}, None),
    ],
)
def test_a_recorded_next_step_is_a_button_to_a_page_of_this_console(
    admin_client: Client, operator: Any, recorded: dict[str, Any], button: tuple[str, str] | None
) -> None:
    job = job_on(None, operator, kind="reset_guardian")
    Job.objects.filter(pk=job.pk).update(results={"removed_guardian": {"guardian_name": "UG"}, **recorded})
    body = admin_client.get(f"/jobs/{job.pk}/").content.decode()  # an admin: the undo of a reset is theirs
    assert "next url" not in body and "evil" not in body  # never listed among the results either
    if button is None:
        assert 'id="next-action"' not in body
    else:
        assert f'<a class="button" id="next-action" href="{escape(button[0])}">{button[1]}</a>' in body


def test_run_again_of_a_destructive_job_goes_back_to_its_preflight_page(
    admin_client: Client, operator_client: Client, admin: Any
) -> None:
    host = make_host("HV01")
    job = job_on(host, admin, JobState.SUCCEEDED, kind="test_wipe_paged")
    Job.objects.filter(pk=job.pk).update(vms=["Win11-A", "Win 11 B"], params={"mode": "all&more"})
    page_url = f"/jobs/new/wipe/?host={host.pk}&vm=Win11-A&vm=Win+11+B&mode=all%26more"
    body = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'id="rerun" href="{escape(page_url)}"' in body and 'action="/jobs/' + str(job.pk) + '/rerun/"' not in body
    response = admin_client.post(f"/jobs/{job.pk}/rerun/")  # an old form or a hand-made request: same place
    assert response.status_code == 302 and response["Location"] == page_url
    assert operator_client.post(f"/jobs/{job.pk}/rerun/").status_code == 403  # and only for those who may run it
    assert Job.objects.count() == 1  # nothing ran again without the page's confirmation
    with pytest.raises(RerunNeedsPreflight):
        rerun_job(job, admin)


@pytest.mark.parametrize("kind", ["test_wipe", "test_wipe_offsite"])
def test_a_destructive_job_without_a_usable_page_is_not_run_again_in_one_click(
    admin_client: Client, admin: Any, kind: str
) -> None:
    job = job_on(make_host("HV01"), admin, JobState.FAILED, kind=kind)
    body = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="rerun"' not in body and "evil" not in body
    response = admin_client.post(f"/jobs/{job.pk}/rerun/", follow=True)
    assert response.redirect_chain == [(f"/jobs/{job.pk}/", 302)]
    assert "is not run again in one click" in response.content.decode()
    assert Job.objects.count() == 1


def test_no_registered_destructive_kind_reruns_in_one_click(admin_client: Client, admin: Any) -> None:
    destructive = [kind for kind in KINDS.values() if kind.permission == "run_destructive_jobs"]
    assert {"test_wipe", "test_wipe_paged"} <= {kind.name for kind in destructive}
    host = make_host("HV01")
    for kind in destructive:
        job = job_on(host, admin, JobState.SUCCEEDED, kind=kind.name)
        response = admin_client.post(f"/jobs/{job.pk}/rerun/")
        assert response.status_code == 302 and not Job.objects.filter(rerun_of=job).exists(), kind.name


def test_a_silent_job_says_whether_any_worker_seems_to_run(viewer_client: Client, operator: Any) -> None:
    job = job_on(None, operator, JobState.RUNNING)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=45))
    body = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "its worker has probably stopped" in body and "no worker seems to be running" not in body
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    body = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "no worker seems to be running. Start one" in body and "marks this job lost at its start" in body


def test_the_job_list_offers_cancel_for_the_active_jobs_this_user_may_cancel(
    operator: Any, admin: Any, viewer_client: Client
) -> None:
    destructive = next(kind.name for kind in KINDS.values() if kind.destructive)
    queued, waiting, running = (job_on(None, admin, s) for s in (JobState.QUEUED, JobState.WAITING, JobState.RUNNING))
    job_on(None, operator, JobState.SUCCEEDED)
    cancelling = job_on(None, operator, JobState.RUNNING)
    Job.objects.filter(pk=cancelling.pk).update(cancel_requested=True)
    guarded = job_on(None, admin, JobState.QUEUED, kind=destructive)
    job_on(None, admin, JobState.QUEUED, kind="retired_kind")

    def offered(client: Client) -> set[int]:
        body = client.get("/jobs/").content.decode()
        return {job.pk for job in Job.objects.all() if f'data-job-cancel="{job.pk}"' in body}

    operator_client = Client(enforce_csrf_checks=True)
    operator_client.force_login(operator)
    assert offered(operator_client) == {queued.pk, waiting.pk, running.pk}  # anyone's job, with the kind's role
    assert offered(client_for(admin)) == {queued.pk, waiting.pk, running.pk, guarded.pk}
    assert offered(viewer_client) == set()

    # The row's form posts to the job page's cancel view, with its CSRF token.
    body = operator_client.get("/jobs/").content.decode()
    form = body[body.index(f'data-job-cancel="{queued.pk}"') :]
    token = form.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    assert f'action="/jobs/{queued.pk}/cancel/"' in body
    assert operator_client.post(f"/jobs/{queued.pk}/cancel/").status_code == 403  # no token: refused
    response = operator_client.post(f"/jobs/{queued.pk}/cancel/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == f"/jobs/{queued.pk}/"
    queued.refresh_from_db()
    assert queued.state == JobState.CANCELLED
    assert queued.pk not in offered(operator_client)
