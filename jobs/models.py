"""Jobs: every change to a host is a Job whose log lines are saved (with a per-job sequence number) before they are
published, so the database is the source of truth for live viewers and for readers afterwards.

The lifecycle of a job lives here, one method per change of state: `Job.enqueue` (queued, or waiting for approval
under the two-person policy), `approve` and `reject` (by a second admin), `expire_approvals`, `send` (or waiting for
the task queue), `claim` (running), `wait_for` (waiting), `take_over`, `heartbeat`, `finish`, `end_unstarted`,
`mark_lost` and `cancel`. Each is one conditional UPDATE whose WHERE names the states it starts from, so two workers,
a cancel and the reaper racing for one job never both win; each that changed the state publishes it to viewers.

Fencing: the runner token stored by the claim is the job's fencing token. Whatever a runner writes or sends while it
runs is conditional on the job still running under its token (`held_by`, `save_lines`), so a runner that was paused
while the reaper declared its job lost (or another runner took it over) changes nothing more: it writes what it knows
to an `OrphanedRun` instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from console.models import AuditEvent
from hosts.remoting.catalog.guardians import RemoveFiles
from hosts.remoting.operation import render_powershell

from .events import job_group, publish, publish_state
from .progress import Progress, progress, spoken_progress
from .registry import approval_of, label_of

if TYPE_CHECKING:
    from hosts.models import Host

log = logging.getLogger(__name__)


class JobState(models.TextChoices):
    QUEUED = "queued", pgettext_lazy("job state", "queued")
    # two-person policy: no task until a second admin approves
    AWAITING_APPROVAL = "approval", pgettext_lazy("job state", "waiting for approval")
    WAITING = "waiting", pgettext_lazy("job state", "waiting")
    RUNNING = "running", pgettext_lazy("job state", "running")
    SUCCEEDED = "succeeded", pgettext_lazy("job state", "succeeded")
    # Some of the job's hosts or VMs were done and others failed (JobPartlyFailed): not green, not all red either.
    PARTLY_FAILED = "partly_failed", pgettext_lazy("job state", "partly failed")
    # an explained failure (JobFailed, a host's error): the message says what to do
    FAILED = "failed", pgettext_lazy("job state", "failed")
    # an unexpected exception in the kind: a fault of the console, not of the host
    ERRORED = "errored", pgettext_lazy("job state", "errored")
    CANCELLED = "cancelled", pgettext_lazy("job state", "cancelled")
    LOST = "lost", pgettext_lazy("job state", "lost")


PENDING_STATES = frozenset({JobState.QUEUED, JobState.WAITING})  # no runner yet: claimed, or cancelled at once
ACTIVE_STATES = PENDING_STATES | {JobState.RUNNING, JobState.AWAITING_APPROVAL}
TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.PARTLY_FAILED, JobState.FAILED, JobState.ERRORED, JobState.CANCELLED, JobState.LOST}
)
ENDED_BADLY = frozenset({JobState.PARTLY_FAILED, JobState.FAILED, JobState.ERRORED, JobState.LOST})

LOG_LEVELS = ("debug", "verbose", "info", "progress", "warning", "error")

# The Celery task that runs a job (jobs/tasks.py), sent by name: the model sends it without importing the tasks,
# which import the runner, which imports this model.
RUN_JOB_TASK = "jobs.run_job"

# What a job whose task could not be sent waits for (its `waiting_for`, shown as "waiting for the task queue").
TASK_QUEUE = "the task queue"

# The key of JobStep.data under which a step lists the temporary files it wrote on hosts ({host name: [paths]}),
# noted before they are written and forgotten once removed: what is left is named when the job is lost.
TEMPORARY_FILES = "temporary_files"


def check_terminal(state: str) -> None:
    if state not in TERMINAL_STATES:
        raise ValueError(f"a job ends {' or '.join(sorted(TERMINAL_STATES))}, never {state}")


class ApprovalRefused(Exception):
    """An approval or rejection that does not count (the requester's own, a request already decided or expired):
    the message says why, for the person who tried."""


class WaitForHost(Exception):  # noqa: N818 - an outcome, not an error
    """A host of the job is locked by another mutating job: the job waits (state waiting) until it is released."""

    def __init__(self, host_name: str) -> None:
        super().__init__(host_name)
        self.host_name = host_name


class JobQuerySet(models.QuerySet["Job"]):
    def pending(self) -> JobQuerySet:
        return self.filter(state__in=PENDING_STATES)

    def active(self) -> JobQuerySet:
        return self.filter(state__in=ACTIVE_STATES)

    def running(self) -> JobQuerySet:
        return self.filter(state=JobState.RUNNING)

    def forgotten(self, sent_before: datetime) -> JobQuerySet:
        """Pending jobs whose task was last sent before `sent_before`: its message may be gone."""
        return self.pending().filter(enqueued_at__lt=sent_before, unsent_since__isnull=True)

    def waiting_on(self, host_ids: Iterable[int]) -> JobQuerySet:
        return self.filter(state=JobState.WAITING, hosts__in=list(host_ids))

    def unsent(self) -> JobQuerySet:
        """Pending jobs whose task could not be sent (the task queue was unreachable), oldest first."""
        return self.pending().filter(unsent_since__isnull=False).order_by("unsent_since", "pk")


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
    # The language of the job's log: the requester's when they started it (console/preferences.py); a log is
    # written once, for the whole team, in the words of the person who asked for the work.
    language = models.CharField(max_length=16, blank=True)
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)  # last time a task was sent for it
    # Since when sending its task fails (the task queue is unreachable); None once a send succeeded.
    unsent_since = models.DateTimeField(null=True, blank=True)
    waiting_for = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    cancelled_by_name = models.CharField(max_length=150, blank=True)
    # "<machine>:<pid>:<token>" of the runner that holds the job, so a redelivered task can tell a dead runner.
    runner = models.CharField(max_length=200, blank=True)
    summary = models.TextField(blank=True)
    error = models.TextField(blank=True)
    results = models.JSONField(default=dict, blank=True)
    last_seq = models.PositiveIntegerField(default=0)
    # Two-person approval (settings.TWO_PERSON_APPROVAL): why the job needs it, until when it may be given, and who
    # approved or rejected it when.
    approval_reason = models.TextField(blank=True)
    approval_expires_at = models.DateTimeField(null=True, blank=True)
    decided_by_name = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.label}"

    @property
    def label(self) -> str:
        return label_of(self.kind)

    @property
    def approval_reason_shown(self) -> str:
        """Why it waits for approval, in the reader's language: its kind's rule said again on its hosts and
        parameters (approval_reason, in its requester's language, stays what was decided on: shown when the rule
        no longer says it)."""
        if not self.approval_reason:
            return ""
        return approval_of(self) or self.approval_reason

    @property
    def is_finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def hosts_display(self) -> str:
        return ", ".join(self.host_names)

    @property
    def state_label(self) -> str:
        return state_label_of(self.state)

    @property
    def badge(self) -> str:
        return badge_text(self.state, self.waiting_for, self.cancel_requested)

    def in_its_language(self) -> translation.override:
        """What is written for the whole team (summaries, errors, log lines) is in the requester's language, whoever
        or whatever writes it (a canceller, the reaper): as the runner writes the log."""
        return translation.override(self.language or settings.LANGUAGE_CODE)

    @property
    def ran_display(self) -> str:
        """How long the job ran ("2 min 5 s"), or "not started"; the page shows when, in the reader's time zone."""
        return ran_text(self.started_at, self.finished_at)

    @property
    def started_millis(self) -> int | None:
        """When it started, for the browser's running clock (static/console.js counts up from it)."""
        return epoch_millis(self.started_at) if self.started_at else None

    def progress(self) -> Progress:
        """Its planned and recorded steps, merged (jobs/progress.py): one query."""
        return progress(self, list(self.steps.all()), self.is_finished)

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
            "state_label": self.state_label,
            "badge": self.badge,
            "ran": self.ran_display,
            "started": self.started_millis,
            "finished": epoch_millis(self.finished_at) if self.finished_at else None,
            "ended": self.is_finished,  # so the browser keeps no list of end states of its own
            "progress": self.progress().as_message(),
        }

    # The lifecycle ------------------------------------------------------------------------------------------------

    @classmethod
    def enqueue(
        cls,
        user: Any,
        kind: str,
        hosts: Sequence[Host] = (),
        vms: Iterable[str] = (),
        params: dict[str, Any] | None = None,
        rerun_of: Job | None = None,
        approval: str = "",
    ) -> Job:
        """A new queued job and its `job.create` audit event; its task is sent once the surrounding transaction
        commits. With `approval` (why it needs a second admin's approval) it waits for approval instead, until
        settings.APPROVAL_HOURS from now, and no task is sent. Precondition: the caller checked the user's permission
        and the parameters, and decided whether it needs approval (services.create_job)."""
        params = dict(params or {})
        waits: dict[str, Any] = {}
        if approval:
            expires = timezone.now() + timedelta(hours=settings.APPROVAL_HOURS)
            waits = {"state": JobState.AWAITING_APPROVAL, "approval_reason": approval, "approval_expires_at": expires}
        with transaction.atomic():
            job = cls.objects.create(
                kind=kind,
                host_names=[host.name for host in hosts],
                vms=[str(vm) for vm in vms],
                params=params,
                requested_by=user if user is not None and user.is_authenticated else None,
                requested_by_name=user.get_username() if user is not None else "console",
                language=translation.get_language() or settings.LANGUAGE_CODE,
                rerun_of=rerun_of,
                **waits,
            )
            job.hosts.set(list(hosts))
            AuditEvent.record(user, "job.create", job, kind=kind, hosts=job.host_names, vms=job.vms, params=params)
            if approval:
                until = waits["approval_expires_at"].isoformat()
                AuditEvent.record(user, "job.approval_requested", job, reason=approval, expires=until)
            else:
                transaction.on_commit(job.send, robust=True)
        return job

    def approve(self, user: Any) -> None:
        """waiting for approval → queued, by `user`, who is not the requester, before the request expires; audited
        as `job.approved`, and its task is sent once that commits. Precondition: the caller checked that `user` may
        approve. ApprovalRefused (audited as `job.approval_refused`) otherwise: the requester's own approval, an
        expired request (which ends it) or one already decided — a replayed approval counts once."""
        now, name = timezone.now(), user.get_username()
        with transaction.atomic():
            approved = (
                self._undecided(user)
                .filter(approval_expires_at__gt=now)
                .update(state=JobState.QUEUED, decided_by_name=name, decided_at=now)
            )
            if approved:
                AuditEvent.record(user, "job.approved", self, kind=self.kind, requested_by=self.requested_by_name)
                transaction.on_commit(self.send, robust=True)
        if not approved:
            self._refuse_decision(user, now, "approve")
        self._changed()

    def reject(self, user: Any, note: str = "") -> None:
        """waiting for approval → cancelled, by `user`, who is not the requester (who cancels instead); audited as
        `job.rejected`. ApprovalRefused as for `approve`; an expired request may still be rejected."""
        now, name = timezone.now(), user.get_username()
        with self.in_its_language():
            if note:
                summary = _("Rejected by %(name)s: %(note)s Nothing was sent to a host.") % {"name": name, "note": note}
            else:
                summary = _("Rejected by %(name)s. Nothing was sent to a host.") % {"name": name}
        with transaction.atomic():
            rejected = self._undecided(user).update(
                state=JobState.CANCELLED, decided_by_name=name, decided_at=now, finished_at=now, summary=summary[:2000]
            )
            if rejected:
                AuditEvent.record(user, "job.rejected", self, kind=self.kind, note=note[:500])
        if not rejected:
            self._refuse_decision(user, now, "reject")
        self._changed()

    def _undecided(self, user: Any) -> JobQuerySet:
        """This job while it waits for approval, unless `user` asked for it (by account, or by name: an account
        removed and made again under the same name is the same person)."""
        waiting = Job.objects.filter(pk=self.pk, state=JobState.AWAITING_APPROVAL)
        return waiting.exclude(requested_by=user).exclude(requested_by_name=user.get_username())

    def _refuse_decision(self, user: Any, now: datetime, decision: str) -> None:
        Job.expire_approvals(now)
        self.refresh_from_db()
        with translation.override("en"):  # the audit trail is data: in one language
            AuditEvent.record(user, "job.approval_refused", self, decision=decision, reason=self._refusal(now))
        why = self._refusal(now)
        if decision == "approve":
            refused = _("Job #%(job)s cannot be approved by you: %(why)s.")
        else:
            refused = _("Job #%(job)s cannot be rejected by you: %(why)s.")
        raise ApprovalRefused(refused % {"job": self.pk, "why": why})

    def _refusal(self, now: datetime) -> str:
        """Why a decision on this job does not count, in the active language."""
        expiry = self.approval_expires_at
        if self.state != JobState.AWAITING_APPROVAL and self.decided_by_name:
            return _("it was already decided by %(name)s: an approval counts once") % {"name": self.decided_by_name}
        if expiry is not None and expiry <= now:
            return _("the request expired at %(time)s UTC; ask for the job again") % {
                "time": f"{expiry:%Y-%m-%d %H:%M}"
            }
        if self.state != JobState.AWAITING_APPROVAL:
            return _("it is %(state)s, not waiting for approval") % {"state": self.state_label}
        return _("you asked for it: another admin must decide")

    @classmethod
    def expire_approvals(cls, now: datetime | None = None) -> list[int]:
        """Requests for approval past their time end cancelled (nothing was sent to a host), each audited as
        `job.approval_expired`. Run by the reaper, and before refusing a decision."""
        now = now or timezone.now()
        expired = []
        overdue = cls.objects.filter(state=JobState.AWAITING_APPROVAL, approval_expires_at__lte=now)
        for job in overdue:
            with job.in_its_language():
                summary = _("The request for approval expired without a decision. Nothing was sent to a host.")
            with transaction.atomic():
                ended = cls.objects.filter(pk=job.pk, state=JobState.AWAITING_APPROVAL).update(
                    state=JobState.CANCELLED, finished_at=now, summary=summary, decided_at=now
                )
                if ended:
                    AuditEvent.record(None, "job.approval_expired", job, kind=job.kind)
            if ended:
                expired.append(job.pk)
                job._changed()
        return expired

    def send(self) -> bool:
        """Send the task that runs this job and note when (the reaper sends it again if it is forgotten); True when
        sent. When the task queue cannot be reached, the job waits for it (state waiting, "the task queue",
        `unsent_since`) and the reaper of every worker sends it again every JOBS_REAPER_SECONDS.
        Precondition: the job's row is committed. Sending twice is harmless: claiming a job is atomic."""
        try:
            send_run_task(self.pk)
        except Exception:  # noqa: BLE001 - whatever the broker's client raises, the job must say it is not queued
            log.warning("the task of job %s could not be sent", self.pk, exc_info=True)
            self._wait_for_task_queue()
            return False
        Job.objects.filter(pk=self.pk).update(enqueued_at=timezone.now(), unsent_since=None)
        # Back to queued, unless a worker has already claimed it (or it waits for a host) meanwhile.
        Job.objects.filter(pk=self.pk, state=JobState.WAITING, waiting_for=TASK_QUEUE).update(
            state=JobState.QUEUED, waiting_for=""
        )
        publish_state(Job.objects.get(pk=self.pk))  # a fresh copy: the caller's instance stays as it was
        return True

    def _wait_for_task_queue(self) -> None:
        now = timezone.now()
        Job.objects.pending().filter(pk=self.pk).update(
            state=JobState.WAITING,
            waiting_for=TASK_QUEUE,
            unsent_since=Coalesce("unsent_since", models.Value(now, output_field=models.DateTimeField())),
        )
        publish_state(Job.objects.get(pk=self.pk))

    def claim(self, token: str, hosts: Sequence[Host]) -> bool:
        """queued/waiting → running for the runner `token`, with its first heartbeat, holding the lock of each of
        `hosts` (taken in the order given). Precondition: the job is pending and not cancelled; otherwise nothing
        changes and the answer is False (another delivery of its task or a cancel came first). When a host is held by
        another job the claim is undone, the job waits for that host, and WaitForHost is raised."""
        try:
            # The write comes first: SQLite cannot upgrade a reading transaction while another process writes.
            with transaction.atomic():
                now = timezone.now()
                started = (
                    Job.objects.pending()
                    .filter(pk=self.pk, cancel_requested=False)
                    .update(state=JobState.RUNNING, runner=token, started_at=now, heartbeat_at=now, waiting_for="")
                )
                if not started:
                    return False
                self._lock(hosts)
        except WaitForHost as wait:
            self.wait_for(wait.host_name)
            raise
        self._changed()
        return True

    def wait_for(self, host_name: str) -> None:
        """queued/waiting → waiting for `host_name`, which another job holds. Precondition: the job is pending (one
        that started or ended meanwhile is left alone). Viewers hear of it only when what they see changes."""
        updated = Job.objects.pending().filter(pk=self.pk).update(state=JobState.WAITING, waiting_for=host_name)
        if updated and (self.state != JobState.WAITING or self.waiting_for != host_name):
            self._changed()

    def take_over(self, token: str) -> bool:
        """Hand the running job to the runner `token`: a redelivered task resumes it. Precondition: the runner this
        instance names is dead (see runner.runner_alive); False when the job changed runner or state meanwhile."""
        taken = (
            Job.objects.running()
            .filter(pk=self.pk, runner=self.runner)
            .update(runner=token, heartbeat_at=timezone.now())
        )
        if taken:
            self.refresh_from_db()
        return bool(taken)

    def heartbeat(self, token: str) -> bool:
        """The runner `token` still works on the job. Precondition: none; False when the job is not its any more
        (another runner took it over, or it ended: a lost job keeps the last heartbeat its explanation names)."""
        return bool(Job.objects.running().filter(pk=self.pk, runner=token).update(heartbeat_at=timezone.now()))

    def held_by(self, token: str) -> bool:
        """Is the job still running under the runner `token`? The fencing check made right before a runner sends an
        operation to a host: one query on the primary key. Precondition: none."""
        return Job.objects.running().filter(pk=self.pk, runner=token).exists()

    def save_lines(self, token: str, rows: list[JobLogLine]) -> bool:
        """Save a batch of the runner `token`'s log lines (numbered by it, after last_seq) with the new last_seq, only
        while the job is still running under `token`. False, and nothing saved, when it is not: those numbers may be
        used by whoever has the job now (the reaper's explanation, another runner's lines)."""
        with transaction.atomic():
            # The write comes first (see claim), and its row lock orders it with mark_lost and take_over.
            owned = Job.objects.running().filter(pk=self.pk, runner=token).update(last_seq=rows[-1].seq)
            if not owned:
                return False
            JobLogLine.objects.bulk_create(rows)
        return True

    def finish(self, token: str, state: str, summary: str = "", error: str = "") -> bool:
        """running → `state` (a terminal state, else ValueError) with the summary, error and results; in the same
        transaction its host locks are released and `job.<state>` audited, so once the final state is visible the
        job writes nothing more. Then jobs waiting for those hosts are woken.
        Precondition: the runner's log pump has stopped, so last_seq counts every line (the pump writes it with the
        lines). False, and nothing changed, when the job is not running under `token` (the reaper took it)."""
        check_terminal(state)
        with transaction.atomic():
            ended = (
                Job.objects.running()
                .filter(pk=self.pk, runner=token)
                .update(
                    state=state,
                    summary=summary[:2000],
                    error=error[:4000],
                    finished_at=timezone.now(),
                    results=self.results,
                )
            )
            if not ended:
                return False
            released = self._release_locks()
            AuditEvent.record(None, f"job.{state}", self, kind=self.kind)
        self._changed()
        wake_waiting_jobs(released)
        return True

    def end_unstarted(self, state: str, summary: str = "", error: str = "") -> None:
        """End a job without running it (its kind is unknown, or it was cancelled before it started) in `state`
        (a terminal state, else ValueError). Precondition: no runner works on it; a job that already ended keeps
        its end."""
        check_terminal(state)
        Job.objects.filter(pk=self.pk).exclude(state__in=TERMINAL_STATES).update(
            state=state, summary=summary, error=error, finished_at=timezone.now(), waiting_for=""
        )
        self._changed()

    def mark_lost(self) -> bool:
        """running → lost, with the explanation as the log's last line, its host locks released and `job.lost`
        audited. Temporary files its steps noted on hosts and did not remove are named with the command that removes
        them. Precondition: the runner this instance names stopped heartbeating (the reaper checked); False when the
        job changed runner or state meanwhile."""
        with self.in_its_language():
            explanation = self.lost_explanation()
        with transaction.atomic():
            lost = (
                Job.objects.running()
                .filter(pk=self.pk, runner=self.runner)
                .update(state=JobState.LOST, error=explanation, finished_at=timezone.now())
            )
            if not lost:
                return False
            released = self._release_locks()
            line = self._append_line(explanation, "error")
            AuditEvent.record(None, "job.lost", self, kind=self.kind)
        self.refresh_from_db()
        publish(job_group(self.pk), lines_message([line]))
        publish_state(self)
        wake_waiting_jobs(released)
        return True

    def lost_explanation(self) -> str:
        """Why the job is lost and what to do, with the temporary files its steps left (active language)."""
        last = self.heartbeat_at.strftime("%H:%M:%S UTC") if self.heartbeat_at else _("never")
        explanation = _(
            "The worker running this job stopped (last heartbeat %(last)s). What it did on the host up to then is in "
            "the log; refresh the host's inventory and check it before running the job again."
        ) % {"last": last}
        return explanation + "".join(f" {text}" for text in self.temporary_files_advice())

    def temporary_files_left(self) -> dict[str, list[str]]:
        """{host name: paths} of the temporary files the job's steps noted on hosts and have not removed."""
        left: dict[str, list[str]] = {}
        for data in self.steps.values_list("data", flat=True):
            noted = data.get(TEMPORARY_FILES) if isinstance(data, dict) else None
            for host, paths in (noted or {}).items():
                known = left.setdefault(str(host), [])
                for path in paths:
                    if path not in known:
                        known.append(path)
        return {host: paths for host, paths in left.items() if paths}

    def temporary_files_advice(self) -> list[str]:
        """One sentence per host with temporary files left: which, and the PowerShell that removes them (rendered
        like Show PowerShell, so every path is quoted by the same function as what the console sends)."""
        advice = _(
            "Temporary files may be left on %(host)s (PFX files hold private keys): remove them there with %(command)s"
        )
        return [
            advice % {"host": host, "command": "; ".join(render_powershell(RemoveFiles(paths)))}
            for host, paths in self.temporary_files_left().items()
        ]

    def cancel(self, user: Any) -> None:
        """At `user`'s request: a pending job (or one waiting for approval) ends cancelled at once and never runs; a
        running one is asked to stop at its next safe point (its runner notices within a second). Precondition:
        none; a job that has ended is left as it is. Audited as `job.cancel` either way."""
        name = user.get_username() if user is not None else "console"
        with self.in_its_language():
            summary = _("Cancelled by %(name)s before it started.") % {"name": name}
        stopped = (
            Job.objects.filter(state__in=PENDING_STATES | {JobState.AWAITING_APPROVAL})
            .filter(pk=self.pk)
            .update(
                state=JobState.CANCELLED,
                cancel_requested=True,
                cancelled_by_name=name,
                finished_at=timezone.now(),
                waiting_for="",
                summary=summary,
            )
        )
        if not stopped:
            Job.objects.running().filter(pk=self.pk).update(cancel_requested=True, cancelled_by_name=name)
        self.refresh_from_db()
        AuditEvent.record(user, "job.cancel", self, state=self.state)
        publish_state(self)

    def _changed(self) -> None:
        self.refresh_from_db()
        publish_state(self)

    def _lock(self, hosts: Sequence[Host]) -> None:
        """Take every host's lock or raise WaitForHost (the caller's transaction then gives back those taken)."""
        for host in hosts:
            try:
                with transaction.atomic():
                    HostLock.objects.create(host=host, job=self)
            except IntegrityError:
                holder = HostLock.objects.filter(host=host).values_list("job_id", flat=True).first()
                if holder != self.pk:
                    raise WaitForHost(host.name) from None

    def _release_locks(self) -> list[int]:
        """Release the job's host locks; returns the hosts released. Call inside the transaction that ends it."""
        released = list(HostLock.objects.filter(job=self).values_list("host_id", flat=True))
        HostLock.objects.filter(job=self).delete()
        return released

    def _append_line(self, text: str, level: str) -> JobLogLine:
        """One more line after the last one saved. Only once its runner is gone: a runner numbers its own lines."""
        seq = (Job.objects.filter(pk=self.pk).values_list("last_seq", flat=True).first() or 0) + 1
        line = JobLogLine.objects.create(job=self, seq=seq, at=timezone.now(), level=level, text=text)
        Job.objects.filter(pk=self.pk).update(last_seq=seq)
        return line


