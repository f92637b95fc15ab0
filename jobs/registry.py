"""The registry of job kinds: which kinds exist, their labels and what running one needs (`@job_kind`).

It imports no model, so the Job model can name its kind (`Job.label`) without importing what runs kinds; kind authors
import `job_kind` from jobs/kinds.py, next to the JobContext their function receives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from hosts.models import Host

    from .kinds import JobContext
    from .models import Job


class UnknownJobKind(KeyError):
    pass


class RerunNeedsPreflight(Exception):
    """This kind is not re-run in one click: its preflight page (if any) must be confirmed again."""


KindFunction = Callable[["JobContext"], str]
PreflightUrl = Callable[["Job"], str]
# `rule(hosts, params)` → why a job of the kind with these targets needs a second admin's approval under the
# two-person policy ("" when it does not): one rule per kind, read by services.create_job whatever starts the job.
ApprovalRule = Callable[[Sequence["Host"], dict[str, Any]], str]


@dataclass(frozen=True)
class PlannedStep:
    """A step a job is known to take before it runs (its title is the one the kind passes to `ctx.step`); `of` is
    (n, m) for the n-th of m steps that repeat per VM or host."""

    title: str
    of: tuple[int, int] | None = None


# `outline(job)` → the steps the job will take, in order, as far as its parameters tell (steps a host's answers
# decide appear when they run). The job page lists them with the current one; the job list shows "n of m".
Outline = Callable[["Job"], list[PlannedStep]]


def each(titles: list[str]) -> list[PlannedStep]:
    """The same step repeated per VM or host: numbered "n of m" when there are several."""
    count = len(titles)
    return [PlannedStep(title, (n, count) if count > 1 else None) for n, title in enumerate(titles, start=1)]


# The permission of kinds that change or remove what cannot simply be put back. Their preflight page asks for a
# typed confirmation, so "Run again" sends the user back there instead of re-running in one click.
DESTRUCTIVE_PERMISSION = "run_destructive_jobs"


@dataclass(frozen=True)
class JobKind:
    """A registered kind: the function and what running it needs."""

    name: str
    label: StrOrPromise  # gettext_lazy: each page says it in its reader's language
    permission: str
    mutating: bool
    function: KindFunction
    refresh_inventory: bool = True  # refresh the touched hosts' inventory after the job
    # `preflight_url(job)` → the kind's preflight page filled with that job's targets and parameters (a same-site
    # path). When set, "Run again" goes there; a destructive kind without one cannot be re-run from its job page.
    preflight_url: PreflightUrl | None = None
    approval: ApprovalRule | None = None  # None: never needs approval
    outline: Outline | None = None

    @property
    def destructive(self) -> bool:
        return self.permission == DESTRUCTIVE_PERMISSION

    @property
    def one_click_rerun(self) -> bool:
        """May "Run again" create the new job directly? Not when the kind has a preflight page or is destructive."""
        return self.preflight_url is None and not self.destructive


KINDS: dict[str, JobKind] = {}


def job_kind(
    name: str,
    *,
    label: StrOrPromise,
    permission: str = "run_jobs",
    mutating: bool = True,
    refresh_inventory: bool = True,
    preflight_url: PreflightUrl | None = None,
    approval: ApprovalRule | None = None,
    outline: Outline | None = None,
) -> Callable[[KindFunction], KindFunction]:
    """Register `function(ctx) -> summary` as the job kind `name`. Mutating kinds take a per-host lock."""

    def register(function: KindFunction) -> KindFunction:
        KINDS[name] = JobKind(
            name, label, permission, mutating, function, refresh_inventory, preflight_url, approval, outline
        )
        return function

    return register


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownJobKind(name) from None


def label_of(name: str) -> str:
    """The kind's label in the active language (the name itself for a kind no longer known)."""
    kind = KINDS.get(name)
    return str(kind.label) if kind else name


def approval_of(job: Job) -> str:
    """Why the job's kind asks a second admin to approve it, said again now in the active language ("" when the
    kind is gone, has no such rule, or its rule no longer applies)."""
    kind = KINDS.get(job.kind)
    if kind is None or kind.approval is None:
        return ""
    order = {name: i for i, name in enumerate(job.host_names)}
    hosts = sorted(job.hosts.all(), key=lambda host: order.get(host.name, len(order)))
    return kind.approval(hosts, job.params)


def outline_of(job: Job) -> list[PlannedStep]:
    """The steps the job's kind plans for it; none for a kind without an outline (or no longer known).

    In the job's language, whoever reads them: its steps are recorded (JobStep.key) under the titles the run made in
    that language (jobs/runner.py), and jobs/progress.py matches the planned steps to the recorded ones by title."""
    kind = KINDS.get(job.kind)
    if kind is None or kind.outline is None:
        return []
    with job.in_its_language():
        return [PlannedStep(str(step.title), step.of) for step in kind.outline(job)]
