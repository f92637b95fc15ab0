"""Notifications, told to real receivers on loopback: an SMTP server (aiosmtpd), a webhook receiver (http.server)
checking the HMAC signature, and apprise's json:// to that receiver. The Celery tasks run in this process (their
`apply`, retries included); tests/console/test_notifications_worker.py runs them in a real worker.

Stories: who is told of what (subscriptions, team destinations, roles, a rolled-back change tells nobody, delivery
waits for the commit); a failed job, a lost one, an approval waiting, new risks and expiring certificates put in
words; a webhook's signature, a refusal that is not retried, an unreachable chat service whose error names no token;
the digest; and the pages: one's own subscription, the admin's destinations whose URL and secret no page shows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery import current_app
from django.db import transaction
from django.test import Client
from django.utils import timezone

from console.models import AuditEvent
from console.notifications.events import DELIVER_TASK, notify
from console.notifications.models import (
    Delivery,
    DeliveryAttempt,
    Destination,
    EventKind,
    ExpiryNotice,
    Notification,
    Subscription,
)
from console.notifications.tasks import deliver, send_digests, sweep
from hosts.inventory.models import Certificate, Guardian, HostInventory, VirtualMachine
from hosts.models import Host
from jobs.models import Job, JobState
from tests.plugins.notifications import SmtpServer, WebhookReceiver, body_of, valid_signature
from tests.plugins.users import client_for, make_user

SECRET = "whsec-Notify-Signing-9f3k2"  # noqa: S105
TOKEN = "xoxb-Chat-Token-7h2q9"  # noqa: S105 - the kind of token an apprise URL carries


def subscribe(user: Any, kinds: list[str], mode: str = Subscription.IMMEDIATE, email: str = "") -> Subscription:
    user.email = email or f"{user.username}@lab.example"
    user.save()
    return Subscription.objects.create(user=user, kinds=kinds, mode=mode)


def webhook(url: str, kinds: list[str] | None = None, name: str = "ops-hook") -> Destination:
    destination = Destination(name=name, type=Destination.WEBHOOK, kinds=kinds or [EventKind.JOB_FAILED])
    destination.set_url(url)
    destination.set_secret(SECRET)
    destination.save()
    return destination


def apprise_to(url: str, kinds: list[str] | None = None) -> Destination:
    destination = Destination(name="team-chat", type=Destination.APPRISE, kinds=kinds or [EventKind.JOB_FAILED])
    destination.set_url(url)
    destination.save()
    return destination


def deliver_all() -> list[str]:
    """Run the delivery task of every immediate delivery still pending, as a worker would (retries included)."""
    pending = Delivery.objects.filter(digest=False, state="pending").order_by("pk").values_list("pk", flat=True)
    outcomes = []
    for delivery_id in list(pending):
        deliver.apply(args=(delivery_id,))
        outcomes.append(Delivery.objects.get(pk=delivery_id).state)
    return outcomes


def failed_job(host: Host | None = None, state: str = JobState.FAILED) -> Job:
    """A job that ran and ended badly, through the lifecycle (which audits the end)."""
    job = Job.objects.create(kind="inventory_refresh", host_names=[host.name] if host else [], state=JobState.RUNNING)
    Job.objects.filter(pk=job.pk).update(runner="test:1:token")
    job.refresh_from_db()
    job.finish("test:1:token", state, error="HV02 refused the connection: check its WinRM listener.")
    return job


@pytest.fixture
def host(db: None) -> Host:
    host = Host(name="HV02", address="127.0.0.1", port=9, transport="http", auth="negotiate", username="labadmin")
    host.set_password("unused-Passw0rd")
    host.save()
    return host


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks queued with .delay() run at once in this process (the digest round queues one task per user)."""
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = False


# -- who is told of what --------------------------------------------------------------------------------------------


