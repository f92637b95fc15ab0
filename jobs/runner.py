"""The one runner of every job kind: claim (with per-host locks), run with a heartbeat and a durable log, finish.

Log lines are redacted, numbered and saved in small batches by a pump thread, then published to the group
`job-<id>`; the same thread heartbeats and notices cancel requests. A task delivered again for a job whose runner
died resumes it: steps recorded as done are skipped (see JobContext.step), so a destructive step never runs twice.

A runner that loses its job while it still works (paused past the reaper's patience, then resumed) is fenced: its
lines are saved only while the job runs under its token, every operation checks the token right before it is sent
(JobContext.check_owner), and once it knows, it stops and writes an OrphanedRun with its unsaved lines instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from django.utils.translation import gettext as _

from hosts.inventory.refresh import refresh_host

from .events import job_group
from .inventory import INVENTORY_REFRESH
from .joblog import lines_to
from .kinds import JobCancelled, JobContext, JobFailed, JobPartlyFailed, OwnershipLost, running
from .models import (
    ENDED_BADLY,
    LOG_LEVELS,
    TERMINAL_STATES,
    HostLock,
    Job,
    JobLogLine,
    JobState,
    OrphanedRun,
    WaitForHost,
    lines_message,
)
from .redaction import Redactor, clean_exception
from .registry import JobKind, UnknownJobKind, get_kind
from .services import create_job, is_same_site_path, ordered_hosts

log = logging.getLogger(__name__)

# A batch is saved, then published, once it holds BATCH_LINES lines or LINGER_SECONDS after its first line, so a
# line reaches viewers within tens of milliseconds (far inside the 250 ms a batch may wait) and a burst of output
# costs one transaction per 200 lines rather than one per line.
BATCH_LINES = 200
LINGER_SECONDS = 0.03


def jobs_setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def runner_alive(job: Job, now: datetime | None = None, check_process: bool = True) -> bool:
    """Is the runner recorded on the job still working? Dead if its heartbeat is stale or (with `check_process`,
    on this machine) its process is gone. The reaper only trusts the heartbeat: a task redelivered right after its
    worker died gets the chance to resume the job first."""
    now = now or timezone.now()
    lost_after = jobs_setting("JOBS_LOST_AFTER_SECONDS", 30)
    if job.heartbeat_at is None or now - job.heartbeat_at > timedelta(seconds=lost_after):
        return False
    if not check_process:
        return True
    machine, _sep, rest = job.runner.partition(":")
    pid = rest.partition(":")[0]
    if machine == socket.gethostname() and pid.isdigit():
        return pid_alive(int(pid))
    return True


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Claiming ------------------------------------------------------------------------------------------------------


@dataclass
class Claim:
    job: Job
    kind: JobKind
    token: str
    resumed: bool


def claim(job_id: int) -> Claim | None:
    """Take the job for this runner, or None when there is nothing to do. Raises WaitForHost when locked."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.state in TERMINAL_STATES:
        return None
    try:
        kind = get_kind(job.kind)
    except UnknownJobKind:
        with job.in_its_language():
            error = _("Unknown job kind “%(kind)s”: this console cannot run it.") % {"kind": job.kind}
        job.end_unstarted(JobState.FAILED, error=error)
        return None
    token = runner_id()
    if job.state == JobState.RUNNING:
        return take_over(job, kind, token)
    if job.cancel_requested:
        with job.in_its_language():
            summary = _("Cancelled before it started.")
        job.end_unstarted(JobState.CANCELLED, summary=summary)
        return None
    # In primary-key order: two claims inserting the same locks crosswise would deadlock on PostgreSQL (an insert
    # waits for the other transaction's uncommitted row).
    hosts = sorted(job.hosts.all(), key=lambda h: h.pk) if kind.mutating else []
    if not job.claim(token, hosts):
        return None
    return Claim(job, kind, token, resumed=False)


