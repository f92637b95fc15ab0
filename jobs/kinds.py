"""What a job kind is and what it may do while it runs: `@job_kind` and the `JobContext` handed to the kind.

Workflows (jobs/workflows/) are plain functions `kind(ctx) -> str` registered with `@job_kind` (jobs/registry.py);
the runner (jobs/runner.py) gives them a JobContext and owns everything around them: locks, heartbeat, log storage,
sessions, cancellation and the final state.

How a kind ends decides the job's end state: returning a summary → succeeded; raising JobFailed (an expected,
explained failure: say what went wrong and the remedy) → failed, as does a host's RemotingError (it says what to
check); any other exception → errored (an unexpected fault, shown with its type and cleaned message); a cancel →
cancelled.

Logging: a workflow writes its lines with its module's logger, `log = logging.getLogger(__name__)`, then
`log.info("Exporting %s", name)`. While a job runs, records of the loggers under jobs.workflows, jobs.inventory and
hosts become lines of that job's log (jobs/joblog.py), redacted like every line: warning and error keep their level,
`extra={"job_level": "progress"}` (or "verbose") picks one of the log's own levels. Only the thread that runs the
job logs into it: work handed to other threads gets a log callable (see host_log in jobs/inventory.py). Outside a
job (a preflight page, a test calling the plan directly) the same records go only to the usual handlers.
`ctx.log(...)` stays for the runner's own lines to the user.

Fencing: every operation a job sends through `ctx.session(host)` is preceded by a check that the job still runs
under this runner (see Job.held_by). When it does not (the reaper declared it lost while this worker was paused, or
another worker took it over), OwnershipLost is raised: a BaseException, like KeyboardInterrupt, so that no
`except Exception` or `except RemotingError` in a workflow swallows it. The runner then writes an OrphanedRun.

Temporary files: a workflow that writes files on a host (PFX files hold private keys) notes them first with
`note_temporary_files(host, paths)` and forgets them once removed (`forget_temporary_files`); they are kept with
the running step, so a job that is lost meanwhile names them with the command that removes them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from django.db import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext as _

from hosts.remoting import open_session
from hosts.remoting.errors import RemotingError
from hosts.remoting.operation import Operation, render_powershell

from . import events
from .models import TEMPORARY_FILES, JobState, JobStep, StepState
from .params import check_no_secrets
from .redaction import Redactor
from .registry import (
    DESTRUCTIVE_PERMISSION,
    KINDS,
    JobKind,
    KindFunction,
    PreflightUrl,
    RerunNeedsPreflight,
    UnknownJobKind,
    get_kind,
    job_kind,
    label_of,
)

if TYPE_CHECKING:
    from hosts.models import Host

    from .models import Job

# The registry is re-exported: a kind's module imports everything it needs from here.
__all__ = [
    "DESTRUCTIVE_PERMISSION",
    "KINDS",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobKind",
    "JobPartlyFailed",
    "KindFunction",
    "OwnershipLost",
    "PreflightUrl",
    "RerunNeedsPreflight",
    "Run",
    "Step",
    "UnknownJobKind",
    "forget_temporary_files",
    "get_kind",
    "job_kind",
    "label_of",
    "note_temporary_files",
]


class JobFailed(Exception):
    """Raise from a job kind to end the job `failed` with this message (say what went wrong and the remedy)."""


class JobPartlyFailed(Exception):
    """Raise from a job kind when some of its hosts or VMs were done and others failed: the job ends
    `partly failed`, with `summary` (what was done) and `error` (what failed, and the remedy)."""

    def __init__(self, summary: str, error: str) -> None:
        super().__init__(error)
        self.summary = summary
        self.error = error


class JobCancelled(Exception):
    """Raised by `ctx.check_cancelled()` at a safe point once someone asked to cancel the job."""


class OwnershipLost(BaseException):  # noqa: N818 - an outcome, like JobCancelled
    """This runner no longer owns its job (the reaper declared it lost, or another runner took it over): stop at
    once and send nothing more. A BaseException so that no `except Exception` in a workflow catches it by accident;
    only the runner does. `stopped_before` is the operation that was about to be sent (as PowerShell), if any."""

    def __init__(self, job_id: int, stopped_before: str = "") -> None:
        super().__init__(f"job {job_id} is no longer this runner's")
        self.stopped_before = stopped_before


log = logging.getLogger(__name__)

# How often a fencing check that could not reach the database is tried before the run gives up on the operation.
FENCE_ATTEMPTS = 3


@dataclass
class Step:
    """Handed out by `ctx.step()`: `needed` is False when a redelivered task finds the step already done."""

    title: str
    needed: bool
    data: dict[str, Any] = field(default_factory=dict)  # kept with the step, for a resumed job to read back


LogFunction = Callable[..., None]  # write(text, level) or write(text, level, link)
Publish = Callable[[str, dict[str, Any]], None]  # (group, message)


class Run(Protocol):
    """What a workflow's plan and kind need from the run they are part of. A JobContext is one; tests run workflows
    directly with tests/plugins/runs.py's DirectRun. Lines are logged through the module's logger (jobs/joblog.py)."""

    user: Any

    def step(self, title: str, destructive: bool = False) -> AbstractContextManager[Step]: ...

    def record(self, key: str, value: Any) -> None: ...

    def check_cancelled(self) -> None: ...


class JobContext:
    """Everything a job kind may use while it runs. Created by the runner, one per run of a job."""

    def __init__(
        self,
        job: Job,
        hosts: list[Host],
        write: LogFunction,
        resumed: bool = False,
        redactor: Redactor | None = None,
        token: str | None = None,
        publish: Publish | None = None,
    ) -> None:
        self.job = job
        # How step changes reach live viewers: the runner's log pump sends them after the lines logged before them.
        self._publish: Publish = publish if publish is not None else events.publish
        # The runner token that claimed the job: its fencing token (every remote operation checks it first).
        self.token = job.runner if token is None else token
        self.params: dict[str, Any] = dict(job.params)
        self.hosts = hosts
        self.vms: list[str] = list(job.vms)
        self.user = job.requested_by
        self.resumed = resumed
        self.touched: list[Host] = list(hosts)
        self.steps_done: list[str] = []
        self._write = write
        # The job's one Redactor: the runner's log pump masks every line with it, and error and summary too.
        self.redactor = redactor if redactor is not None else Redactor.for_hosts(hosts)
        self._cancel = threading.Event()
        self._lost = threading.Event()
        self._sessions: dict[int, Any] = {}
        self._exit = ExitStack()
        self._open_steps: list[tuple[JobStep, Step]] = []

    def the_host(self, missing: str = "") -> Host:
        """The job's (first) host; a job created without one ends failed with `missing` (what to choose)."""
        if self.host is None:
            raise JobFailed(missing or _("No host given."))
        return self.host

    @property
    def host(self) -> Host | None:
        return self.hosts[0] if self.hosts else None

    def log(self, text: str, level: str = "info", link: str = "") -> None:
        """A line of the job's log; `link`: the page of this console that fixes what it reports."""
        if link:
            self._write(str(text), level, link)
        else:
            self._write(str(text), level)

    # Secrets ----------------------------------------------------------------------------------------------
    def keep_secret(self, value: str) -> None:
        """Mask `value` in this job's log lines, error and summary from now on (a generated PFX password, a vault
        password: every Secret a session of this job sends is passed here before it is sent)."""
        self.redactor.add(str(value))

    def redact(self, text: str) -> str:
        return self.redactor.redact(text)

    # Cancellation -------------------------------------------------------------------------------------------
    def request_cancel(self) -> None:
        """Called by the runner's heartbeat thread: stop the running PowerShell pipelines and mark the context."""
        self._cancel.set()
        for session in list(self._sessions.values()):
            stop = getattr(session, "stop_current", None)
            if stop is not None:
                # A pipeline that already ended cannot be stopped; that is fine.
                with suppress(Exception):
                    stop()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """A safe point: raises JobCancelled once a cancel was requested, OwnershipLost once the job is not ours."""
        if self._lost.is_set():
            raise OwnershipLost(self.job.pk)
        if self._cancel.is_set():
            raise JobCancelled("cancelled at user request")

    # Fencing ----------------------------------------------------------------------------------------------
    def ownership_lost(self) -> None:
        """Called by the runner's heartbeat thread once the job is no longer this runner's: the next operation,
        step or safe point raises OwnershipLost."""
        self._lost.set()

    @property
    def owned(self) -> bool:
        return not self._lost.is_set()

    def check_owner(self, op: Operation[Any] | None = None) -> None:
        """The fencing check, right before `op` is sent: raise OwnershipLost unless the job still runs under this
        runner's token. A database that does not answer is asked again briefly; after that its error stands, and
        the operation is not sent either way."""
        for attempt in range(1, FENCE_ATTEMPTS + 1):
            try:
                held = self.owned and self.job.held_by(self.token)
                break
            except DatabaseError:
                if attempt == FENCE_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)
        if not held:
            self._lost.set()
            shown = "; ".join(render_powershell(op)) if op is not None else ""
            raise OwnershipLost(self.job.pk, stopped_before=self.redact(shown))

    # Sessions ---------------------------------------------------------------------------------------------
    def session(self, host: Host) -> Any:
        """The HostSession for `host`, opened once per job; its streams and steps go into this job's log."""
        if host.pk not in self._sessions:
            self.check_cancelled()
            self.check_owner()
            prefix = f"{host.name}: " if len(self.hosts) > 1 else ""

            def session_log(text: str, level: str = "info") -> None:
                self.log(prefix + text, level)

            manager = open_session(
                host.connection_spec(), log=session_log, on_secret=self.keep_secret, before_send=self.check_owner
            )
            self._sessions[host.pk] = self._exit.enter_context(manager)
            if all(h.pk != host.pk for h in self.touched):
                self.touched.append(host)
        return self._sessions[host.pk]

    def open_session_for(self, host: Host) -> Any | None:
        """The session already open for `host`, if any (the after-job inventory refresh reuses it)."""
        return self._sessions.get(host.pk)

    def close_sessions(self) -> None:
        sessions, self._sessions = self._sessions, {}
        try:
            self._exit.close()
        except Exception as exc:  # noqa: BLE001 - a host that went away while closing must not fail the job
            self.log(_("Closing the remote session failed: %(error)s") % {"error": exc}, "warning")
        finally:
            sessions.clear()

    # Steps and results ------------------------------------------------------------------------------------
    @contextmanager
    def step(self, title: str, destructive: bool = False, if_host_fails: str = "") -> Iterator[Step]:
        """Record a named step; a step done by an earlier delivery of this job is not run again.

        `if_host_fails`: the remedy when a host fails the step (a RemotingError that is not a cancel): the job then
        ends failed with what the host said followed by this remedy."""
        self.check_cancelled()
        # A runner that lost the job must not even start a step: the runner that took it over would find it
        # "started", and a destructive step started is one it refuses to run.
        self.check_owner()
        record, created = JobStep.objects.get_or_create(
            job=self.job, key=title[:200], defaults={"destructive": destructive}
        )
        step = Step(title=title, needed=True, data=dict(record.data))
        if not created:
            step.needed = self._resume_step(record, destructive)
        if step.needed:
            self.log(f"▶ {title}", "info")
            self.publish_progress()
        self._open_steps.append((record, step))
        try:
            yield step
        except OwnershipLost:
            raise  # the step stays "started": interrupted, as the job's new owner or the reaper sees it
        except BaseException as exc:
            if step.needed:
                self._finish_step(record, StepState.FAILED, step.data)
                self.publish_progress()
            if if_host_fails and isinstance(exc, RemotingError) and not self.cancel_requested:
                raise JobFailed(f"{exc} {if_host_fails}") from None
            raise
        finally:
            self._open_steps.pop()
        if step.needed:
            self._finish_step(record, StepState.DONE, step.data)
            self.steps_done.append(title)
            self.publish_progress()

    def publish_progress(self) -> None:
        """Tell the job's page and the job list how far the job has got (best effort: pages read it again)."""
        try:
            progress = self.job.progress().as_message()
        except DatabaseError:  # a busy database must not fail the step: the page shows the steps on its next read
            log.warning("reading the steps of job %s failed; progress not sent", self.job.pk, exc_info=True)
            return
        message = {"type": "job.progress", "progress": {"job": self.job.pk, **progress}}
        self._publish(events.job_group(self.job.pk), message)
        self._publish(events.JOBS_GROUP, message)

    def _resume_step(self, record: JobStep, destructive: bool) -> bool:
        if record.state == StepState.DONE:
            self.log(_("Skipping “%(step)s”: it was done before the worker restarted.") % {"step": record.key}, "info")
            return False
        if record.destructive or destructive:
            raise JobFailed(
                _(
                    "The step “%(step)s” was interrupted when a worker stopped, so its outcome is unknown. It was not "
                    "run again: refresh the host's inventory and check it before running this job again."
                )
                % {"step": record.key}
            )
        record.state = StepState.STARTED
        record.started_at = timezone.now()
        record.save(update_fields=["state", "started_at"])
        return True

    def _finish_step(self, record: JobStep, state: str, data: dict[str, Any]) -> None:
        record.state, record.data, record.finished_at = state, data, timezone.now()
        self._update_step(record, state=state, data=data, finished_at=record.finished_at)

    def _update_step(self, record: JobStep, **fields: Any) -> None:
        """Write a step of the job only while the job is still this runner's; else raise OwnershipLost."""
        mine = JobStep.objects.filter(pk=record.pk, job__state=JobState.RUNNING, job__runner=self.token)
        if not mine.update(**fields):
            self._lost.set()
            raise OwnershipLost(self.job.pk)

    def record(self, key: str, value: Any) -> None:
        """Keep a piece of result data on the job (JSON; never a secret). Only while the job is this runner's."""
        check_no_secrets({key: value})
        self.job.results[key] = value
        mine = type(self.job).objects.running().filter(pk=self.job.pk, runner=self.token)
        if not mine.update(results=self.job.results):
            self._lost.set()
            raise OwnershipLost(self.job.pk)

    # Temporary files on hosts -----------------------------------------------------------------------------
    def note_temporary_files(self, host: Any, paths: Iterable[str]) -> None:
        """Before writing `paths` on `host`: keep them with the running step, so that should the job be lost before
        they are removed, its explanation names them with the command that removes them."""
        record, step = self._step_for_files()
        noted: dict[str, list[str]] = step.data.setdefault(TEMPORARY_FILES, {})
        known = noted.setdefault(str(getattr(host, "name", host)), [])
        known.extend(path for path in dict.fromkeys(paths) if path not in known)
        self._update_step(record, data=step.data)

    def forget_temporary_files(self, host: Any, paths: Iterable[str]) -> None:
        """After `paths` were removed from `host` (or found gone)."""
        record, step = self._step_for_files()
        noted: dict[str, list[str]] = step.data.get(TEMPORARY_FILES, {})
        name = str(getattr(host, "name", host))
        gone = set(paths)
        noted[name] = [path for path in noted.get(name, []) if path not in gone]
        if not noted[name]:
            del noted[name]
        if not noted:
            step.data.pop(TEMPORARY_FILES, None)
        self._update_step(record, data=step.data)

    def _step_for_files(self) -> tuple[JobStep, Step]:
        """The innermost running step; outside any step, one of its own (files are always written by a step)."""
        if self._open_steps:
            return self._open_steps[-1]
        self.check_owner()  # the step is written to the job: only while it is ours
        record, _created = JobStep.objects.get_or_create(job=self.job, key=_("Temporary files on the hosts"))
        return record, Step(title=record.key, needed=True, data=record.data)


# The JobContext of the job running in this thread (or task), for domain code that has no ctx at hand: the PFX
# helpers of jobs/workflows/transfer.py note their temporary files through the module functions below.
_running: ContextVar[JobContext | None] = ContextVar("running_job_context", default=None)


@contextmanager
def running(ctx: JobContext) -> Iterator[None]:
    """Within this block, note_temporary_files and forget_temporary_files go to `ctx` (the runner sets it)."""
    token = _running.set(ctx)
    try:
        yield
    finally:
        _running.reset(token)


def note_temporary_files(host: Any, paths: Iterable[str]) -> None:
    """Before writing `paths` on `host`: see JobContext.note_temporary_files. Outside a job, nothing to do."""
    ctx = _running.get()
    if ctx is not None:
        ctx.note_temporary_files(host, paths)


def forget_temporary_files(host: Any, paths: Iterable[str]) -> None:
    """After `paths` were removed from `host`: see JobContext.forget_temporary_files."""
    ctx = _running.get()
    if ctx is not None:
        ctx.forget_temporary_files(host, paths)
