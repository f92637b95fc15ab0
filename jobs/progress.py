"""How far a job has got: the steps its kind planned (jobs/registry.py `outline`) merged with the steps it recorded
(JobStep rows), in order, each done, failed, running, to come, or not run.

No model is imported here: the Job model hands its steps in (Job.progress), so that its state message can carry
the progress without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from .registry import PlannedStep, outline_of

# What a step is, as the job page and the job list say it (the CSS classes are the keys).
DONE, FAILED, RUNNING, TO_COME, NOT_RUN, INTERRUPTED = "done", "failed", "running", "to_come", "not_run", "interrupted"
STEP_WORDS = {
    DONE: pgettext_lazy("step state", "done"),
    FAILED: pgettext_lazy("step state", "failed"),
    RUNNING: pgettext_lazy("step state", "running"),
    TO_COME: pgettext_lazy("step state", "to come"),
    NOT_RUN: pgettext_lazy("step state", "not run"),
    INTERRUPTED: pgettext_lazy("step state", "interrupted"),
}


class RecordedStep(Protocol):
    """A JobStep as this module needs it."""

    key: str
    state: str
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class StepView:
    title: str
    state: str
    of: tuple[int, int] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def words(self) -> str:
        return str(STEP_WORDS[self.state])

    @property
    def counted(self) -> str:
        """ "2 of 3" for a step repeated per VM or host, else ""."""
        return _("%(n)s of %(m)s") % {"n": self.of[0], "m": self.of[1]} if self.of else ""

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def as_message(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "state": self.state,
            "words": self.words,
            "of": self.counted,
            "count": list(self.of) if self.of else None,  # so each viewer's socket says "2 of 3" in its language
            "started": millis(self.started_at),
            "finished": millis(self.finished_at),
        }


def millis(at: datetime | None) -> int | None:
    return int(at.timestamp() * 1000) if at is not None else None


def merge(planned: list[PlannedStep], recorded: Sequence[RecordedStep], ended: bool) -> list[StepView]:
    """The planned steps in their order, with what each recorded step says; a recorded step the plan did not
    foresee (one a host's answer decided) goes before the next planned step recorded after it."""
    by_title = {step.key: step for step in recorded}
    planned_titles = {step.title[:200] for step in planned}
    order = {step.key: index for index, step in enumerate(recorded)}
    views: list[StepView] = []
    emitted = 0  # recorded steps up to this index are shown
    for plan in planned:
        found = by_title.get(plan.title[:200])
        if found is not None:
            for extra in recorded[emitted : order[found.key]]:
                if extra.key not in planned_titles:
                    views.append(view_of(extra, None, ended))
            emitted = max(emitted, order[found.key] + 1)
            views.append(view_of(found, plan.of, ended))
        else:
            views.append(StepView(plan.title, NOT_RUN if ended else TO_COME, plan.of))
    views.extend(view_of(extra, None, ended) for extra in recorded[emitted:] if extra.key not in planned_titles)
    return views


def view_of(step: RecordedStep, of: tuple[int, int] | None, ended: bool) -> StepView:
    state = {"done": DONE, "failed": FAILED}.get(step.state, INTERRUPTED if ended else RUNNING)
    return StepView(step.key, state, of, step.started_at, step.finished_at)


@dataclass(frozen=True)
class Progress:
    steps: list[StepView]

    @property
    def done(self) -> int:
        return sum(1 for step in self.steps if step.state == DONE)

    @property
    def current(self) -> StepView | None:
        return next((step for step in self.steps if step.state == RUNNING), None)

    @property
    def headline(self) -> str:
        """ "step 3 of 7: Restore VM 'b' on HV02 (2 of 3)" while a step runs; "" when there is nothing to say."""
        current = self.current
        if current is None:
            return ""
        position = self.steps.index(current) + 1
        if current.counted:
            return _("step %(n)s of %(m)s: %(title)s (%(counted)s)") % {
                "n": position,
                "m": len(self.steps),
                "title": current.title,
                "counted": current.counted,
            }
        return _("step %(n)s of %(m)s: %(title)s") % {"n": position, "m": len(self.steps), "title": current.title}

    def as_message(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "total": len(self.steps),
            "headline": self.headline,
            "steps": [step.as_message() for step in self.steps],
        }


def counted_pair(count: Any) -> tuple[int, int] | None:
    return (int(count[0]), int(count[1])) if isinstance(count, list) and len(count) == 2 else None


def spoken_progress(message: dict[str, Any]) -> dict[str, Any]:
    """A progress message (Progress.as_message) with its words said again in the active language: what a viewer's
    socket sends, whoever published it. Without its steps (the job list's) it is left as it is."""
    steps = message.get("steps")
    if not isinstance(steps, list):
        return message
    views = [StepView(step["title"], step["state"], counted_pair(step.get("count"))) for step in steps]
    said = [{**step, "words": view.words, "of": view.counted} for step, view in zip(steps, views, strict=True)]
    return {**message, "headline": Progress(views).headline, "steps": said}


def progress(job: Any, recorded: Sequence[RecordedStep], ended: bool) -> Progress:
    return Progress(merge(outline_of(job), recorded, ended))