def take_over(job: Job, kind: JobKind, token: str) -> Claim | None:
    """A redelivered task: resume only if the runner that had the job is dead (else it is a duplicate)."""
    if runner_alive(job) or not job.take_over(token):
        return None
    return Claim(job, kind, token, resumed=True)


# The log pump --------------------------------------------------------------------------------------------------


Line = tuple[datetime, str, str, str]  # (at, level, text, link)


class LogPump(threading.Thread):
    """Saves log lines in batches, then publishes them; heartbeats; notices cancel requests and lost ownership.
    Once the job is not its runner's any more, lines are kept in `orphaned_lines` instead (for the OrphanedRun)."""

    def __init__(self, job: Job, token: str, redactor: Redactor, on_cancel: Any, on_lost: Any = None) -> None:
        super().__init__(name=f"job-{job.pk}-pump", daemon=True)
        self.job = job
        self.job_id = job.pk
        self.token = token
        self.redactor = redactor
        self.on_cancel = on_cancel
        self.on_lost = on_lost
        self.seq = job.last_seq
        self.pending: list[Line] = []
        self.orphaned_lines: list[Line] = []
        self.messages_after: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.owned = True
        self.cancel_seen = False
        self.heartbeat_seconds = jobs_setting("JOBS_HEARTBEAT_SECONDS", 5)
        self.next_heartbeat = time.monotonic() + self.heartbeat_seconds  # the claim wrote the first one
        self.loop: asyncio.AbstractEventLoop | None = None

    def write(self, text: str, level: str = "info", link: str = "") -> None:
        level = level if level in LOG_LEVELS else "info"
        lines = self.redactor.redact(text).splitlines() or [""]
        link = link if is_same_site_path(link) else ""  # a page of this console, or no link
        now = timezone.now()
        with self.lock:
            self.pending.extend((now, level, line, link if i == len(lines) - 1 else "") for i, line in enumerate(lines))
            count = len(self.pending)
        if count == len(lines) or count >= BATCH_LINES:
            self.wake.set()

    def publish_after_lines(self, group: str, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages_after.append((group, message))
        self.wake.set()

    def run(self) -> None:
        self.loop = asyncio.new_event_loop()
        next_beat = time.monotonic() + min(self.heartbeat_seconds, 1.0)
        try:
            while not self.stopping.is_set():
                self.wake.wait(timeout=max(0.0, next_beat - time.monotonic()))
                self.wake.clear()
                self.linger()
                self.flush()
                if time.monotonic() >= next_beat:
                    self.beat()
                    next_beat = time.monotonic() + min(self.heartbeat_seconds, 1.0)
            self.flush()
        finally:
            self.loop.close()  # channels_redis closes its connections for this loop here
            connection.close()

    def linger(self) -> None:
        with self.lock:
            count = len(self.pending)
        if 0 < count < BATCH_LINES and not self.stopping.is_set():
            time.sleep(LINGER_SECONDS)

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
            messages, self.messages_after = self.messages_after, []
        for start in range(0, len(pending), BATCH_LINES):
            try:
                self.save_and_publish(pending[start : start + BATCH_LINES])
            except DatabaseError:
                # Busy database: keep the lines (in order) for the next round rather than losing them.
                log.warning("saving log lines of job %s failed; retrying", self.job_id, exc_info=True)
                with self.lock:
                    self.pending[:0] = pending[start:]
                    self.messages_after[:0] = messages
                time.sleep(0.2)
                self.wake.set()
                return
        for group, message in messages:
            self.publish(group, message)

    def save_and_publish(self, batch: list[Line]) -> None:
        if not self.owned:
            self.orphaned_lines.extend(batch)
            return
        first = self.seq + 1
        rows = [
            JobLogLine(job_id=self.job_id, seq=first + i, at=at, level=level, text=text, link=link)
            for i, (at, level, text, link) in enumerate(batch)
        ]
        if not self.job.save_lines(self.token, rows):
            # These numbers are no longer ours to use: the reaper or another runner writes after last_seq now.
            self.orphaned_lines.extend(batch)
            self.lose()
            return
        self.seq = rows[-1].seq
        self.publish(job_group(self.job_id), lines_message(rows))

    def publish(self, group: str, message: dict[str, Any]) -> None:
        layer = get_channel_layer()
        if layer is None or self.loop is None:
            return
        try:
            self.loop.run_until_complete(layer.group_send(group, message))
        except Exception:  # noqa: BLE001 - viewers replay from the database; a Redis hiccup loses nothing
            log.warning("publishing job %s to %s failed", self.job_id, group, exc_info=True)

    def beat(self) -> None:
        """Every second: is the job still ours, was it cancelled? Every JOBS_HEARTBEAT_SECONDS: the heartbeat."""
        try:
            row = Job.objects.filter(pk=self.job_id).values_list("runner", "state", "cancel_requested").first()
            if row is not None and time.monotonic() >= self.next_heartbeat:
                self.job.heartbeat(self.token)
                self.next_heartbeat = time.monotonic() + self.heartbeat_seconds
        except Exception:  # noqa: BLE001 - a database blip; the next beat tries again
            log.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
            return
        runner, state, cancel = row if row is not None else ("", "", False)
        if runner != self.token or state != JobState.RUNNING:
            self.lose()
            return
        if cancel and not self.cancel_seen:
            self.cancel_seen = True
            self.on_cancel()

    def lose(self) -> None:
        """The job is no longer this runner's: from now on lines go to `orphaned_lines`; tell the job's context.
        Never undone: a job lost or taken over is not given back."""
        first = self.owned
        self.owned = False
        if first and self.on_lost is not None:
            self.on_lost()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout=30)


