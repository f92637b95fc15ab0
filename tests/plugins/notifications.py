"""Fixtures: real receivers of notifications on loopback, and a worker that sends to them.

smtp_server         an aiosmtpd SMTP server (one per test module, emptied for each test); `.messages`
                    (email.message.Message), `.wait_for(n)`
webhook_receiver    an http.server in a thread; `.requests`, `.wait_for(n)`, `.answer(status, delay)`,
                    `.url(path)`; `valid_signature(request, secret)` checks a request as a receiver would
notifying_worker    a real Celery worker whose mail goes to smtp_server, with short timeouts and back-off (one per
                    test module: each start costs 1.5 s of CPU, and so does the session worker's restart after it)
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.plugins.worker import WorkerPool, WorkerProcess, free_port, settle_jobs, start_worker

# A send that waits longer than this gives up (the webhook that never answers sleeps past it).
TIMEOUT_SECONDS = 1.0
RETRY_SECONDS = 0.2  # the first back-off: 0.2 s, then 0.4 s
ATTEMPTS = 3


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


# -- SMTP -------------------------------------------------------------------------------------------------------------


@dataclass
class SmtpServer:
    port: int
    messages: list[Message] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.recipients.append(list(envelope.rcpt_tos))
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 20) -> list[Message]:
        wait_until(lambda: len(self.messages) >= count, timeout, f"{count} e-mail(s) at the SMTP server")
        return self.messages


@pytest.fixture(scope="module")
def _smtp_listener() -> Iterator[SmtpServer]:
    server = SmtpServer(port=free_port())
    controller = Controller(server, hostname="127.0.0.1", port=server.port)
    controller.start()
    yield server
    controller.stop()


@pytest.fixture
def smtp_server(settings: Any, _smtp_listener: SmtpServer) -> SmtpServer:
    """A real SMTP server on 127.0.0.1, with no mail yet; the console's mail settings point at it (and Django's SMTP
    backend, which the test environment replaces with its in-memory one, is put back)."""
    _smtp_listener.messages.clear()
    _smtp_listener.recipients.clear()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _smtp_listener.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    return _smtp_listener


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(message.get_payload())


# -- HTTP -------------------------------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status, self.delay = 200, 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting (the timeout story)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def answer(self, status: int = 200, delay: float = 0.0) -> None:
        self.status, self.delay = status, delay

    def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        wait_until(lambda: len(self.requests) >= count, timeout, f"{count} request(s) at the webhook receiver")
        return self.requests

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def valid_signature(request: Received, secret: str, max_age: float = 300) -> bool:
    """What a receiver checks: the HMAC-SHA256 of '<timestamp>.<body>' under the shared secret, and a fresh
    timestamp (an old one is a replay)."""
    timestamp = request.headers.get("X-Guardian-Timestamp", "")
    sent = request.headers.get("X-Guardian-Signature", "")
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    expected = f"sha256={digest}"
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= max_age
    return fresh and hmac.compare_digest(sent, expected)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


# -- a worker that sends to them --------------------------------------------------------------------------------------


class NotifyingWorker:
    """The module's notifying worker, started again if a test's jobs outlived it (settle_jobs killed it)."""

    def __init__(self, session: pytest.Session, smtp: SmtpServer) -> None:
        self.session, self.smtp = session, smtp
        self.current: WorkerProcess | None = None

    def ensure(self) -> WorkerProcess:
        if self.current is None or not self.current.alive():
            self.current = start_worker(
                self.session,
                CONSOLE_SMTP_HOST="127.0.0.1",
                CONSOLE_SMTP_PORT=str(self.smtp.port),
                CONSOLE_NOTIFY_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
                CONSOLE_NOTIFY_RETRY_SECONDS=str(RETRY_SECONDS),
                CONSOLE_NOTIFY_ATTEMPTS=str(ATTEMPTS),
            )
        return self.current


@pytest.fixture(scope="module")
def _notifying_workers(
    request: pytest.FixtureRequest, django_db_setup: None, _smtp_listener: SmtpServer
) -> Iterator[NotifyingWorker]:
    workers = NotifyingWorker(request.session, _smtp_listener)
    yield workers
    if workers.current is not None:
        workers.current.stop()


@pytest.fixture
def notifying_worker(
    transactional_db: None, _worker_pool: WorkerPool, _notifying_workers: NotifyingWorker, smtp_server: SmtpServer
) -> Iterator[WorkerProcess]:
    """A real Celery worker process whose mail goes to `smtp_server`, with short timeouts and back-off. The session's
    worker is stopped first (the next test that needs it gets a new one), so this one alone takes the queue's tasks;
    it serves every test of the module that asks for it, the database flushed between them as for the session's."""
    if _worker_pool.current is not None:
        _worker_pool.current.stop()
    yield _notifying_workers.ensure()
    settle_jobs(_notifying_workers.current)  # a worker still busy is killed: the next test starts another