def state_label_of(state: str) -> str:
    return str(JobState(state).label) if state in JobState.values else state


def badge_text(state: str, waiting_for: str, cancel_requested: bool) -> str:
    """The state as its badge says it: "waiting for HV01", "running · cancelling"."""
    label = state_label_of(state)
    if state == JobState.WAITING and waiting_for:
        waited = _("the task queue") if waiting_for == TASK_QUEUE else waiting_for
        label = _("waiting for %(what)s") % {"what": waited}
    if state == JobState.RUNNING and cancel_requested:
        label = _("%(state)s · cancelling") % {"state": label}
    return label


def ran_text(started_at: datetime | None, finished_at: datetime | None) -> str:
    if started_at is None:
        return _("not started")
    return spoken_duration((finished_at or timezone.now()) - started_at)


def spoken_state(message: dict[str, Any]) -> dict[str, Any]:
    """A state message (Job.state_message) with its words said again in the active language: each viewer's socket
    sends it in the viewer's language, whoever published it (a runner writes in its job's language)."""
    moment = {
        key: EPOCH + timedelta(milliseconds=message[key]) if message.get(key) else None
        for key in ("started", "finished")
    }
    said = {
        **message,
        "state_label": state_label_of(message["state"]),
        "badge": badge_text(message["state"], message.get("waiting_for", ""), message.get("cancel_requested", False)),
        "ran": ran_text(moment["started"], moment["finished"]),
    }
    if isinstance(message.get("progress"), dict):
        said["progress"] = spoken_progress(message["progress"])
    return said