def test_only_subscribers_of_the_kind_and_enabled_destinations_that_take_it_are_owed_a_delivery(
    viewer: Any, operator: Any, admin: Any, nobody: Any
) -> None:
    subscribe(viewer, [EventKind.JOB_FAILED])
    subscribe(operator, [EventKind.RISK])
    subscribe(nobody, [EventKind.JOB_FAILED])  # no role: may not read the console, so is not told
    admin.is_active = False
    admin.save()
    subscribe(admin, [EventKind.JOB_FAILED])  # deactivated
    takes = webhook("http://127.0.0.1:9/a", [EventKind.JOB_FAILED], name="takes")
    webhook("http://127.0.0.1:9/b", [EventKind.RISK], name="other-kind")
    off = webhook("http://127.0.0.1:9/c", [EventKind.JOB_FAILED], name="off")
    off.enabled = False
    off.save()

    notification = notify(EventKind.JOB_FAILED, "Job #1 failed", "It failed.", "/jobs/1/")

    assert notification is not None
    owed = Delivery.objects.filter(notification=notification)
    assert {(d.user_id, d.destination_id) for d in owed} == {(viewer.pk, None), (None, takes.pk)}
    assert notify(EventKind.CERT_EXPIRING, "nobody asked", "…") is None
    assert not Notification.objects.filter(subject="nobody asked").exists()


