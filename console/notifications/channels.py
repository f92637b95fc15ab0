"""Sending one message: e-mail through Django's mail (SMTP), a webhook (JSON POST signed with HMAC-SHA256), or a chat
service through apprise. Each raises DeliveryFailed with a sentence for the delivery log, which names no address
beyond scheme://host and no secret, and says whether trying again may help.

The webhook's signature: `X-Guardian-Timestamp` is the Unix time of sending, `X-Guardian-Signature` is
`sha256=` + hex HMAC-SHA256, keyed with the destination's secret, over `<timestamp>.<body>`. A receiver recomputes
it, compares in constant time, and refuses a timestamp older than a few minutes: a replayed request then fails,
as its timestamp cannot be changed without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import time
from urllib.parse import parse_qsl, urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage

from .models import Destination, Notification

SIGNATURE_HEADER = "X-Guardian-Signature"
TIMESTAMP_HEADER = "X-Guardian-Timestamp"
EVENT_HEADER = "X-Guardian-Event"


class DeliveryFailed(Exception):
    """A message that did not reach its recipient; `retry`: whether a later attempt may succeed."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


def absolute_link(path: str) -> str:
    """The console's page for a notification, as a full URL when CONSOLE_URL says where the console is served."""
    base = settings.CONSOLE_URL.rstrip("/")
    return f"{base}{path}" if path and base else path


def text_of(notification: Notification) -> str:
    link = absolute_link(notification.link)
    return notification.body + (f"\n\n{link}" if link else "")


# -- e-mail -----------------------------------------------------------------------------------------------------------


def send_email(to: str, subject: str, body: str) -> None:
    """One e-mail through the SMTP server of the settings (EMAIL_HOST, EMAIL_PORT, …)."""
    if not to:
        raise DeliveryFailed("the user has no e-mail address (set it under My account → Notifications)", retry=False)
    server = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    prefix = settings.EMAIL_SUBJECT_PREFIX
    message = EmailMessage(f"{prefix}{subject}", body, settings.DEFAULT_FROM_EMAIL, [to])
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryFailed(f"the mail server {server} refused the recipient's address", retry=False) from None
    except smtplib.SMTPResponseException as refusal:
        reply = refusal.smtp_error.decode(errors="replace") if isinstance(refusal.smtp_error, bytes) else ""
        raise DeliveryFailed(f"the mail server {server} answered {refusal.smtp_code} {reply}".strip()) from None
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryFailed(f"the mail server {server} could not be reached ({describe(error)})") from None


def describe(error: BaseException) -> str:
    """An exception as a short phrase without arguments that may carry an address with a token."""
    if isinstance(error, TimeoutError | requests.Timeout):
        return f"no answer within {settings.NOTIFY_TIMEOUT_SECONDS:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return type(error).__name__


# -- webhooks ---------------------------------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_body(notification: Notification) -> bytes:
    payload = {
        "id": notification.pk,
        "event": notification.kind,
        "subject": notification.subject,
        "body": notification.body,
        "link": absolute_link(notification.link),
        "at": notification.created_at.isoformat(),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def send_webhook(destination: Destination, notification: Notification) -> None:
    body, timestamp = webhook_body(notification), str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Guardian-Console",
        EVENT_HEADER: notification.kind,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(destination.get_secret(), timestamp, body),
    }
    where = destination.shown
    try:
        # No redirects: the signed body would go wherever a redirect pointed.
        response = requests.post(
            destination.get_url(),
            data=body,
            headers=headers,
            timeout=settings.NOTIFY_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.Timeout:
        raise DeliveryFailed(f"{where} gave no answer within {settings.NOTIFY_TIMEOUT_SECONDS:g} s") from None
    except requests.ConnectionError:
        raise DeliveryFailed(f"{where} could not be reached (connection refused or no route)") from None
    except requests.RequestException as error:
        raise DeliveryFailed(f"the request to {where} failed ({describe(error)})") from None
    if not 200 <= response.status_code < 300:
        again = response.status_code >= 500 or response.status_code == 429
        raise DeliveryFailed(f"{where} answered HTTP {response.status_code}", retry=again)


# -- chat services (apprise) ------------------------------------------------------------------------------------------


def url_secrets(url: str) -> list[str]:
    """The parts of an apprise URL that may be tokens: user, password, path segments, query values, fragment."""
    parts = urlsplit(url)
    found = [parts.username or "", parts.password or "", parts.fragment]
    found += parts.path.split("/") + [value for _name, value in parse_qsl(parts.query)]
    return sorted({part for part in found if len(part) >= 3}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    for secret in url_secrets(url):
        text = text.replace(secret, "…")
    return text.replace(url, "…")


def send_apprise(destination: Destination, notification: Notification) -> None:
    # Imported here: loading apprise's ~180 service plugins takes most of a second, paid only by a process that
    # sends to a chat service (never by the web server or a test that does not).
    import apprise

    url, where = destination.get_url(), destination.shown
    box = apprise.Apprise()
    if not box.add(url):
        raise DeliveryFailed(f"apprise does not know the service of {where}", retry=False)
    # apprise's own warnings say why a send failed; they are captured (its logger writes nowhere else, see
    # settings.LOGGING) and scrubbed of the URL's secrets before they reach the delivery log.
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        sent = box.notify(title=notification.subject, body=text_of(notification))
    if not sent:
        said = " ".join(scrub(captured.getvalue(), url).split())[:500]
        raise DeliveryFailed(f"{where} did not take the message" + (f": {said}" if said else ""))