# Running -------------------------------------------------------------------------------------------------------


def execute(job_id: int) -> str:
    """Run job `job_id` to its end. Returns the final state, "waiting:<host>" or "skipped"."""
    try:
        claimed = claim(job_id)
    except WaitForHost as wait:
        return f"waiting:{wait.host_name}"
    if claimed is None:
        return "skipped"
    # The whole log, from the first line to the last, in the language of whoever asked for the job.
    with claimed.job.in_its_language():
        return run_claimed(claimed)


def run_claimed(claimed: Claim) -> str:
    job, kind = claimed.job, claimed.kind
    hosts = ordered_hosts(job)
    redactor = Redactor.for_hosts(hosts)
    ctx_holder: list[JobContext] = []

    def on_cancel() -> None:
        for ctx in ctx_holder:
            ctx.log(_("Cancel requested: stopping the running command and ending at the next step."), "warning")
            ctx.request_cancel()

    def on_lost() -> None:
        for ctx in ctx_holder:
            ctx.ownership_lost()

    pump = LogPump(job, claimed.token, redactor, on_cancel=on_cancel, on_lost=on_lost)
    ctx = JobContext(
        job,
        hosts,
        pump.write,
        resumed=claimed.resumed,
        redactor=redactor,
        token=claimed.token,
        publish=pump.publish_after_lines,
    )
    ctx_holder.append(ctx)
    pump.start()
    if job.cancel_requested:
        ctx.request_cancel()
    outcome: tuple[str, str, str] | None = None
    lost: OwnershipLost | None = None
    try:
        with lines_to(pump.write), running(ctx):
            outcome = run_kind(ctx, kind, claimed.resumed)
            if pump.owned:
                refresh_touched_hosts(ctx, kind, outcome[0])
    except OwnershipLost as exc:
        lost = exc
    except BaseException:
        # The worker itself is going down (not the job failing): stop heartbeating so the reaper can tell.
        pump.stop()
        raise
    finally:
        ctx.close_sessions()
    if lost is not None:
        return orphaned(ctx, pump, outcome, stopped_before=lost.stopped_before)
    assert outcome is not None
    return finish(ctx, pump, *outcome)