def test_delivery_waits_for_the_commit_and_a_change_that_rolls_back_tells_nobody(
    viewer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscribe(viewer, [EventKind.JOB_FAILED])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notify(EventKind.JOB_FAILED, "told", "…")
    assert len(callbacks) == 1  # queued only once the caller's transaction commits, never from inside it

    with pytest.raises(RuntimeError), transaction.atomic():
        notify(EventKind.JOB_FAILED, "rolled back", "…")
        raise RuntimeError("the change fails")
    assert not Notification.objects.filter(subject="rolled back").exists()
    assert deliver.name == DELIVER_TASK


def test_an_unknown_kind_of_event_is_refused_and_a_subject_is_one_line(viewer: Any) -> None:
    with pytest.raises(ValueError, match="unknown kind of event 'job_done'"):
        notify("job_done", "x", "y")
    subscribe(viewer, [EventKind.RISK])
    told = notify(EventKind.RISK, "New risk: Win11\r\nBcc: someone@else on HV02", "…")
    assert told is not None and told.subject == "New risk: Win11 Bcc: someone@else on HV02"


# -- what is told ---------------------------------------------------------------------------------------------------


def test_a_failed_job_reaches_the_subscribers_mail_and_a_signed_webhook(
    viewer: Any, host: Host, smtp_server: SmtpServer, webhook_receiver: WebhookReceiver, settings: Any
) -> None:
    settings.CONSOLE_URL = "https://guardian.lab.example"
    subscribe(viewer, [EventKind.JOB_FAILED], email="vera@lab.example")
    webhook(webhook_receiver.url("/hooks/guardian"))

    job = failed_job(host)
    assert deliver_all() == ["sent", "sent"]

    mail = smtp_server.wait_for(1)[0]
    assert smtp_server.recipients == [["vera@lab.example"]]
    assert mail["Subject"] == f"[Guardian Console] Job #{job.pk} Refresh inventory on HV02 failed"
    assert "HV02 refused the connection: check its WinRM listener." in body_of(mail)
    assert f"https://guardian.lab.example/jobs/{job.pk}/" in body_of(mail)
    request = webhook_receiver.wait_for(1)[0]
    assert request.path == "/hooks/guardian"
    assert valid_signature(request, SECRET)
    assert not valid_signature(request, "a-wrong-secret")
    payload = json.loads(request.body)
    assert payload["event"] == "job_failed" and payload["link"] == f"https://guardian.lab.example/jobs/{job.pk}/"
    assert request.headers["X-Guardian-Event"] == "job_failed"
    outcomes = DeliveryAttempt.objects.values_list("recipient", "attempt", "outcome", "error")
    hook = "Webhook (signed JSON POST) 'ops-hook'"
    assert set(outcomes) == {("e-mail to vera", 1, "sent", ""), (hook, 1, "sent", "")}


def test_a_signature_over_a_changed_body_or_an_old_timestamp_does_not_verify(
    viewer: Any, webhook_receiver: WebhookReceiver
) -> None:
    webhook(webhook_receiver.url())
    failed_job()
    deliver_all()
    request = webhook_receiver.wait_for(1)[0]
    tampered = type(request)(request.path, request.headers, request.body.replace(b"failed", b"passed"))
    assert not valid_signature(tampered, SECRET)
    replayed = type(request)(request.path, {**request.headers}, request.body)
    replayed.headers["X-Guardian-Timestamp"] = str(int(request.headers["X-Guardian-Timestamp"]) - 3600)
    assert not valid_signature(replayed, SECRET)


def test_a_lost_job_an_errored_one_and_an_approval_are_told_and_a_success_is_not(
    viewer: Any, admin: Any, host: Host
) -> None:
    subscribe(viewer, [EventKind.JOB_FAILED, EventKind.APPROVAL])  # told of failures; approvals are for admins
    subscribe(admin, [EventKind.APPROVAL])
    lost, errored = failed_job(host, JobState.LOST), failed_job(host, JobState.ERRORED)
    ok = Job.objects.create(kind="inventory_refresh", state=JobState.RUNNING, runner="t")
    ok.finish("t", JobState.SUCCEEDED)
    # What the two-person approval writes when a job waits for a second admin.
    waiting = Job.objects.create(kind="inventory_refresh", host_names=["HV02"], requested_by_name="otto")
    AuditEvent.record(
        None, "job.approval_requested", waiting, reason="A guardian reset.", expires="2026-12-07T10:00:00+00:00"
    )

    told = {n.subject: n for n in Notification.objects.all()}
    assert set(told) == {
        f"Job #{lost.pk} Refresh inventory on HV02 was lost",
        f"Job #{errored.pk} Refresh inventory on HV02 ended with an error",
        f"Job #{waiting.pk} Refresh inventory on HV02 waits for approval",
    }
    approval = told[f"Job #{waiting.pk} Refresh inventory on HV02 waits for approval"]
    assert approval.kind == EventKind.APPROVAL and approval.link == f"/jobs/{waiting.pk}/"
    assert "otto asks for Refresh inventory on HV02: A guardian reset." in approval.body
    assert "before 2026-12-07 10:00 UTC" in approval.body
    assert [d.user for d in approval.deliveries.all()] == [admin]
    assert all(n.deliveries.get().user == viewer for n in told.values() if n != approval)


def test_new_risks_of_the_stored_analysis_are_told_once(viewer: Any, host: Host) -> None:
    subscribe(viewer, [EventKind.RISK])
    HostInventory.objects.create(host=host, mode="Local", refreshed_at=timezone.now())
    sealed = [{"signing": "A" * 40, "encryption": "B" * 40, "subject": "CN=Shielded VM Signing Certificate"}]
    vm = VirtualMachine.objects.create(
        host=host,
        vm_id="vm-1",
        name="Win11-A",
        tpm_enabled=True,
        has_key_protector=True,
        kp_guardian_thumbprints=sealed,
    )
    told = Notification.objects.get(kind=EventKind.RISK)
    assert told.subject == "New risk: VM can start on no registered host: Win11-A on HV02"
    assert told.link == f"/vms/{vm.pk}/"

    vm.state = "Off"
    vm.save()  # the analysis runs again; the risk is not new
    Guardian.objects.create(host=host, name="UntrustedGuardian", signing_thumbprint="C" * 40)
    assert Notification.objects.filter(kind=EventKind.RISK).count() == 2
    latest = Notification.objects.filter(kind=EventKind.RISK).first()
    assert latest is not None and latest.subject == "New risk: Guardian without private keys: UntrustedGuardian on HV02"


def test_certificates_entering_the_expiry_window_are_told_once(viewer: Any, host: Host) -> None:
    subscribe(viewer, [EventKind.CERT_EXPIRING])
    soon = timezone.now() + dt.timedelta(days=30)
    for thumbprint, subject, not_after in [
        ("D" * 40, "CN=Shielded VM Encryption Certificate (UntrustedGuardian) (HV02)", soon),
        ("E" * 40, "CN=far away", timezone.now() + dt.timedelta(days=800)),
    ]:
        Certificate.objects.create(host=host, thumbprint=thumbprint, subject=subject, not_after=not_after)

    assert sweep.apply().get() == 1
    told = Notification.objects.get(kind=EventKind.CERT_EXPIRING)
    assert told.subject == (
        f"Certificate CN=Shielded VM Encryption Certificate (UntrustedGuardian) (HV02) expires on {soon:%Y-%m-%d}"
    )
    assert "on HV02 expires on" in told.body and "far away" not in told.body
    assert sweep.apply().get() == 0  # told once
    assert list(ExpiryNotice.objects.values_list("thumbprint", flat=True)) == ["D" * 40]


def test_the_sweep_forgets_notifications_and_log_rows_past_their_keeping(viewer: Any, settings: Any) -> None:
    settings.NOTIFY_KEEP_DAYS = 90
    subscribe(viewer, [EventKind.RISK])
    old, recent = notify(EventKind.RISK, "old", "…"), notify(EventKind.RISK, "recent", "…")
    assert old is not None and recent is not None
    long_ago = timezone.now() - dt.timedelta(days=91)
    Notification.objects.filter(pk=old.pk).update(created_at=long_ago)
    DeliveryAttempt.log("e-mail to vera", "old", 1, "sent")
    DeliveryAttempt.objects.update(at=long_ago)
    DeliveryAttempt.log("e-mail to vera", "recent", 1, "sent")
    sweep.apply()
    assert list(Notification.objects.values_list("subject", flat=True)) == ["recent"]
    assert list(DeliveryAttempt.objects.values_list("event", flat=True)) == ["recent"]
    assert Delivery.objects.get().notification == recent


# -- delivery: refusals, retries, chat services ---------------------------------------------------------------------


def test_a_receiver_that_refuses_is_not_retried_and_one_that_errs_is_retried_then_failed(
    viewer: Any, webhook_receiver: WebhookReceiver, settings: Any
) -> None:
    settings.NOTIFY_ATTEMPTS = 3
    webhook(webhook_receiver.url())
    webhook_receiver.answer(403)
    failed_job()
    assert deliver_all() == ["failed"]
    assert len(webhook_receiver.requests) == 1
    refused = DeliveryAttempt.objects.get()
    where = f"http://127.0.0.1:{webhook_receiver.server.server_port}"
    assert refused.outcome == "failed" and refused.error == f"{where} answered HTTP 403"

    webhook_receiver.answer(503)
    failed_job()
    assert deliver_all() == ["failed"]
    assert len(webhook_receiver.requests) == 4
    rows = list(DeliveryAttempt.objects.order_by("pk").values_list("attempt", "outcome"))[1:]
    assert rows == [(1, "retrying"), (2, "retrying"), (3, "failed")]


def test_a_chat_service_through_apprise_gets_the_message(viewer: Any, webhook_receiver: WebhookReceiver) -> None:
    apprise_to(webhook_receiver.url("/chat").replace("http://", "json://") + f"?token={TOKEN}")
    job = failed_job()
    assert deliver_all() == ["sent"]
    payload = json.loads(webhook_receiver.wait_for(1)[0].body)
    assert payload["title"] == f"Job #{job.pk} Refresh inventory failed"
    assert "HV02 refused the connection" in payload["message"]


def test_an_unreachable_chat_service_fails_with_an_error_that_names_no_token(
    viewer: Any, settings: Any, caplog: Any
) -> None:
    settings.NOTIFY_ATTEMPTS = 2
    apprise_to(f"json://{TOKEN}@127.0.0.1:9/{TOKEN}/hook?token={TOKEN}")
    failed_job()
    assert deliver_all() == ["failed"]
    attempts = list(DeliveryAttempt.objects.order_by("pk"))
    assert [a.outcome for a in attempts] == ["retrying", "failed"]
    assert attempts[-1].error.startswith("json://127.0.0.1:9 did not take the message")
    assert all(TOKEN not in a.error for a in attempts)
    assert TOKEN not in caplog.text


def test_a_user_without_an_address_fails_at_once_with_the_reason(viewer: Any, smtp_server: SmtpServer) -> None:
    Subscription.objects.create(user=viewer, kinds=[EventKind.JOB_FAILED])
    failed_job()
    assert deliver_all() == ["failed"]
    assert DeliveryAttempt.objects.get().error.startswith("the user has no e-mail address")
    assert smtp_server.messages == []


def test_a_mail_server_that_is_down_is_retried_then_failed(viewer: Any, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # the tests' default keeps mail in memory
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.NOTIFY_ATTEMPTS = "127.0.0.1", 9, 2
    subscribe(viewer, [EventKind.JOB_FAILED])
    failed_job()
    assert deliver_all() == ["failed"]
    errors = list(DeliveryAttempt.objects.order_by("pk").values_list("outcome", "error"))
    assert errors == [("retrying", "the mail server 127.0.0.1:9 could not be reached (connection refused)")] + [
        ("failed", "the mail server 127.0.0.1:9 could not be reached (connection refused)")
    ]


def test_the_digest_gathers_several_events_into_one_mail(
    viewer: Any, operator: Any, host: Host, smtp_server: SmtpServer, eager_tasks: None
) -> None:
    subscribe(viewer, [EventKind.JOB_FAILED, EventKind.APPROVAL], mode=Subscription.DIGEST)
    subscribe(operator, [EventKind.JOB_FAILED])  # at once
    jobs = [failed_job(host), failed_job(host, JobState.LOST), failed_job(host, JobState.ERRORED)]
    assert deliver_all() == ["sent"] * 3  # the operator's, one by one; the viewer's wait for the digest
    assert len(smtp_server.messages) == 3

    assert send_digests.apply().get() == 1
    assert len(smtp_server.messages) == 4
    digest = smtp_server.messages[-1]
    assert smtp_server.recipients[-1] == ["vera@lab.example"]
    assert digest["Subject"] == "[Guardian Console] Digest: 3 events"
    for job in jobs:
        assert f"Job #{job.pk} Refresh inventory on HV02" in body_of(digest)
    assert send_digests.apply().get() == 0  # nothing gathered since
    assert len(smtp_server.messages) == 4


# -- the pages --------------------------------------------------------------------------------------------------------


def test_anyone_who_reads_the_console_chooses_their_own_notifications(viewer: Any, viewer_client: Client) -> None:
    assert viewer_client.get("/account/notifications/").status_code == 200
    response = viewer_client.post(
        "/account/notifications/",
        {"email": "vera@lab.example", "kinds": ["job_failed", "risk"], "mode": "digest"},
    )
    assert response.status_code == 302
    subscription = Subscription.objects.get(user=viewer)
    assert (subscription.kinds, subscription.mode) == (["job_failed", "risk"], "digest")
    viewer.refresh_from_db()
    assert viewer.email == "vera@lab.example"
    event = AuditEvent.objects.get(action="notifications.subscribe")
    assert event.detail == {"kinds": ["job_failed", "risk"], "mode": "digest", "email_changed": True}

    refused = viewer_client.post("/account/notifications/", {"email": "", "kinds": ["risk"], "mode": "immediate"})
    assert refused.status_code == 400 and b"Notifications go by e-mail" in refused.content


def test_someone_without_a_role_has_no_notifications_page(nobody: Any) -> None:
    assert client_for(nobody).get("/account/notifications/").status_code == 403


def test_an_admin_adds_a_webhook_whose_url_and_secret_no_page_shows(admin_client: Client, viewer: Any) -> None:
    url = f"https://hooks.lab.example/services/{TOKEN}"
    response = admin_client.post(
        "/notifications/",
        {"name": "ops-hook", "type": "webhook", "url": url, "secret": SECRET, "kinds": ["job_failed"], "enabled": "on"},
    )
    assert response.status_code == 302
    destination = Destination.objects.get()
    assert (destination.get_url(), destination.get_secret(), destination.shown) == (
        url,
        SECRET,
        "https://hooks.lab.example",
    )
    assert TOKEN not in destination.url and SECRET not in destination.secret  # sealed at rest
    audit = AuditEvent.objects.get(action="notifications.destination.create")
    assert TOKEN not in json.dumps(audit.detail) and SECRET not in json.dumps(audit.detail)

    pages = ["/notifications/", f"/notifications/destinations/{destination.pk}/", "/audit/"]
    for page in pages:
        text = admin_client.get(page).content.decode()
        assert "ops-hook" in text and TOKEN not in text and SECRET not in text, page

    # A form shown again with an error does not echo what was typed either.
    again = admin_client.post(
        "/notifications/", {"name": "ops-hook", "type": "webhook", "url": url, "secret": SECRET, "kinds": []}
    )
    assert again.status_code == 400 and b"Another destination has this name" in again.content
    assert TOKEN.encode() not in again.content and SECRET.encode() not in again.content


def test_editing_a_destination_keeps_its_secrets_when_left_blank_and_removing_it_is_audited(
    admin_client: Client,
) -> None:
    destination = webhook("https://hooks.lab.example/a")
    response = admin_client.post(
        f"/notifications/destinations/{destination.pk}/",
        {"name": "renamed", "type": "webhook", "url": "", "secret": "", "kinds": ["risk", "approval"]},
    )
    assert response.status_code == 302
    destination.refresh_from_db()
    assert (destination.name, destination.enabled, destination.kinds) == ("renamed", False, ["approval", "risk"])
    assert (destination.get_url(), destination.get_secret()) == ("https://hooks.lab.example/a", SECRET)
    change = AuditEvent.objects.get(action="notifications.destination.change")
    assert change.detail["url_changed"] is False and change.detail["signing_key_changed"] is False

    assert admin_client.post(f"/notifications/destinations/{destination.pk}/delete/").status_code == 302
    assert not Destination.objects.exists()
    assert AuditEvent.objects.filter(action="notifications.destination.delete", object_repr="renamed").exists()


def test_an_admin_sends_a_test_message_to_one_destination(
    admin_client: Client, webhook_receiver: WebhookReceiver, django_capture_on_commit_callbacks: Any
) -> None:
    tested = webhook(webhook_receiver.url(), kinds=[EventKind.RISK])
    webhook("http://127.0.0.1:9/other", name="other")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin_client.post(f"/notifications/destinations/{tested.pk}/test/")
    assert response.status_code == 302 and len(queued) == 1  # sent by the worker, after the commit
    assert deliver_all() == ["sent"]
    request = webhook_receiver.wait_for(1)[0]
    assert valid_signature(request, SECRET)
    assert json.loads(request.body)["event"] == "test"
    assert json.loads(request.body)["subject"] == "Test message to ops-hook"
    assert AuditEvent.objects.filter(action="notifications.destination.test", object_repr="ops-hook").exists()


def test_a_webhook_needs_an_http_url_and_a_secret_and_apprise_a_url_it_knows(admin_client: Client) -> None:
    bad = [
        ({"type": "webhook", "url": "ftp://hooks.lab.example/x", "secret": SECRET}, b"http:// or https://"),
        ({"type": "webhook", "url": "https://hooks.lab.example/x", "secret": ""}, b"needs a signing secret"),
        ({"type": "apprise", "url": "nonsense-service://x"}, b"apprise does not know this kind of URL"),
    ]
    for fields, said in bad:
        response = admin_client.post("/notifications/", {"name": "x", "kinds": ["risk"], **fields})
        assert response.status_code == 400 and said in response.content, fields
    assert not Destination.objects.exists()


def test_the_admin_page_shows_the_delivery_log(admin_client: Client, viewer: Any, settings: Any) -> None:
    settings.NOTIFY_ATTEMPTS = 1
    webhook(f"http://127.0.0.1:9/{TOKEN}")
    failed_job()
    deliver_all()
    text = admin_client.get("/notifications/").content.decode()
    assert "Webhook (signed JSON POST) &#x27;ops-hook&#x27;" in text
    assert "http://127.0.0.1:9 could not be reached (connection refused or no route)" in text
    assert TOKEN not in text


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_manage_team_destinations(role: str, db: None) -> None:
    client = client_for(make_user(f"someone-{role}", role))
    assert client.get("/notifications/").status_code == 403
    assert client.post("/notifications/", {"name": "x", "type": "webhook"}).status_code == 403
    assert not Destination.objects.exists()
