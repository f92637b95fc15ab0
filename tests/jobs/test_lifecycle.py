"""The lifecycle of a job on its model: enqueue, claim, wait, take over, heartbeat, finish, mark lost and cancel, each
one conditional change that only the right caller wins."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from console.models import AuditEvent
from hosts.models import Host
from jobs.models import ACTIVE_STATES, PENDING_STATES, TERMINAL_STATES, HostLock, Job, JobLogLine, JobState, WaitForHost

pytestmark = pytest.mark.django_db

RUNNER, OTHER_RUNNER = "console-1:101:aaaa", "console-2:202:bbbb"


def make_host(name: str) -> Host:
    """A registered host that no test talks to."""
    host = Host(name=name, address="127.0.0.1", port=41000 + Host.objects.count(), username="labadmin")
    host.set_password("Passw0rd!sim")
    host.save()
    return host


def job(state: str = JobState.QUEUED, **fields: Any) -> Job:
    return Job.objects.create(kind="inventory_refresh", state=state, **fields)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The jobs whose task was sent. Recorded, not sent: no worker runs in these tests, and a task left in the
    queue would be run by the next test's worker against whatever job then has that id."""
    sent: list[int] = []
    monkeypatch.setattr("jobs.models.send_run_task", sent.append)
    return sent


def test_the_states_are_named_once_and_every_state_is_pending_running_waiting_for_approval_or_ended() -> None:
    assert {JobState.QUEUED, JobState.WAITING} == PENDING_STATES
    assert PENDING_STATES | {JobState.RUNNING, JobState.AWAITING_APPROVAL} == ACTIVE_STATES
    assert set(JobState) == ACTIVE_STATES | TERMINAL_STATES and not ACTIVE_STATES & TERMINAL_STATES