def spoken_duration(duration: timedelta) -> str:
    """ "45 s", "2 min 5 s", "1 h 3 min": a duration as a person says it."""
    seconds = max(0, int(duration.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return _("%(hours)s h %(minutes)s min") % {"hours": hours, "minutes": minutes}
    if minutes:
        return _("%(minutes)s min %(seconds)s s") % {"minutes": minutes, "seconds": seconds}
    return _("%(seconds)s s") % {"seconds": seconds}


def send_run_task(job_id: int) -> None:
    current_app.send_task(RUN_JOB_TASK, args=[job_id])


def wake_waiting_jobs(host_ids: list[int]) -> None:
    """Send the task of the oldest jobs waiting for the released hosts at once, instead of waiting for its retry.
    Best effort: a job whose task cannot be sent waits for the task queue (see Job.send)."""
    if not host_ids:
        return
    waiting = Job.objects.waiting_on(host_ids).order_by("pk").values_list("pk", flat=True)
    for job_id in list(dict.fromkeys(waiting))[:5]:
        job = Job.objects.filter(pk=job_id).first()
        if job is not None and not job.send():
            return  # the task queue is down: the reaper sends them once it is back


class JobLogLine(models.Model):
    """One line of a job's log; `seq` counts from 1 per job without gaps."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="lines")
    seq = models.PositiveIntegerField()
    at = models.DateTimeField()
    level = models.CharField(max_length=10, default="info")
    text = models.TextField()
    # A page of this console that fixes what the line reports (a remedy: "/jobs/new/reset/?host=3"), given by the
    # code that logs it (extra={"job_link": url}), so pages make it a link without reading URLs out of the text.
    link = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="jobs_line_unique_seq")]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.seq} {self.text[:60]}"

    def as_message(self) -> list[Any]:
        return line_tuple(self.seq, self.at, self.level, self.text, self.link)


def line_tuple(seq: int, at: Any, level: str, text: str, link: str = "") -> list[Any]:
    """The compact wire form of a line: [seq, epoch milliseconds, level, text], and its link when it has one."""
    return [seq, epoch_millis(at), level, text, *([link] if link else [])]


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


def lines_message(rows: list[JobLogLine]) -> dict[str, Any]:
    """The group message of a batch: its websocket frame is encoded here once, not once per viewer."""
    frame = lines_frame([line_tuple(row.seq, row.at, row.level, row.text, row.link) for row in rows])
    return {"type": "job.lines", "first": rows[0].seq, "last": rows[-1].seq, "frame": frame}


def join_frames(frames: list[str]) -> str:
    """One frame holding the lines of several consecutive frames made by lines_frame."""
    start, end = len(LINES_FRAME_START), -len(LINES_FRAME_END)
    return LINES_FRAME_START + ",".join(frame[start:end] for frame in frames) + LINES_FRAME_END


class StepState(models.TextChoices):
    STARTED = "started", pgettext_lazy("step state", "started")
    DONE = "done", pgettext_lazy("step state", "done")
    FAILED = "failed", pgettext_lazy("step state", "failed")


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


class OrphanedRun(models.Model):
    """A run of a job that lost it while it was still working: the reaper declared the job lost (its worker was
    paused, not dead) or a redelivered task took it over. The runner noticed right before sending an operation (or
    at its next step, or when it ended), sent nothing more, and wrote this instead of the job's log and state, which
    are no longer its own: its lines after the loss are kept here, never numbered into the job's log."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="orphaned_runs")
    runner = models.CharField(max_length=200)  # the runner token that had lost the job
    noticed_at = models.DateTimeField(default=timezone.now)
    job_state = models.CharField(max_length=16, blank=True)  # what the job was when the runner noticed
    job_runner = models.CharField(max_length=200, blank=True)  # whose the job was by then ("" when nobody's)
    steps_done = models.JSONField(default=list, blank=True)  # steps this run completed
    stopped_before = models.TextField(blank=True)  # the operation it was about to send, as PowerShell: not sent
    outcome = models.TextField(blank=True)  # how the run would have ended, had the job still been its own
    lines = models.JSONField(default=list, blank=True)  # [[ISO time, level, text], …] logged after the loss

    MAX_LINES = 1000

    class Meta:
        ordering = ["job", "noticed_at", "id"]

    def __str__(self) -> str:
        return f"orphaned run of job {self.job_id} by {self.runner}"

    @classmethod
    def record(
        cls,
        job: Job,
        runner: str,
        steps_done: list[str],
        stopped_before: str = "",
        outcome: str = "",
        lines: Sequence[tuple[datetime, str, str, str]] = (),
    ) -> OrphanedRun:
        """Write what the runner `runner` knows after losing `job`, and audit it as `job.orphaned`.
        Precondition: the job is not running under `runner` any more (the runner checked)."""
        row = Job.objects.filter(pk=job.pk).values_list("state", "runner").first() or ("", "")
        kept = list(lines)[-cls.MAX_LINES :]
        with transaction.atomic():
            orphaned = cls.objects.create(
                job=job,
                runner=runner,
                job_state=row[0],
                job_runner=row[1] if row[1] != runner else "",
                steps_done=list(steps_done),
                stopped_before=stopped_before[:4000],
                outcome=outcome[:4000],
                lines=[[at.isoformat(), level, text] for at, level, text, _link in kept],
            )
            AuditEvent.record(
                None,
                "job.orphaned",
                job,
                runner=runner,
                job_state=orphaned.job_state,
                steps_done=orphaned.steps_done,
                stopped_before=orphaned.stopped_before,
                outcome=orphaned.outcome,
                lines=len(kept),
            )
        return orphaned

    @property
    def job_state_label(self) -> str:
        return str(JobState(self.job_state).label) if self.job_state in JobState.values else self.job_state

    @property
    def lines_display(self) -> list[tuple[str, str, str]]:
        """(time, level, text) of each line, as the job page shows them."""
        return [(str(at)[11:23], str(level), str(text)) for at, level, text in self.lines]