def run_kind(ctx: JobContext, kind: JobKind, resumed: bool) -> tuple[str, str, str]:
    """Call the kind's function; map how it ended to (state, summary, error)."""
    who = ctx.job.requested_by_name or "console"
    if resumed:
        ctx.log(
            _("A worker stopped while running this job; another worker resumes it. Steps already done are skipped."),
            "warning",
        )
    elif ctx.hosts:
        requested = {"kind": str(kind.label), "who": who, "hosts": ctx.job.hosts_display}
        ctx.log(_("%(kind)s requested by %(who)s on %(hosts)s") % requested, "info")
    else:
        ctx.log(_("%(kind)s requested by %(who)s") % {"kind": str(kind.label), "who": who}, "info")
    try:
        summary = kind.function(ctx) or ""
        if ctx.cancel_requested:
            return cancelled(ctx)
        return JobState.SUCCEEDED, str(summary), ""
    except JobCancelled:
        return cancelled(ctx)
    except JobPartlyFailed as exc:
        if ctx.cancel_requested:
            return cancelled(ctx)
        ctx.log(exc.error, "error")
        return JobState.PARTLY_FAILED, exc.summary, ctx_redact(ctx, exc.error)
    except JobFailed as exc:
        if ctx.cancel_requested:
            return cancelled(ctx)
        ctx.log(str(exc), "error")
        return JobState.FAILED, "", ctx_redact(ctx, str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure of a kind must end the job, never the worker
        if ctx.cancel_requested:
            return cancelled(ctx)  # a pipeline stopped by cancel ends with an error: that is the cancel, not a failure
        return unexpected(ctx, exc)


def unexpected(ctx: JobContext, exc: Exception) -> tuple[str, str, str]:
    log.error("job %s failed unexpectedly", ctx.job.pk, exc_info=True)
    remoting_kind = getattr(exc, "kind", None)
    message = clean_exception(exc)
    # A remoting error names its kind (unreachable, refused, …) and says what to check: an explained failure.
    state = JobState.FAILED if isinstance(remoting_kind, str) else JobState.ERRORED
    if state == JobState.ERRORED:
        message = _("Unexpected error (%(type)s): %(message)s") % {"type": type(exc).__name__, "message": message}
    message = ctx_redact(ctx, message)
    ctx.log(message, "error")
    return state, "", message


def ctx_redact(ctx: JobContext, text: str) -> str:
    """Masked with the job's own Redactor: its hosts' passwords and every secret its sessions sent."""
    return ctx.redact(text)


def cancelled(ctx: JobContext) -> tuple[str, str, str]:
    who = Job.objects.filter(pk=ctx.job.pk).values_list("cancelled_by_name", flat=True).first() or _("a user")
    done = ", ".join(ctx.steps_done) if ctx.steps_done else _("no step had completed")
    ctx.log(_("Cancelled by %(who)s. Done before the cancel: %(done)s.") % {"who": who, "done": done}, "warning")
    ctx.record("steps_done_before_cancel", list(ctx.steps_done))
    return (
        JobState.CANCELLED,
        _("Cancelled by %(who)s; done before the cancel: %(done)s.") % {"who": who, "done": done},
        "",
    )


def refresh_touched_hosts(ctx: JobContext, kind: JobKind, state: str) -> None:
    """After every job the inventory of the hosts it touched is refreshed, so pages show what the job did."""
    if not kind.refresh_inventory or not ctx.touched:
        return
    if state == JobState.CANCELLED:
        # Whoever cancelled wants this job to end now; the refresh is a job of its own, watchable and cancellable.
        follow_up = create_job(None, INVENTORY_REFRESH, hosts=ctx.touched, params={"after_job": ctx.job.pk})
        hosts = ", ".join(h.name for h in ctx.touched)
        ctx.log(_("The inventory of %(hosts)s is refreshed by job #%(job)s") % {"hosts": hosts, "job": follow_up.pk})
        return
    for host in ctx.touched:
        ctx.log(_("Refreshing the inventory of %(host)s") % {"host": host.name}, "info")
        session = ctx.open_session_for(host) if state == JobState.SUCCEEDED else None
        try:
            refresh_host(host, session=session, log=ctx.log)  # logs its own outcome
        except Exception as exc:  # noqa: BLE001 - the job's own outcome stands
            failure = {"host": host.name, "error": ctx_redact(ctx, clean_exception(exc))}
            ctx.log(_("Inventory refresh of %(host)s failed: %(error)s") % failure, "warning")


def finish(ctx: JobContext, pump: LogPump, state: str, summary: str, error: str) -> str:
    """Save the last lines, then the final state (see Job.finish); returns the state, or "skipped" when the job is
    no longer this runner's."""
    job = ctx.job
    # A kind's summary or error may quote what a host or library said, secrets included.
    summary, error = ctx_redact(ctx, summary), ctx_redact(ctx, error)
    shown = str(JobState(state).label)
    if summary:
        ended = _("Job %(state)s: %(summary)s") % {"state": shown, "summary": summary}
    else:
        ended = _("Job %(state)s") % {"state": shown}
    ctx.log(ended, "error" if state in ENDED_BADLY else "info")
    pump.stop()
    if not pump.owned or not job.finish(pump.token, state, summary, error):
        return orphaned(ctx, pump, (state, summary, error))
    return state


def orphaned(ctx: JobContext, pump: LogPump, outcome: tuple[str, str, str] | None, stopped_before: str = "") -> str:
    """The job is no longer this runner's (the reaper declared it lost, or another runner took it over): leave its
    state and log alone and write what this run knows to an OrphanedRun (and the audit trail). Returns "orphaned"."""
    pump.lose()  # from here on every line goes to pump.orphaned_lines, never into the job's log
    text = _("This worker no longer owns the job, so it sent nothing more to any host.")
    if stopped_before:
        text += " " + _("It stopped before sending: %(operation)s") % {"operation": stopped_before}
    ctx.log(text, "error")
    pump.stop()
    ended = ""
    if outcome is not None:
        state, summary, error = outcome
        ended = ctx_redact(ctx, state + (f": {summary or error}" if summary or error else ""))
    OrphanedRun.record(
        ctx.job, pump.token, ctx.steps_done, stopped_before=stopped_before, outcome=ended, lines=pump.orphaned_lines
    )
    log.warning("job %s is no longer runner %s's: it stopped and wrote an orphaned run", ctx.job.pk, pump.token)
    return "orphaned"


# Reaper --------------------------------------------------------------------------------------------------------


def reap(now: datetime | None = None) -> list[int]:
    """Running jobs whose runner is dead become `lost`, with an explanation; their host locks are released."""
    now = now or timezone.now()
    reaped = []
    for job in Job.objects.running():
        if runner_alive(job, now, check_process=False):
            continue
        if job.mark_lost():
            reaped.append(job.pk)
    # Locks of jobs that ended some other way (a crash between the final save and the release) go too.
    HostLock.objects.filter(job__state__in=TERMINAL_STATES).delete()
    requeue_unsent()
    requeue_forgotten(now)
    Job.expire_approvals(now)
    return reaped


def requeue_unsent() -> list[int]:
    """Send again the task of every job whose send failed (the task queue was unreachable), oldest first, every
    reaper round; stop at the first that fails again: the queue is still away."""
    sent = []
    for job in Job.objects.unsent():
        if not job.send():
            break
        sent.append(job.pk)
    return sent


def requeue_forgotten(now: datetime) -> list[int]:
    """Send again the task of a job left queued or waiting for long: its message may be gone (a Redis restart, a
    worker killed with its prefetched tasks). A duplicate is harmless: claiming a job is atomic."""
    stale = now - timedelta(seconds=jobs_setting("JOBS_REQUEUE_SECONDS", 300))
    forgotten = list(Job.objects.forgotten(stale))
    for job in forgotten:
        job.send()
    return [job.pk for job in forgotten]
