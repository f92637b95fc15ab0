"""Redis restarted in the middle of a job: a Redis of the test's own (Debian's redis-server, no persistence, so the
restart loses every message it held, as a crash does) is the broker and channel layer of a worker of its own. The job
keeps running, every log line is saved once and in order, and a job created once Redis is back runs too.

Celery 5's worker (kombu's Redis transport) may stop consuming with "Unrecoverable error: AttributeError('NoneType'
object has no attribute 'hostname')" when it acknowledges the running job's message after the connection was lost: it
finishes the running job first (warm shutdown), then exits. `make run` (runconsole) starts a child that died again,
so the test does what runconsole does, and records whether it had to."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from console.celery import app as console_app
from jobs.kinds import JobContext, job_kind
from jobs.models import JobLogLine, JobState
from jobs.services import create_job
from tests.plugins.jobs import log_integrity, wait_for_job, wait_for_line
from tests.plugins.worker import free_port, wait_for

WORKER_JOB_KINDS = True  # the worker process imports this module, so it knows the test-only kind below

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server"),
]


@job_kind("test_ticks", label="Log a line every tenth of a second (test)", mutating=False, refresh_inventory=False)
def ticks(ctx: JobContext) -> str:
    lines = int(ctx.params.get("lines", 40))
    for number in range(lines):
        ctx.log(f"tick {number}")
        time.sleep(0.1)
        ctx.check_cancelled()
    return f"{lines} ticks"


class PrivateRedis:
    """A redis-server on a free loopback port, killed (SIGKILL) and started again on the same port by the test."""

    def __init__(self, directory: Path) -> None:
        self.port, self.directory = free_port(), directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command line
            [*args, "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self.answers, 10, f"redis-server on port {self.port}")

    def answers(self) -> bool:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                return False
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.kill()


@contextmanager
def sending_to(url: str) -> Iterator[None]:
    """This thread's Celery app sends job tasks to the broker at `url`."""
    app = Celery("console", set_as_current=False, broker=url)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    assert app.conf.broker_url == url  # the broker given wins over the settings' REDIS_URL
    app.set_current()
    try:
        yield
    finally:
        console_app.set_current()
        app.close()


def ticks_of(job_id: int) -> list[str]:
    texts = JobLogLine.objects.filter(job_id=job_id).order_by("seq").values_list("text", flat=True)
    return [text for text in texts if text.startswith("tick ")]


def test_a_redis_restart_mid_job_loses_and_duplicates_no_log_line(
    celery_worker_process: Any,
    operator: Any,
    private_redis: PrivateRedis,
    record_property: Callable[[str, object], None],
) -> None:
    worker = celery_worker_process.pool.start_another(REDIS_URL=private_redis.url)
    with sending_to(private_redis.url):
        job = create_job(operator, "test_ticks", params={"lines": 40})
    wait_for_line(job, "tick 5")
    private_redis.kill()  # every message and channel in it gone, as in a crash
    time.sleep(1)
    private_redis.start()
    with sending_to(private_redis.url):
        after = create_job(operator, "test_ticks", params={"lines": 3})

    job = wait_for_job(job, timeout=60)
    assert job.state == JobState.SUCCEEDED, job.error
    assert ticks_of(job.pk) == [f"tick {number}" for number in range(40)]
    integrity = log_integrity(job)
    assert integrity["lost_lines"] == integrity["duplicated_lines"] == 0
    restarted = worker_restarted_if_it_exited(celery_worker_process.pool, worker, private_redis.url)
    after = wait_for_job(after, timeout=60)  # its task waited in the restarted Redis
    assert after.state == JobState.SUCCEEDED and ticks_of(after.pk) == ["tick 0", "tick 1", "tick 2"]
    record_property("fault", {"case": "Redis restart", **integrity, "worker_restarted": int(restarted)})


def worker_restarted_if_it_exited(pool: Any, worker: Any, redis_url: str) -> bool:
    """What runconsole does for a child that died: start it again (True when it had to). A worker whose consumer
    stopped must exit, not linger without consuming (runconsole would not notice that)."""
    if "Unrecoverable error" not in worker.output():
        return False
    wait_for(lambda: not worker.alive(), 30, "the worker exiting after its unrecoverable error")
    pool.start_another(REDIS_URL=redis_url)
    return True
