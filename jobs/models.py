"""Jobs: every change to a host is a Job whose log lines are saved (with a per-job sequence number) before they are
published, so the database is the source of truth for live viewers and for readers afterwards."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class JobState(models.TextChoices):
    QUEUED = "queued", "queued"
    WAITING = "waiting", "waiting"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"
    LOST = "lost", "lost"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST})
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.WAITING, JobState.RUNNING})

LOG_LEVELS = ("debug", "verbose", "info", "progress", "warning", "error")


class Job(models.Model):
    """One run of a job kind (see jobs/kinds.py) on one or more hosts."""

    kind = models.CharField(max_length=64, db_index=True)
    hosts = models.ManyToManyField("hosts.Host", related_name="jobs", blank=True)
    # Names as they were when the job ran: the list and the log stay readable after a host is renamed or removed.
    host_names = models.JSONField(default=list, blank=True)
    vms = models.JSONField(default=list, blank=True)
    params = models.JSONField(default=dict, blank=True)  # never secrets: create_job refuses them
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    requested_by_name = models.CharField(max_length=150, blank=True)
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)  # last time a task was sent for it
    waiting_for = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    cancelled_by_name = models.CharField(max_length=150, blank=True)
    # "<machine>:<pid>:<token>" of the runner that holds the job, so a redelivered task can tell a dead runner.
    runner = models.CharField(max_length=200, blank=True)
    summary = models.TextField(blank=True)
    error = models.TextField(blank=True)
    results = models.JSONField(default=dict, blank=True)
    last_seq = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.label}"

    @property
    def label(self) -> str:
        from .kinds import label_of

        return label_of(self.kind)

    @property
    def is_finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def hosts_display(self) -> str:
        return ", ".join(self.host_names)

    @property
    def ran_display(self) -> str:
        """When the job ran, as the job page shows it (UTC, like the log's timestamps)."""
        if not self.started_at:
            return "not started"
        end = f"{self.finished_at:%H:%M:%S}" if self.finished_at else "…"
        return f"{self.started_at:%H:%M:%S} – {end}"

    @property
    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def state_message(self) -> dict[str, Any]:
        """What the websockets send when the state changes (the job page and the job list both use it)."""
        return {
            "type": "state",
            "job": self.pk,
            "state": self.state,
            "waiting_for": self.waiting_for,
            "summary": self.summary,
            "error": self.error,
            "seq": self.last_seq,
            "cancel_requested": self.cancel_requested,
            "ran": self.ran_display,
        }


class JobLogLine(models.Model):
    """One line of a job's log; `seq` counts from 1 per job without gaps."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="lines")
    seq = models.PositiveIntegerField()
    at = models.DateTimeField()
    level = models.CharField(max_length=10, default="info")
    text = models.TextField()

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="jobs_line_unique_seq")]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.seq} {self.text[:60]}"

    def as_message(self) -> list[Any]:
        return line_tuple(self.seq, self.at, self.level, self.text)


def line_tuple(seq: int, at: Any, level: str, text: str) -> list[Any]:
    """The compact wire form of a line: [seq, epoch milliseconds, level, text]."""
    return [seq, epoch_millis(at), level, text]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_millis(at: datetime) -> int:
    """Whole milliseconds since the epoch, in integer arithmetic (as EpochMillis computes them in the database)."""
    return (at - EPOCH) // timedelta(milliseconds=1)


class EpochMillis(models.Func):
    """`epoch_millis` of a DateTimeField, computed by the database: a replay of 100k lines then skips creating
    100k datetime objects (on PostgreSQL that parse was half the replay time)."""

    output_field = models.BigIntegerField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="FLOOR(EXTRACT(EPOCH FROM %(expressions)s) * 1000)::bigint")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django stores "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC: the whole seconds of the first 19 characters (strftime
        # would round a fraction up), plus the first 3 digits of the fraction. '%%%%' reaches SQLite as '%': the
        # template is %-formatted once here, and the backend turns '%%' into '%' after its placeholders.
        template = (
            "(CAST(strftime('%%%%s', substr(%(expressions)s, 1, 19)) AS INTEGER) * 1000"
            " + CAST(substr(%(expressions)s, 21, 3) AS INTEGER))"
        )
        return self.as_sql(compiler, connection, template=template)


# The websocket frame of some lines. Fixed separators, so frames of consecutive batches can be joined as text.
LINES_FRAME_START = '{"type":"lines","lines":['
LINES_FRAME_END = "]}"


def lines_frame(lines: list[list[Any]]) -> str:
    return LINES_FRAME_START + ",".join(json.dumps(line, separators=(",", ":")) for line in lines) + LINES_FRAME_END


def join_frames(frames: list[str]) -> str:
    """One frame holding the lines of several consecutive frames made by lines_frame."""
    start, end = len(LINES_FRAME_START), -len(LINES_FRAME_END)
    return LINES_FRAME_START + ",".join(frame[start:end] for frame in frames) + LINES_FRAME_END


class StepState(models.TextChoices):
    STARTED = "started", "started"
    DONE = "done", "done"
    FAILED = "failed", "failed"


class JobStep(models.Model):
    """A named step of a job. A redelivered task finds the steps already done and never runs a destructive one twice."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=200)
    destructive = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=StepState.choices, default=StepState.STARTED)
    data = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "key"], name="jobs_step_unique_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class HostLock(models.Model):
    """Held by the one mutating job running on a host; the primary key on the host makes taking it atomic."""

    host = models.OneToOneField("hosts.Host", on_delete=models.CASCADE, primary_key=True, related_name="job_lock")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="locks")
    acquired_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.host_id} held by job {self.job_id}"
