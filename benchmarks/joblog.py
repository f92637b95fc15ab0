"""Benchmark: live job log latency and completeness over the real path, and replay time after a reconnect.

A job in a real Celery worker emits 1,000 lines/s for 30 s; 1 and then 100 websocket viewers watch it through a
daphne server on real Redis. Measured: latency from the `ctx.log` call to the viewer's receipt (p50/p99), lines lost
or duplicated per viewer (must be 0), and the time a viewer needs to receive a finished 100k-line job from seq 0.

    .venv/bin/python benchmarks/joblog.py                      # 1,000 lines/s for 30 s; 1 and 100 viewers
    .venv/bin/python benchmarks/joblog.py --seconds 5 --viewers 1,10
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<an empty database> .venv/bin/python benchmarks/joblog.py

SQLite by default (a fresh file in a temp dir; JOBLOG_SQLITE_WAL=1 switches it to WAL). The viewers are one asyncio
process on the same machine, so their own CPU time is part of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_KIND = "bench_emit"


def register_kind() -> None:
    """The benchmark's job kind; the worker imports this module (CONSOLE_JOB_KIND_MODULES) to know it."""
    from jobs.kinds import JobContext, job_kind

    @job_kind(BENCH_KIND, label="Emit lines (benchmark)", mutating=False, refresh_inventory=False)
    def emit(ctx: JobContext) -> str:
        rate, seconds = int(ctx.params["rate"]), float(ctx.params["seconds"])
        gate = Path(ctx.params["gate"])
        while not gate.exists():
            time.sleep(0.005)
        total = int(rate * seconds)
        start = time.monotonic()
        for i in range(total):
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            ctx.log(f"line {i:06d} of the benchmark job, about as long as a typical PowerShell verbose record")
        return f"emitted {total} lines"


if __name__ != "__main__":
    register_kind()


# Setup ---------------------------------------------------------------------------------------------------------


def configure_environment(workdir: Path) -> None:
    os.environ.setdefault("CONSOLE_ENV", "development")
    os.environ.setdefault("CONSOLE_HTTPS", "0")
    os.environ["CONSOLE_VAR_DIR"] = str(workdir)
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir}/bench.sqlite3")
    os.environ["CONSOLE_REDIS_PREFIX"] = f"bench-{os.getpid()}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"
    os.environ["CONSOLE_JOB_KIND_MODULES"] = "benchmarks.joblog"
    os.environ["PYTHONPATH"] = str(REPO)
    os.environ["PYTHONUNBUFFERED"] = "1"
    sys.path.insert(0, str(REPO))


