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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from django.utils import timezone

from hosts.remoting import open_session

from .models import JobStep, StepState
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
    "KindFunction",
    "PreflightUrl",
    "RerunNeedsPreflight",
    "Run",
    "Step",
    "UnknownJobKind",
    "get_kind",
    "job_kind",
    "label_of",
]


class JobFailed(Exception):
    """Raise from a job kind to end the job `failed` with this message (say what went wrong and the remedy)."""


class JobCancelled(Exception):
    """Raised by `ctx.check_cancelled()` at a safe point once someone asked to cancel the job."""


@dataclass
class Step:
    """Handed out by `ctx.step()`: `needed` is False when a redelivered task finds the step already done."""

    title: str
    needed: bool
    data: dict[str, Any] = field(default_factory=dict)  # kept with the step, for a resumed job to read back


LogFunction = Callable[[str, str], None]


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
    ) -> None:
        self.job = job
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
        self._sessions: dict[int, Any] = {}
        self._exit = ExitStack()

    @property
    def host(self) -> Host | None:
        return self.hosts[0] if self.hosts else None

    def log(self, text: str, level: str = "info") -> None:
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
        if self._cancel.is_set():
            raise JobCancelled("cancelled at user request")

    # Sessions ---------------------------------------------------------------------------------------------
    def session(self, host: Host) -> Any:
        """The HostSession for `host`, opened once per job; its streams and steps go into this job's log."""
        if host.pk not in self._sessions:
            self.check_cancelled()
            prefix = f"{host.name}: " if len(self.hosts) > 1 else ""

            def session_log(text: str, level: str = "info") -> None:
                self.log(prefix + text, level)

            manager = open_session(host.connection_spec(), log=session_log, on_secret=self.keep_secret)
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
            self.log(f"Closing the remote session failed: {exc}", "warning")
        finally:
            sessions.clear()

    # Steps and results ------------------------------------------------------------------------------------
    @contextmanager
    def step(self, title: str, destructive: bool = False) -> Iterator[Step]:
        """Record a named step; a step done by an earlier delivery of this job is not run again."""
        self.check_cancelled()
        record, created = JobStep.objects.get_or_create(
            job=self.job, key=title[:200], defaults={"destructive": destructive}
        )
        step = Step(title=title, needed=True, data=dict(record.data))
        if not created:
            step.needed = self._resume_step(record, destructive)
        if step.needed:
            self.log(f"▶ {title}", "info")
        try:
            yield step
        except BaseException:
            if step.needed:
                self._finish_step(record, StepState.FAILED, step.data)
            raise
        if step.needed:
            self._finish_step(record, StepState.DONE, step.data)
            self.steps_done.append(title)

    def _resume_step(self, record: JobStep, destructive: bool) -> bool:
        if record.state == StepState.DONE:
            self.log(f"Skipping “{record.key}”: it was done before the worker restarted.", "info")
            return False
        if record.destructive or destructive:
            raise JobFailed(
                f"The step “{record.key}” was interrupted when a worker stopped, so its outcome is unknown. "
                "It was not run again: refresh the host's inventory and check it before running this job again."
            )
        record.state = StepState.STARTED
        record.started_at = timezone.now()
        record.save(update_fields=["state", "started_at"])
        return True

    @staticmethod
    def _finish_step(record: JobStep, state: str, data: dict[str, Any]) -> None:
        record.state = state
        record.data = data
        record.finished_at = timezone.now()
        record.save(update_fields=["state", "data", "finished_at"])

    def record(self, key: str, value: Any) -> None:
        """Keep a piece of result data on the job (JSON; never a secret)."""
        check_no_secrets({key: value})
        self.job.results[key] = value
        type(self.job).objects.filter(pk=self.job.pk).update(results=self.job.results)
