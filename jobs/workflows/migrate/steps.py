"""The migration wizard's steps (VM → target → method → unsealing → review): a presentation of the one migration
form. Every step's page carries the choices of the other steps in hidden fields (and its links in the query
string), so the page works without JavaScript; `MigrationForm` and `preflight()` validate all of them each time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

STEPS = {
    "vm": gettext_lazy("The VM"),
    "target": gettext_lazy("The target"),
    "method": gettext_lazy("The method"),
    "unseal": gettext_lazy("Unsealing and afterwards"),
    "review": gettext_lazy("Review and start"),
}
ORDER = list(STEPS)
# The fields each step shows; the others travel in hidden fields. Review shows none: it checks them all.
FIELDS = {
    "vm": ("host", "vm"),
    "target": ("target",),
    "method": ("method", "share", "new_id", "files_path"),
    "unseal": ("unseal", "start", "source_after"),
    "review": (),
}
CARRIED = ("host", "vm", "target", "method", "share", "new_id", "files_path", "unseal", "start", "source_after")


@dataclass(frozen=True)
class StepLink:
    key: str
    label: str | Promise
    url: str  # "" for the current step and the ones not reachable yet
    current: bool


def step_of(requested: str, preview: bool, first_open: str) -> str:
    """The step to show: the one asked for, never past the first step whose choices are missing or refused. Without
    a step (an old link, the API, "Run again") a checked request is the review; else the first open step, at most
    the one before the review (which reads both hosts only when asked)."""
    if not requested:
        return "review" if preview else ORDER[min(ORDER.index(first_open), ORDER.index("unseal"))]
    return ORDER[min(ORDER.index(requested), ORDER.index(first_open))]


def carried(chosen: dict[str, Any]) -> dict[str, str]:
    """The choices as the form takes them back: booleans as "on" (absent when off, `form=1` says the boxes were
    on a page), hosts by primary key."""
    values: dict[str, str] = {"form": "1"}
    for name in CARRIED:
        value = chosen.get(name)
        if isinstance(value, bool):
            if value:
                values[name] = "on"
        elif value not in (None, ""):
            values[name] = str(getattr(value, "pk", value))
    return values


def hidden_fields(values: dict[str, str], step: str) -> list[tuple[str, str]]:
    """The choices the step does not show, as hidden fields."""
    return [(name, value) for name, value in values.items() if name not in FIELDS[step]]


def step_links(values: dict[str, str], step: str, first_open: str) -> list[StepLink]:
    """The steps as a trail: each one reachable with the choices so far is a link (the current one is not)."""
    reachable = ORDER.index(first_open)
    links = []
    for index, (key, label) in enumerate(STEPS.items()):
        url = "" if key == step or index > reachable else "?" + urlencode({**values, "step": key})
        links.append(StepLink(key, label, url, key == step))
    return links


def next_step(step: str) -> str:
    return ORDER[min(ORDER.index(step) + 1, len(ORDER) - 1)]


def previous_step(step: str) -> str:
    return ORDER[max(ORDER.index(step) - 1, 0)]