def load() -> str:
    """The 1-minute load average: on a shared machine the tail latencies follow it."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def session_cookie() -> str:
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from console.roles import set_role

    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    set_role(user, "viewer")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return str(session.session_key)


# Viewers -------------------------------------------------------------------------------------------------------


@dataclass
class ViewerResult:
    latencies_ms: list[float] = field(default_factory=list)
    last_seq: int = 0
    duplicates: int = 0
    gaps: int = 0
    end_seq: int | None = None
    connected: asyncio.Future[None] | None = None
    ended: asyncio.Future[None] | None = None
    task: asyncio.Task[None] | None = None


class Viewer:
    """A minimal websocket client on asyncio streams (RFC 6455: handshake, unmasked server frames, pong).

    Written here because the installed client (autobahn) is bound to Twisted once Django loads daphne."""

    def __init__(self, result: ViewerResult) -> None:
        self.result = result
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def connect(self, port: int, path: str, cookie: str) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Cookie: sessionid={cookie}\r\n\r\n"
        )
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace").splitlines()[0])

    async def frames(self) -> Any:
        buffer = b""
        while True:
            first, second = await self.reader.readexactly(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            payload = await self.reader.readexactly(length)
            if opcode == 9:  # ping → pong
                self.send(10, payload)
            elif opcode == 8:
                return
            elif opcode in (0, 1, 2):
                buffer += payload
                if first & 0x80:
                    yield buffer
                    buffer = b""

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    async def run(self) -> None:
        result = self.result
        async for frame in self.frames():
            received_ms = time.time() * 1000
            message = json.loads(frame)
            if message["type"] == "lines":
                for seq, at_ms, _level, _text in message["lines"]:
                    if seq <= result.last_seq:
                        result.duplicates += 1
                        continue
                    if seq != result.last_seq + 1:
                        result.gaps += seq - result.last_seq - 1
                    result.last_seq = seq
                    result.latencies_ms.append(received_ms - at_ms)
            elif message["type"] == "state" and result.connected and not result.connected.done():
                result.connected.set_result(None)
            elif message["type"] == "end":
                result.end_seq = message["seq"]
                if result.ended and not result.ended.done():
                    result.ended.set_result(None)
                self.writer.close()
                return


async def open_viewer(port: int, job_id: int, cookie: str, after: int = 0) -> ViewerResult:
    loop = asyncio.get_running_loop()
    result = ViewerResult(last_seq=after, connected=loop.create_future(), ended=loop.create_future())
    viewer = Viewer(result)
    await viewer.connect(port, f"/ws/jobs/{job_id}/?after={after}", cookie)
    result.task = asyncio.create_task(viewer.run())
    return result


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# Scenarios -----------------------------------------------------------------------------------------------------


async def live_run(port: int, cookie: str, viewers: int, rate: int, seconds: float, workdir: Path) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    from jobs.models import Job
    from jobs.services import create_job

    gate = workdir / f"gate-{viewers}"
    job = await sync_to_async(create_job)(
        None, BENCH_KIND, params={"rate": rate, "seconds": seconds, "gate": str(gate)}
    )
    results = await asyncio.gather(*(open_viewer(port, job.pk, cookie) for _ in range(viewers)))
    await asyncio.wait_for(asyncio.gather(*(r.connected for r in results if r.connected)), 60)
    gate.touch()
    await asyncio.wait_for(asyncio.gather(*(r.ended for r in results if r.ended)), seconds + 120)
    saved = await sync_to_async(lambda: Job.objects.get(pk=job.pk).last_seq)()
    latencies = [lat for r in results for lat in r.latencies_ms]
    return {
        "viewers": viewers,
        "lines_saved": saved,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "lost": sum(saved - r.last_seq + r.gaps for r in results),
        "duplicated": sum(r.duplicates for r in results),
        "wrong_end": sum(1 for r in results if r.end_seq != saved),
    }


def make_finished_job(lines: int) -> int:
    from django.utils import timezone

    from jobs.models import Job, JobLogLine, JobState

    job = Job.objects.create(kind=BENCH_KIND, state=JobState.SUCCEEDED, requested_by_name="bench", last_seq=lines)
    now = timezone.now()
    text = "line {:06d} of a finished job, about as long as a typical PowerShell verbose record"
    JobLogLine.objects.bulk_create(
        (JobLogLine(job=job, seq=i, at=now, level="info", text=text.format(i)) for i in range(1, lines + 1)),
        batch_size=5000,
    )
    return job.pk


async def replay_run(port: int, cookie: str, job_id: int, after: int, lines: int) -> dict[str, Any]:
    started = time.monotonic()
    result = await open_viewer(port, job_id, cookie, after=after)
    assert result.ended is not None
    await asyncio.wait_for(result.ended, 60)
    elapsed = time.monotonic() - started
    return {
        "after": after,
        "lines": result.last_seq - after,
        "seconds": elapsed,
        "complete": result.last_seq == lines and result.gaps == 0 and result.duplicates == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="lines per second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--viewers", default="1,100", help="comma-separated viewer counts")
    parser.add_argument("--replay-lines", type=int, default=100_000)
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="gc-joblog-bench-"))
    configure_environment(workdir)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    register_kind()
    call_command("migrate", verbosity=0)
    if os.environ.get("JOBLOG_SQLITE_WAL"):
        # WAL is a property of the database file: every process opening it afterwards uses it.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
    cookie = session_cookie()
    port = free_port()
    python = sys.executable
    # JOBLOG_PROFILE=/path/out.prof runs daphne under cProfile, to see where the server spends its time.
    profile = ["-m", "cProfile", "-o", os.environ["JOBLOG_PROFILE"]] if os.environ.get("JOBLOG_PROFILE") else []
    daphne = start(
        [python, *profile, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "console.asgi:application"],
        workdir / "daphne.log",
    )
    worker = start(
        [
            python,
            "-m",
            "celery",
            "-A",
            "console",
            "worker",
            "--pool=threads",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        workdir / "worker.log",
    )
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 60, "daphne start")
        time.sleep(3)  # the worker has no readiness port; its first task waits in the queue anyway
        database = str(settings.DATABASES["default"]["ENGINE"]).rsplit(".", 1)[-1]
        print(f"job log benchmark: {options.rate} lines/s for {options.seconds:g} s on {database} (load {load()})")
        for viewers in [int(v) for v in options.viewers.split(",")]:
            row = asyncio.run(live_run(port, cookie, viewers, options.rate, options.seconds, workdir))
            print(
                f"  {row['viewers']:>3} viewer(s): {row['lines_saved']} lines, latency p50 {row['p50_ms']:.1f} ms, "
                f"p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms; lost {row['lost']}, "
                f"duplicated {row['duplicated']}, wrong end {row['wrong_end']} (load {load()})"
            )
        job_id = make_finished_job(options.replay_lines)
        for after in (0, options.replay_lines // 2):
            row = asyncio.run(replay_run(port, cookie, job_id, after, options.replay_lines))
            print(
                f"  replay of a {options.replay_lines}-line job from seq {row['after']}: {row['lines']} lines in "
                f"{row['seconds']:.2f} s ({'complete' if row['complete'] else 'INCOMPLETE'}, load {load()})"
            )
    finally:
        for process in (worker, daphne):
            process.send_signal(signal.SIGTERM)
        for process in (worker, daphne):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
