"""Notifications sent by a real Celery worker process: a job that fails in the worker, and one its reaper declares
lost, reach a subscriber's mail at a real SMTP server and a webhook receiver that checks its signature; a receiver
that never answers is tried again after a growing back-off and then logged as failed, with a clear error; a delivery
whose task never reached the queue is sent after the periodic sweep."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.utils import timezone

from console.notifications.models import (
    Delivery,
    DeliveryAttempt,
    Destination,
    EventKind,
    Notification,
    Subscription,
)
from console.notifications.tasks import FORGOTTEN_AFTER, sweep
from hosts.models import Host
from jobs.kinds import JobContext, JobFailed, job_kind
from jobs.models import Job, JobState
from jobs.services import create_job
from tests.plugins.jobs import wait_for_job
from tests.plugins.notifications import (
    ATTEMPTS,
    RETRY_SECONDS,
    TIMEOUT_SECONDS,
    SmtpServer,
    WebhookReceiver,
    body_of,
    valid_signature,
    wait_until,
)
from tests.plugins.worker import WorkerProcess

WORKER_JOB_KINDS = True  # the worker process imports this module, so it knows the test-only kind below

pytestmark = pytest.mark.worker

SECRET = "whsec-Worker-Signing-5m1p0"  # noqa: S105


@job_kind("test_notify_fail", label="Fail for notifications (test)", mutating=False, refresh_inventory=False)
def fail(ctx: JobContext) -> str:
    raise JobFailed("HV01 holds no private key for this guardian: escrow it from the host that has it.")


def team_webhook(url: str) -> Destination:
    destination = Destination(name="ops-hook", type=Destination.WEBHOOK, kinds=[EventKind.JOB_FAILED])
    destination.set_url(url)
    destination.set_secret(SECRET)
    destination.save()
    return destination


@pytest.fixture
def hv01(transactional_db: None) -> Host:
    host = Host(name="HV01", address="127.0.0.1", port=9, transport="http", auth="negotiate", username="labadmin")
    host.set_password("unused-Passw0rd")
    host.save()
    return host


def test_a_job_failing_in_the_worker_reaches_the_mail_server_and_the_signed_webhook(
    notifying_worker: WorkerProcess,
    smtp_server: SmtpServer,
    webhook_receiver: WebhookReceiver,
    operator: Any,
    hv01: Host,
) -> None:
    operator.email = "otto@lab.example"
    operator.save()
    Subscription.objects.create(user=operator, kinds=[EventKind.JOB_FAILED])
    team_webhook(webhook_receiver.url("/guardian"))

    job = wait_for_job(create_job(operator, "test_notify_fail", hosts=[hv01]))
    assert job.state == JobState.FAILED

    mail = smtp_server.wait_for(1)[0]
    assert smtp_server.recipients == [["otto@lab.example"]]
    assert mail["Subject"] == f"[Guardian Console] Job #{job.pk} Fail for notifications (test) on HV01 failed"
    assert "escrow it from the host that has it" in body_of(mail)
    request = webhook_receiver.wait_for(1)[0]
    assert valid_signature(request, SECRET)
    assert json.loads(request.body)["subject"] == f"Job #{job.pk} Fail for notifications (test) on HV01 failed"
    wait_until(lambda: DeliveryAttempt.objects.filter(outcome="sent").count() == 2, 10, "two sends logged")

    # A job whose worker died (its runner is gone, its heartbeat old): the worker's reaper declares it lost.
    stale = timezone.now() - dt.timedelta(seconds=30)
    orphan = Job.objects.create(
        kind="test_notify_fail", host_names=["HV01"], state=JobState.RUNNING, runner="gone:4242:x", heartbeat_at=stale
    )
    wait_for_job(orphan, {JobState.LOST}, timeout=15)
    lost = smtp_server.wait_for(2)[1]
    assert lost["Subject"] == f"[Guardian Console] Job #{orphan.pk} Fail for notifications (test) on HV01 was lost"
    assert "The worker running this job stopped" in body_of(lost)
    assert valid_signature(webhook_receiver.wait_for(2)[1], SECRET)


def test_a_webhook_that_never_answers_is_retried_with_back_off_then_logged_as_failed(
    notifying_worker: WorkerProcess, webhook_receiver: WebhookReceiver, operator: Any, hv01: Host
) -> None:
    webhook_receiver.answer(200, delay=TIMEOUT_SECONDS + 2)
    team_webhook(webhook_receiver.url())

    wait_for_job(create_job(operator, "test_notify_fail", hosts=[hv01]))

    wait_until(lambda: Delivery.objects.filter(state="failed").exists(), 30, "the delivery failing")
    attempts = list(DeliveryAttempt.objects.order_by("pk"))
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "retrying"), (2, "retrying"), (ATTEMPTS, "failed")]
    where = f"http://127.0.0.1:{webhook_receiver.server.server_port}"
    assert {a.error for a in attempts} == {f"{where} gave no answer within {TIMEOUT_SECONDS:g} s"}
    assert len(webhook_receiver.requests) == ATTEMPTS
    # Each wait is the timeout plus a back-off that doubles: 0.2 s, then 0.4 s.
    gaps = [later.at - earlier.at for earlier, later in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0].total_seconds() >= TIMEOUT_SECONDS + RETRY_SECONDS
    assert gaps[1].total_seconds() >= TIMEOUT_SECONDS + 2 * RETRY_SECONDS


def test_a_delivery_whose_task_was_never_sent_is_queued_again_by_the_sweep(
    notifying_worker: WorkerProcess, webhook_receiver: WebhookReceiver
) -> None:
    """As when the task queue was down at the commit: the delivery waits, never tried, until the periodic sweep."""
    destination = team_webhook(webhook_receiver.url())
    then = timezone.now() - FORGOTTEN_AFTER - dt.timedelta(seconds=1)
    notification = Notification.objects.create(kind=EventKind.JOB_FAILED, subject="Job #7 failed", body="…")
    Notification.objects.filter(pk=notification.pk).update(created_at=then)
    Delivery.objects.create(notification=notification, destination=destination)

    sweep.apply()

    request = webhook_receiver.wait_for(1)[0]
    assert valid_signature(request, SECRET) and json.loads(request.body)["subject"] == "Job #7 failed"
    wait_until(lambda: Delivery.objects.filter(state="sent").exists(), 10, "the delivery marked sent")
