"""A job whose task cannot be sent (the task queue, Redis, unreachable) says so on its page — "waiting for the task
queue" — and is sent again by the reaper of every worker, every JOBS_REAPER_SECONDS, once the queue answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from celery import Celery
from django.conf import settings
from django.test import Client
from django.urls import reverse

from console.celery import app as console_app
from jobs.models import TASK_QUEUE, Job, JobState
from jobs.models import send_run_task as real_send_run_task
from jobs.runner import reap, requeue_unsent
from jobs.services import create_job
from tests.plugins.jobs import log_integrity
from tests.plugins.worker import free_port


@contextmanager
def task_queue_unreachable() -> Iterator[str]:
    """This thread's Celery app sends to a broker URL whose port nobody listens on (the real Redis stays up)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    closed = Celery("console", set_as_current=False, broker=url)
    closed.config_from_object("django.conf:settings", namespace="CELERY")
    assert closed.conf.broker_url == url
    closed.set_current()
    try:
        yield url
    finally:
        console_app.set_current()
        closed.close()


def queue_back(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on tasks are sent, and recorded rather than sent: no worker runs in the tests that use it, and a task
    left in the queue would be run by a later test's worker against whatever job then has that id."""
    sent: list[int] = []
    monkeypatch.setattr("jobs.models.send_run_task", sent.append)
    return sent


@pytest.mark.django_db
def test_a_job_whose_task_cannot_be_sent_waits_for_the_task_queue_and_its_page_says_so(
    operator: Any, viewer: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with task_queue_unreachable(), django_capture_on_commit_callbacks(execute=True):
        job = create_job(operator, "inventory_refresh")  # the task is sent on commit, and that fails
    job.refresh_from_db()
    assert (job.state, job.waiting_for, job.enqueued_at) == (JobState.WAITING, TASK_QUEUE, None)
    assert job.unsent_since is not None
    client = Client()
    client.force_login(viewer)
    page = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "waiting for the task queue" in page  # the state badge, also on the job list
    assert "Waiting for the task queue: the task of this job could not be sent" in page
    assert "waiting for the task queue" in client.get(reverse("jobs:list")).content.decode()

    since = job.unsent_since
    with task_queue_unreachable():
        assert requeue_unsent() == []  # the reaper tries again: still down, still waiting, still the same since
    job.refresh_from_db()
    assert (job.state, job.unsent_since) == (JobState.WAITING, since)

    sent = queue_back(monkeypatch)
    reap()  # what every worker's reaper thread runs every JOBS_REAPER_SECONDS
    assert sent == [job.pk]
    job.refresh_from_db()
    assert (job.state, job.waiting_for, job.unsent_since) == (JobState.QUEUED, "", None)
    assert job.enqueued_at is not None
    assert "task queue" not in client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    reap()
    assert sent == [job.pk]  # sent once: a job whose task went out is no longer "unsent"


@pytest.mark.django_db
def test_the_reaper_stops_at_the_first_job_it_still_cannot_send(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [Job.objects.create(kind="inventory_refresh") for _ in range(3)]
    tried: list[int] = []

    def send_run_task(job_id: int) -> None:
        tried.append(job_id)
        real_send_run_task(job_id)

    monkeypatch.setattr("jobs.models.send_run_task", send_run_task)
    with task_queue_unreachable():
        for job in jobs:
            assert not job.send()
        tried.clear()
        assert requeue_unsent() == []
    assert tried == [jobs[0].pk]  # one attempt per round while the queue is away, not one per job
    sent = queue_back(monkeypatch)
    assert requeue_unsent() == [job.pk for job in jobs]  # oldest first, once the queue answers
    assert sent == [job.pk for job in jobs]


def test_jobs_are_sent_again_well_within_30_seconds_of_the_queue_coming_back() -> None:
    assert settings.JOBS_REAPER_SECONDS <= 15


@pytest.mark.worker
def test_a_job_created_while_the_task_queue_was_unreachable_runs_once_it_answers(
    celery_worker_process: Any, operator: Any, record_property: Callable[[str, object], None]
) -> None:
    """This process never reaches the queue: the task the worker runs is the one its reaper sent once the queue
    answered (for the worker, it is back; WORKER_TIMINGS makes its reaper run every second)."""
    with task_queue_unreachable():
        job = create_job(operator, "inventory_refresh")  # no host: it runs, and fails at once, saying so
        deadline = time.monotonic() + 30
        while Job.objects.get(pk=job.pk).state not in (JobState.FAILED, JobState.SUCCEEDED):
            assert time.monotonic() < deadline, "the job was not sent again within 30 s"
            time.sleep(0.1)
    job.refresh_from_db()
    assert job.error.startswith("No host to refresh") and job.unsent_since is None and job.enqueued_at is not None
    integrity = log_integrity(job)
    assert integrity["lost_lines"] == integrity["duplicated_lines"] == 0
    record_property("fault", {"case": "task queue unreachable", **integrity})