def test_a_job_waiting_for_approval_sends_no_task_and_no_runner_claims_it(
    admin: Any, sent: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        waiting = Job.enqueue(admin, "reset_guardian", hosts=[make_host("HV01")], approval="a reset removes a guardian")
    assert sent == [] and waiting.state == JobState.AWAITING_APPROVAL
    assert not waiting.claim(RUNNER, [])  # a task that arrives anyway (sent by hand, replayed) runs nothing
    waiting.refresh_from_db()
    assert waiting.state == JobState.AWAITING_APPROVAL and waiting.started_at is None
    waiting.cancel(admin)  # the requester withdraws it
    assert waiting.state == JobState.CANCELLED and waiting.finished_at is not None


def test_a_new_job_is_queued_and_audited_and_its_task_sent_once_the_transaction_commits(
    operator: Any, sent: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    host = make_host("HV01")
    with django_capture_on_commit_callbacks(execute=True):
        new = Job.enqueue(operator, "inventory_refresh", hosts=[host], params={"scheduled": False})
        assert sent == []  # a worker must not look for a row that is not committed yet
    assert sent == [new.pk]
    new.refresh_from_db()
    assert new.state == JobState.QUEUED and new.enqueued_at is not None and new.requested_by_name == "otto"
    assert list(new.hosts.all()) == [host] and new.host_names == ["HV01"]
    assert AuditEvent.objects.filter(action="job.create", object_id=str(new.pk)).exists()


def test_one_runner_claims_a_pending_job_and_no_other_delivery_does() -> None:
    queued = job()
    duplicate = Job.objects.get(pk=queued.pk)  # a second delivery of the same task, read before the claim
    assert queued.claim(RUNNER, [])
    assert (queued.state, queued.runner, queued.waiting_for) == (JobState.RUNNING, RUNNER, "")
    assert queued.started_at is not None and queued.heartbeat_at is not None
    assert not duplicate.claim(OTHER_RUNNER, [])
    assert Job.objects.get(pk=queued.pk).runner == RUNNER
    assert not job(cancel_requested=True).claim(RUNNER, [])  # cancelled before it started: never runs


def test_a_claim_on_a_held_host_waits_for_it_and_keeps_no_lock() -> None:
    free, held = make_host("HV01"), make_host("HV02")
    holder = job(JobState.RUNNING, runner=OTHER_RUNNER)
    HostLock.objects.create(host=held, job=holder)
    waiting = job()
    with pytest.raises(WaitForHost) as wait:
        waiting.claim(RUNNER, [free, held])
    assert wait.value.host_name == "HV02"
    assert (waiting.state, waiting.waiting_for, waiting.runner) == (JobState.WAITING, "HV02", "")
    assert list(HostLock.objects.values_list("host__name", "job_id")) == [("HV02", holder.pk)]  # HV01 given back


def test_a_job_waits_only_while_it_is_pending() -> None:
    queued, running = job(), job(JobState.RUNNING, runner=RUNNER)
    queued.wait_for("HV01")
    running.wait_for("HV01")
    assert (queued.state, queued.waiting_for) == (JobState.WAITING, "HV01")
    assert Job.objects.get(pk=running.pk).state == JobState.RUNNING


def test_only_the_owner_finishes_a_job_and_only_in_an_end_state(sent: list[int]) -> None:
    host = make_host("HV01")
    running = job()
    assert running.claim(RUNNER, [host])
    next_in_line = job(JobState.WAITING, waiting_for="HV01")
    next_in_line.hosts.add(host)
    with pytest.raises(ValueError, match="running"):
        running.finish(RUNNER, JobState.RUNNING)
    assert not running.finish(OTHER_RUNNER, JobState.SUCCEEDED)
    assert Job.objects.get(pk=running.pk).state == JobState.RUNNING and HostLock.objects.filter(job=running).exists()
    assert sent == []

    running.results["guardian"] = "UntrustedGuardian"
    assert running.finish(RUNNER, JobState.ERRORED, error="Unexpected error (KeyError): 'vm'")
    assert (running.state, running.error, running.results) == (
        JobState.ERRORED,
        "Unexpected error (KeyError): 'vm'",
        {"guardian": "UntrustedGuardian"},
    )
    assert running.finished_at is not None and not HostLock.objects.exists()
    assert AuditEvent.objects.filter(action="job.errored", object_id=str(running.pk)).exists()
    assert sent == [next_in_line.pk]  # woken at once rather than at its next retry
    assert not running.finish(RUNNER, JobState.SUCCEEDED)  # ended: never ended twice


def test_a_redelivered_task_takes_over_only_from_the_runner_it_saw() -> None:
    running = job(JobState.RUNNING, runner=RUNNER)
    seen_by_another = Job.objects.get(pk=running.pk)
    assert running.take_over(OTHER_RUNNER)
    assert running.runner == OTHER_RUNNER
    assert not seen_by_another.take_over("console-3:303:cccc")  # the runner it saw is no longer the job's
    assert not job().take_over(OTHER_RUNNER)  # never started: claimed, not taken over


def test_only_the_owner_heartbeats() -> None:
    running = job(JobState.RUNNING, runner=RUNNER)
    assert running.heartbeat(RUNNER) and not running.heartbeat(OTHER_RUNNER)
    assert Job.objects.get(pk=running.pk).heartbeat_at is not None


def test_a_job_is_lost_only_while_the_runner_that_stopped_still_has_it(sent: list[int]) -> None:
    stale = timezone.now() - timedelta(minutes=5)
    running = job(JobState.RUNNING, runner=RUNNER, heartbeat_at=stale, last_seq=7)
    seen_by_reaper = Job.objects.get(pk=running.pk)
    assert running.take_over(OTHER_RUNNER)  # a redelivered task was quicker than the reaper
    assert not seen_by_reaper.mark_lost()
    assert running.mark_lost()
    assert running.state == JobState.LOST and running.error.startswith("The worker running this job stopped")
    assert list(JobLogLine.objects.filter(job=running).values_list("seq", "level")) == [(8, "error")]
    assert running.last_seq == 8
    assert AuditEvent.objects.filter(action="job.lost", object_id=str(running.pk)).count() == 1


def test_a_job_that_never_started_ends_once_and_only_in_an_end_state() -> None:
    queued = job()
    with pytest.raises(ValueError, match="waiting"):
        queued.end_unstarted(JobState.WAITING)
    queued.end_unstarted(JobState.FAILED, error="Unknown job kind")
    queued.end_unstarted(JobState.CANCELLED, summary="Cancelled before it started.")
    assert (queued.state, queued.error, queued.summary) == (JobState.FAILED, "Unknown job kind", "")


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.WAITING])
def test_cancelling_a_pending_job_ends_it_at_once(operator: Any, state: str) -> None:
    pending = job(state, waiting_for="HV01" if state == JobState.WAITING else "")
    pending.cancel(operator)
    assert (pending.state, pending.waiting_for, pending.cancelled_by_name) == (JobState.CANCELLED, "", "otto")
    assert pending.summary == "Cancelled by otto before it started." and pending.finished_at is not None
    assert AuditEvent.objects.get(action="job.cancel").detail["state"] == "cancelled"


def test_cancelling_a_running_job_asks_its_runner_and_an_ended_job_stays_as_it_was(operator: Any) -> None:
    running, ended = job(JobState.RUNNING, runner=RUNNER), job(JobState.SUCCEEDED)
    running.cancel(operator)
    ended.cancel(operator)
    assert (running.state, running.cancel_requested, running.cancelled_by_name) == (JobState.RUNNING, True, "otto")
    assert (ended.state, ended.cancel_requested) == (JobState.SUCCEEDED, False)


def test_the_queries_of_the_lifecycle() -> None:
    now = timezone.now()
    forgotten = job(enqueued_at=now - timedelta(minutes=10))
    recent = job(JobState.WAITING, enqueued_at=now)
    running = job(JobState.RUNNING, runner=RUNNER)
    job(JobState.SUCCEEDED, enqueued_at=now - timedelta(minutes=10))
    assert set(Job.objects.pending()) == {forgotten, recent}
    assert set(Job.objects.active()) == {forgotten, recent, running}
    assert list(Job.objects.running()) == [running]
    assert list(Job.objects.forgotten(now - timedelta(minutes=5))) == [forgotten]
