"""The runner in-process: reaping silent jobs, unknown kinds, how a kind's end decides the job's (succeeded, failed,
errored), redaction and line splitting, the periodic refresh, and who may create which job."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from console.models import AuditEvent
from hosts.models import Host
from hosts.remoting import RemotingError, Secret
from hosts.remoting.catalog.guardians import ImportPfx
from hosts.remoting.errors import ConnectionRefused
from jobs.kinds import JobContext, JobFailed, UnknownJobKind, job_kind
from jobs.models import HostLock, Job, JobLogLine, JobState
from jobs.runner import execute, reap, requeue_forgotten
from jobs.services import create_job
from jobs.tasks import refresh_all_inventory
from tests.plugins.jobs import wait_for_job

HOST_PASSWORD = "Sup3r-Secret-Passw0rd"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


@job_kind("test_leaky", label="Leaky output (test)", mutating=True, refresh_inventory=False)
def leaky(ctx: JobContext) -> str:
    ctx.log("first\nsecond\n")
    ctx.log(f"Enter-PSSession -Password {HOST_PASSWORD} -Name x", "verbose")
    ctx.log(f"pfx_password: 'open sesame' and the key {PRIVATE_KEY}", "debug")
    ctx.log("blob " + "QUJD" * 100, "shout")
    return "done"


PFX_PASSWORD = "Generated-Pfx-Passw0rd-7f3a9c"


@job_kind("test_sends_a_secret", label="Sends a secret (test)", mutating=False, refresh_inventory=False)
def sends_a_secret(ctx: JobContext) -> str:
    """Sends PFX_PASSWORD to the host as a SecureString, then lets it show up everywhere a job writes text."""
    assert ctx.host is not None
    try:
        ctx.session(ctx.host).run(ImportPfx(r"C:\Windows\Temp\missing.pfx", Secret(PFX_PASSWORD)))
    except RemotingError as exc:
        ctx.log(f"the host refused: {exc}", "warning")
    ctx.log(f"a careless library printed {PFX_PASSWORD} in its output", "verbose")
    ending = ctx.params["ending"]
    if ending == "failed":
        raise JobFailed(f"the import with {PFX_PASSWORD} failed")
    if ending == "crash":
        raise RuntimeError(f"the import with {PFX_PASSWORD} crashed")
    return f"imported with {PFX_PASSWORD}"


@job_kind("test_ends", label="Ends as told (test)", mutating=False, refresh_inventory=False)
def ends_as_told(ctx: JobContext) -> str:
    ending = ctx.params["ending"]
    if ending == "explained":
        raise JobFailed("The guardian has no private key: escrow it first.")
    if ending == "host refused":
        raise ConnectionRefused("HV01 refused the connection on port 5985: is WinRM listening?")
    raise RuntimeError("no guardian in /work/main/.venv/lib/python3.11/site-packages/x/y.py with password=hunter2")


def make_host(name: str = "HV01", port: int = 45986) -> Host:
    host = Host(name=name, address="127.0.0.1", port=port, transport="http", auth="negotiate", username="labadmin")
    host.set_password(HOST_PASSWORD)
    host.save()
    return host


@pytest.mark.django_db(transaction=True)
def test_reaper_marks_silent_running_jobs_lost_and_frees_their_hosts(settings: Any) -> None:
    settings.JOBS_LOST_AFTER_SECONDS = 30
    silent_host, busy_host = make_host("HV01", 45986), make_host("HV02", 45987)
    now = timezone.now()
    silent = Job.objects.create(
        kind="test_leaky",
        state=JobState.RUNNING,
        heartbeat_at=now - timedelta(seconds=31),
        runner="elsewhere:1:x",
        last_seq=2,
    )
    busy = Job.objects.create(kind="test_leaky", state=JobState.RUNNING, heartbeat_at=now, runner="elsewhere:2:y")
    HostLock.objects.create(host=silent_host, job=silent)
    HostLock.objects.create(host=busy_host, job=busy)

    assert reap() == [silent.pk]
    silent.refresh_from_db()
    busy.refresh_from_db()
    assert silent.state == JobState.LOST and silent.finished_at is not None
    assert silent.error.startswith("The worker running this job stopped (last heartbeat")
    last = JobLogLine.objects.get(job=silent)
    assert (last.seq, last.level, last.text) == (3, "error", silent.error)
    assert busy.state == JobState.RUNNING
    assert list(HostLock.objects.values_list("job_id", flat=True)) == [busy.pk]
    assert AuditEvent.objects.filter(action="job.lost", object_id=str(silent.pk)).exists()
    assert reap() == []  # nothing twice


@pytest.mark.django_db(transaction=True)
def test_a_job_of_an_unknown_kind_fails_with_a_message() -> None:
    job = Job.objects.create(kind="retired_kind")
    assert execute(job.pk) == "skipped"
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.error == "Unknown job kind “retired_kind”: this console cannot run it."


@pytest.mark.django_db(transaction=True)
def test_log_output_is_split_into_lines_and_secrets_never_stored(operator: Any) -> None:
    host = make_host()
    # Created directly, not through create_job: no Celery task, this test runs the job in-process.
    job = Job.objects.create(kind="test_leaky", host_names=["HV01"], requested_by=operator)
    job.hosts.set([host])
    assert execute(job.pk) == JobState.SUCCEEDED
    rows = list(JobLogLine.objects.filter(job=job).order_by("seq").values_list("seq", "level", "text"))
    texts = [text for _, _, text in rows]
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
    assert texts[1:3] == ["first", "second"]
    assert "Enter-PSSession -Password ******** -Name x" in texts
    assert "pfx_password: ******** and the key [private key removed]" in texts
    assert ("info", "blob [binary data removed]") in [(level, text) for _, level, text in rows]  # unknown level → info
    everything = "\n".join(texts)
    assert HOST_PASSWORD not in everything and "open sesame" not in everything and "MIIE" not in everything
    assert not HostLock.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("ending", "state", "error"),
    [
        ("unexpected", "errored", "Unexpected error (RuntimeError): no guardian in [path] with password=********"),
        ("explained", "failed", "The guardian has no private key: escrow it first."),
        # A host's error is explained too: it names what to check.
        ("host refused", "failed", "HV01 refused the connection on port 5985: is WinRM listening?"),
    ],
)
def test_an_unexpected_exception_ends_the_job_errored_and_an_explained_failure_failed(
    ending: str, state: str, error: str
) -> None:
    job = Job.objects.create(kind="test_ends", params={"ending": ending})
    assert execute(job.pk) == state
    job.refresh_from_db()
    assert (job.state, job.error, job.summary) == (state, error, "")
    assert job.is_finished and job.finished_at is not None
    last = JobLogLine.objects.filter(job=job).order_by("seq").last()
    assert last is not None and (last.level, last.text) == ("error", f"Job {state}")
    assert AuditEvent.objects.filter(action=f"job.{state}", object_id=str(job.pk)).exists()


@pytest.mark.django_db
def test_the_periodic_refresh_starts_one_job_for_all_hosts() -> None:
    make_host("HV02", 45987)
    make_host("HV01", 45986)
    job_id = refresh_all_inventory()
    assert job_id is not None
    job = Job.objects.get(pk=job_id)
    assert job.kind == "inventory_refresh" and job.host_names == ["HV01", "HV02"]
    assert job.requested_by is None and job.requested_by_name == "console"
    assert refresh_all_inventory() is None  # one already queued: not another


@pytest.mark.django_db
def test_the_periodic_refresh_does_nothing_without_hosts() -> None:
    assert refresh_all_inventory() is None
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_job_needs_its_kind_permission(viewer: Any, nobody: Any, operator: Any) -> None:
    for user in (viewer, nobody):
        with pytest.raises(PermissionDenied):
            create_job(user, "inventory_refresh")
    with pytest.raises(UnknownJobKind):
        create_job(operator, "no_such_kind")
    job = create_job(operator, "inventory_refresh")
    assert AuditEvent.objects.filter(action="job.create", object_id=str(job.pk), username="otto").exists()


@pytest.mark.worker
def test_a_job_whose_task_was_lost_runs_once_the_reaper_sends_it_again(
    settings: Any, celery_worker_process: Any
) -> None:
    # The worker's own reaper sends a job again after the default 300 s, so it leaves these two alone: only the call
    # below can send the forgotten one (else the two race for it on a busy machine).
    settings.JOBS_REQUEUE_SECONDS = 100
    now = timezone.now()
    # Created without a task, as if its message had vanished with a Redis restart.
    forgotten = Job.objects.create(kind="inventory_refresh", enqueued_at=now - timedelta(seconds=101))
    recent = Job.objects.create(kind="inventory_refresh", enqueued_at=now - timedelta(seconds=10))
    assert requeue_forgotten(now) == [forgotten.pk]
    wait_for_job(forgotten, timeout=20)
    lines = list(JobLogLine.objects.filter(job=forgotten).values_list("text", flat=True))
    assert forgotten.state == JobState.FAILED, lines
    assert forgotten.error.startswith("No host to refresh")
    assert requeue_forgotten(timezone.now()) == []
    Job.objects.filter(pk=recent.pk).update(state=JobState.CANCELLED)  # never sent: let the worker fixture settle


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["succeeded", "failed", "crash"])
def test_a_secret_sent_to_a_host_is_masked_in_the_log_error_and_summary_of_its_job(
    ending: str, sim_host: Any, registered_host: Any, operator: Any
) -> None:
    host = registered_host(sim_host("healthy"))
    job = Job.objects.create(
        kind="test_sends_a_secret", host_names=[host.name], requested_by=operator, params={"ending": ending}
    )
    job.hosts.set([host])
    ends = {"succeeded": JobState.SUCCEEDED, "failed": JobState.FAILED, "crash": JobState.ERRORED}
    assert execute(job.pk) == ends[ending]
    job.refresh_from_db()
    texts = list(JobLogLine.objects.filter(job=job).order_by("seq").values_list("text", flat=True))
    assert any(text.startswith("→ Import-PfxCertificate") for text in texts)  # it was really sent
    assert "a careless library printed ******** in its output" in texts
    shown = {"succeeded": job.summary, "failed": job.error, "crash": job.error}[ending]
    assert "with ********" in shown
    stored = "\n".join(texts) + job.error + job.summary
    assert PFX_PASSWORD not in stored
