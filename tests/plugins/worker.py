"""Fixtures: a real Celery worker process and a real daphne server, both on the pytest-django test database.

Both subprocesses inherit the test run's environment (CONSOLE_REDIS_PREFIX from tests/settings.py keeps their
Redis queue and channel groups apart from other runs) and get DATABASE_URL pointing at the test database.
Test modules that define job kinds for the worker set `WORKER_JOB_KINDS = True`; the worker imports them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"

# Short timings so the lost-job and waiting tests take seconds, not a minute.
WORKER_TIMINGS = {
    "CONSOLE_JOBS_HEARTBEAT_SECONDS": "0.5",
    "CONSOLE_JOBS_LOST_AFTER_SECONDS": "3",
    "CONSOLE_JOBS_REAPER_SECONDS": "1",
    "CONSOLE_JOBS_WAIT_RETRY_SECONDS": "0.5",
}


def test_database_url() -> str:
    """The URL of the database this test run uses (pytest-django has switched the connection to it)."""
    db = connection.settings_dict
    if str(db["ENGINE"]).endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(str(db.get("USER") or ""))
    password = quote(str(db.get("PASSWORD") or ""))
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"


def console_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by browser tests for their own process only
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=test_database_url(),
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} did not happen within {timeout}s\n{tail}")


@dataclass
class ConsoleProcess:
    """A subprocess of the console (worker or daphne) with its output in a log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: nothing in the process gets to clean up, as when a machine dies."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class WorkerProcess(ConsoleProcess):
    """`celery -A console worker` (threads pool), which also reaps lost jobs on a thread of its own (jobs/tasks.py).
    No beat runs in the tests: its one schedule, the inventory refresh every 15 minutes, is never due during a test."""

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(lambda: " ready." in self.output() or not self.alive(), timeout, "worker start", self.log_path)
        if not self.alive():
            raise RuntimeError(f"the Celery worker exited at start:\n{self.output()[-3000:]}")


def kind_modules(session: pytest.Session) -> str:
    """Modules of this run that define test-only job kinds (they say so with WORKER_JOB_KINDS = True)."""
    modules = {getattr(item, "module", None) for item in session.items}
    return ",".join(sorted(m.__name__ for m in modules if m is not None and getattr(m, "WORKER_JOB_KINDS", False)))


def start_worker(session: pytest.Session, **env: str) -> WorkerProcess:
    """Start a worker; `env` overrides the short test timings (e.g. CONSOLE_JOBS_LOST_AFTER_SECONDS)."""
    name = f"w{time.monotonic_ns()}"
    worker = WorkerProcess(
        name=name,
        args=[
            sys.executable,
            "-m",
            "celery",
            "-A",
            "console",
            "worker",
            "--pool=threads",
            "--concurrency=4",
            "--loglevel=INFO",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=console_env(CONSOLE_JOB_KIND_MODULES=kind_modules(session), **{**WORKER_TIMINGS, **env}),
        log_path=ARTIFACTS / "logs" / f"worker-{name}.log",
    )
    worker.start()
    worker.wait_ready()
    return worker


class WorkerPool:
    """The session's worker (started once, restarted if a test killed it) plus extra workers started by tests."""

    def __init__(self, session: pytest.Session) -> None:
        self.session = session
        self.current: WorkerProcess | None = None
        self.extra: list[WorkerProcess] = []

    def ensure(self) -> WorkerProcess:
        if self.current is None or not self.current.alive():
            self.current = start_worker(self.session)
        return self.current

    def start_another(self, **env: str) -> WorkerProcess:
        worker = start_worker(self.session, **env)
        self.extra.append(worker)
        return worker

    def stop_extra(self) -> None:
        for worker in self.extra:
            worker.stop()
        self.extra.clear()

    def stop_all(self) -> None:
        self.stop_extra()
        if self.current is not None:
            self.current.stop()


@pytest.fixture(scope="session")
def _worker_pool(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[WorkerPool]:
    pool = WorkerPool(request.session)
    yield pool
    pool.stop_all()


@pytest.fixture
def celery_worker_process(transactional_db: None, _worker_pool: WorkerPool) -> Iterator[WorkerProcess]:
    """A running `celery -A console worker` on the test database. `.kill()` SIGKILLs it (the next test gets a new
    one); `celery_worker_process.pool.start_another(**env)` starts one more, stopped after the test."""
    worker = _worker_pool.ensure()
    worker.pool = _worker_pool  # type: ignore[attr-defined]
    yield worker
    _worker_pool.stop_extra()
    settle_jobs(_worker_pool.current)


def settle_jobs(worker: WorkerProcess | None, timeout: float = 5) -> None:
    """Let the test's jobs end before the database is flushed; a worker still busy after `timeout` is killed (the
    next test gets a fresh one), so no job of this test writes into the next one's tables."""
    from jobs.models import ACTIVE_STATES, Job

    deadline = time.monotonic() + timeout
    while Job.objects.filter(state__in=ACTIVE_STATES).exists():
        if time.monotonic() > deadline:
            if worker is not None:
                worker.kill()
            return
        time.sleep(0.05)


@dataclass
class LiveConsole:
    url: str
    process: ConsoleProcess

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]


def start_daphne(name: str, port: int, env: dict[str, str]) -> LiveConsole:
    """A daphne serving the console on 127.0.0.1:`port` with this environment, once it listens."""
    process = ConsoleProcess(
        name=name,
        args=[sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "console.asgi:application"],
        env=env,
        log_path=ARTIFACTS / "logs" / f"{name}-{port}.log",
    )
    process.start()

    def listening() -> bool:
        if not process.alive():
            raise RuntimeError(f"{name} exited at start:\n{process.output()[-3000:]}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, 60, f"{name} start", process.log_path)
    return LiveConsole(url=f"http://127.0.0.1:{port}", process=process)


def still_alive(console: LiveConsole) -> LiveConsole:
    """The console, or the error that says its daphne died (with the end of its log)."""
    if not console.process.alive():
        raise RuntimeError(f"{console.process.name} died:\n{console.process.output()[-3000:]}")
    return console


@pytest.fixture(scope="session")
def _daphne(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[LiveConsole]:
    # The same job kinds as the worker, so pages show and offer the test-only kinds too.
    console = start_daphne("daphne", free_port(), console_env(CONSOLE_JOB_KIND_MODULES=kind_modules(request.session)))
    yield console
    console.process.stop()


@pytest.fixture
def live_console(transactional_db: None, _daphne: LiveConsole) -> LiveConsole:
    """The console served by daphne (HTTP and websockets) on 127.0.0.1:<free port>; `.url`, `.ws_url`."""
    return still_alive(_daphne)
