"""Jobs run by a real Celery worker process on real Redis: durable ordered logs, per-host locks, cancel, clean
failures and errors, a SIGKILLed worker's job becoming lost, and a redelivered task that never repeats a destructive
step."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hosts.models import Host
from jobs.kinds import JobContext, JobFailed, job_kind
from jobs.models import HostLock, Job, JobLogLine, JobState, JobStep
from jobs.services import cancel_job, create_job
from jobs.tasks import run_job
from tests.plugins.jobs import log_integrity, wait_for_job, wait_for_line

WORKER_JOB_KINDS = True  # the worker process imports this module, so it knows the test-only kinds below

pytestmark = pytest.mark.worker

HOST_PASSWORD = "Sup3r-Secret-Passw0rd"


def wait_gate(ctx: JobContext, gate: str) -> None:
    """Block until the test creates the file `gate`, checking for cancel like a real step boundary does."""
    while not Path(gate).exists():
        ctx.check_cancelled()
        time.sleep(0.02)


@job_kind("test_count", label="Count lines (test)", mutating=False, refresh_inventory=False)
def count_lines(ctx: JobContext) -> str:
    for i in range(int(ctx.params.get("lines", 10))):
        ctx.log(f"line {i}", "info")
    return f"counted {ctx.params.get('lines', 10)}"


@job_kind("test_hold", label="Hold a host (test)", mutating=True, refresh_inventory=False)
def hold_host(ctx: JobContext) -> str:
    with ctx.step("Prepare") as step:
        if step.needed:
            ctx.log("prepared")
    if ctx.params.get("effects"):
        with ctx.step("Change the host", destructive=True) as step:
            if step.needed:
                if ctx.params.get("gate_inside"):
                    wait_gate(ctx, ctx.params["gate_inside"])
                with Path(ctx.params["effects"]).open("a") as effects:
                    effects.write("changed\n")
                ctx.log("host changed")
    if ctx.params.get("gate"):
        ctx.log("holding")
        wait_gate(ctx, ctx.params["gate"])
    with ctx.step("Finish") as step:
        pass
    return "held"


@job_kind("test_crash", label="Crash (test)", mutating=True, refresh_inventory=False)
def crash(ctx: JobContext) -> str:
    assert ctx.host is not None
    ctx.log(f"connecting with password={ctx.host.get_password()} as {ctx.host.username}")
    ctx.log(f"the host said: {ctx.host.get_password()}", "warning")
    if ctx.params.get("clean"):
        raise JobFailed("The guardian has no private key: escrow it first.")
    raise RuntimeError(f"boom in /work/main/.venv/lib/python3.11/site-packages/x/y.py using {ctx.host.get_password()}")


def texts(job: Job) -> list[str]:
    return list(JobLogLine.objects.filter(job=job).order_by("seq").values_list("text", flat=True))


@pytest.fixture
def hv01(db: None) -> Host:
    host = Host(name="HV01", address="127.0.0.1", port=45985, transport="http", auth="negotiate", username="labadmin")
    host.set_password(HOST_PASSWORD)
    host.save()
    return host


def test_worker_runs_a_job_and_saves_every_line_in_order(celery_worker_process: Any, operator: Any) -> None:
    job = create_job(operator, "test_count", params={"lines": 500})
    wait_for_job(job)
    assert job.state == JobState.SUCCEEDED, job.error
    rows = list(JobLogLine.objects.filter(job=job).order_by("seq").values_list("seq", "text"))
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
    assert [t for _, t in rows if t.startswith("line ")] == [f"line {i}" for i in range(500)]
    assert job.last_seq == len(rows) and job.summary == "counted 500"
    assert job.started_at and job.finished_at and job.heartbeat_at


def test_two_jobs_on_one_host_run_one_after_the_other(
    celery_worker_process: Any, operator: Any, hv01: Host, tmp_path: Path
) -> None:
    gate = tmp_path / "first-may-end"
    first = create_job(operator, "test_hold", hosts=[hv01], params={"gate": str(gate)})
    wait_for_line(first, "holding")
    second = create_job(operator, "test_hold", hosts=[hv01])
    wait_for_job(second, {JobState.WAITING})
    assert second.waiting_for == "HV01"
    assert HostLock.objects.get(host=hv01).job_id == first.pk
    gate.touch()
    wait_for_job(second, {JobState.SUCCEEDED})
    first.refresh_from_db()
    assert first.state == JobState.SUCCEEDED
    assert second.started_at is not None and first.finished_at is not None
    assert second.started_at >= first.finished_at
    assert not HostLock.objects.exists()


def test_a_waiting_job_cancelled_never_runs(
    celery_worker_process: Any, operator: Any, hv01: Host, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = create_job(operator, "test_hold", hosts=[hv01], params={"gate": str(gate)})
    wait_for_line(first, "holding")
    second = create_job(operator, "test_hold", hosts=[hv01])
    wait_for_job(second, {JobState.WAITING})
    cancel_job(second, operator)
    gate.touch()
    wait_for_job(first, {JobState.SUCCEEDED})
    time.sleep(0.5)  # give a wrongly woken second job the chance to run
    second.refresh_from_db()
    assert second.state == JobState.CANCELLED and second.started_at is None
    assert "prepared" not in texts(second)


def test_cancelling_a_running_job_stops_at_the_next_step_and_says_what_was_done(
    celery_worker_process: Any, operator: Any, hv01: Host, tmp_path: Path
) -> None:
    job = create_job(operator, "test_hold", hosts=[hv01], params={"gate": str(tmp_path / "never")})
    wait_for_line(job, "holding")
    cancel_job(job, operator)
    wait_for_job(job, timeout=10)
    assert job.state == JobState.CANCELLED
    assert job.summary == "Cancelled by otto; done before the cancel: Prepare."
    assert job.results["steps_done_before_cancel"] == ["Prepare"]
    assert not JobStep.objects.filter(job=job, key="Finish").exists()
    assert not HostLock.objects.exists()


def test_an_unexpected_error_ends_the_job_errored_with_a_clean_message_and_no_secret(
    celery_worker_process: Any, operator: Any, hv01: Host
) -> None:
    job = create_job(operator, "test_crash", hosts=[hv01])
    wait_for_job(job)
    assert job.state == JobState.ERRORED
    assert job.error.startswith("Unexpected error (RuntimeError): boom in [path] using ********")
    stored = "\n".join(texts(job)) + job.error + job.summary
    assert HOST_PASSWORD not in stored and "site-packages" not in stored
    assert "connecting with password=******** as labadmin" in stored
    assert not HostLock.objects.exists()


def test_a_job_failure_keeps_its_message(celery_worker_process: Any, operator: Any, hv01: Host) -> None:
    job = create_job(operator, "test_crash", hosts=[hv01], params={"clean": True})
    wait_for_job(job)
    assert job.state == JobState.FAILED
    assert job.error == "The guardian has no private key: escrow it first."


def test_a_killed_worker_leaves_a_lost_job_and_a_free_host(
    celery_worker_process: Any,
    operator: Any,
    hv01: Host,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    job = create_job(operator, "test_hold", hosts=[hv01], params={"gate": str(tmp_path / "never")})
    wait_for_line(job, "holding")
    celery_worker_process.kill()
    killed_at = time.monotonic()
    next_job = create_job(operator, "test_hold", hosts=[hv01])  # queued until some worker runs again
    celery_worker_process.pool.ensure()  # a new worker: reaps at start and every second
    wait_for_job(job, {JobState.LOST}, timeout=60)
    assert time.monotonic() - killed_at < 60
    assert "The worker running this job stopped" in job.error
    assert texts(job)[-1] == job.error  # the explanation is the log's last line
    wait_for_job(next_job, {JobState.SUCCEEDED}, timeout=20)  # the lock was released
    integrity = log_integrity(job)
    assert integrity["lost_lines"] == integrity["duplicated_lines"] == 0
    record_property("fault", {"case": "killed worker", **integrity})
    assert not HostLock.objects.exists()


def test_a_worker_with_every_slot_busy_still_marks_a_dead_workers_job_lost(
    celery_worker_process: Any, operator: Any, tmp_path: Path
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    gate = tmp_path / "gate"
    holders = []
    for number in range(4):  # the worker runs four jobs at once: all its slots are taken
        host = Host(name=f"HV1{number}", address="127.0.0.1", port=45990 + number, username="labadmin")
        host.set_password(HOST_PASSWORD)
        host.save()
        holders.append(create_job(operator, "test_hold", hosts=[host], params={"gate": str(gate)}))
    try:
        for job in holders:
            wait_for_line(job, "holding")
        stale = timezone.now() - timedelta(seconds=30)
        orphan = Job.objects.create(
            kind="test_hold", state=JobState.RUNNING, runner="another-machine:4242:gone", heartbeat_at=stale
        )
        wait_for_job(orphan, {JobState.LOST}, timeout=10)  # no free slot was needed to reap it
        assert "The worker running this job stopped" in orphan.error
    finally:
        gate.touch()
    for job in holders:
        wait_for_job(job, {JobState.SUCCEEDED})


@pytest.mark.parametrize("killed", ["after the destructive step", "inside the destructive step"])
def test_a_redelivered_task_never_repeats_a_destructive_step(
    celery_worker_process: Any, operator: Any, hv01: Host, tmp_path: Path, killed: str
) -> None:
    effects = tmp_path / "effects"
    gate, gate_inside = tmp_path / "gate", tmp_path / "gate-inside"
    params = {"effects": str(effects), "gate": str(gate)}
    if killed == "inside the destructive step":
        params["gate_inside"] = str(gate_inside)
    job = create_job(operator, "test_hold", hosts=[hv01], params=params)
    wait_for_line(job, "▶ Change the host" if "inside" in killed else "holding")
    celery_worker_process.kill()
    gate.touch()
    gate_inside.touch()
    # The broker hands the unacknowledged task to another worker: same message, same job.
    celery_worker_process.pool.start_another(CONSOLE_JOBS_LOST_AFTER_SECONDS="60")
    run_job.delay(job.pk)
    wait_for_job(job, timeout=30)
    log = texts(job)
    assert any("another worker resumes it" in line for line in log)
    if killed == "after the destructive step":
        assert job.state == JobState.SUCCEEDED, job.error
        assert effects.read_text() == "changed\n"  # once
        assert "Skipping “Change the host”: it was done before the worker restarted." in log
    else:
        assert job.state == JobState.FAILED
        assert "was interrupted when a worker stopped" in job.error
        assert not effects.exists()  # not run again by the second worker
    assert not HostLock.objects.exists()
