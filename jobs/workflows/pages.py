"""What every workflow page shares: its form's fields (hosts and other rows by id, choices from an inventory), the
job a preflight starts, the answer to a GET or a POST, the guardian preflight page, and "Run again" links back to a
preflight page. One way to do each, so each page is a form, a `preflight()` and a view of a few lines.

A page's permission is its job kind's (`@kind_page("reset_guardian")`): declared once, on the kind, and read here
and by `create_job`. A missing permission raises `Forbidden`, which the one 403 page renders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy

from console.params import parse_id
from console.roles import can, check
from hosts.models import Host
from jobs.kinds import get_kind
from jobs.models import Job
from jobs.services import create_job, ordered_hosts

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

View = Callable[..., HttpResponse]


def kind_page(kind: str) -> Callable[[View], View]:
    """View decorator: the user needs the permission of job kind `kind` (looked up when the page is asked for)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            check(request.user, get_kind(kind).permission)
            return view(request, *args, **kwargs)

        wrapped.required_kind = kind  # type: ignore[attr-defined]  # read by the security sweep
        return wrapped

    return decorate


# -- the forms ---------------------------------------------------------------------------------------------------


class RowField(forms.ModelChoiceField):  # type: ignore[type-arg]  # generic in django-stubs only
    """A row (host, vault entry, job) chosen by its id. An id is ASCII digits, as console.params.parse_id reads it:
    "٣" is a digit to int() too, but no page ever links to it."""

    def to_python(self, value: Any) -> Any:
        if value not in self.empty_values and parse_id(str(value)) is None:
            raise ValidationError(self.error_messages["invalid_choice"], code="invalid_choice")
        return super().to_python(value)


CHOOSE_HOST = gettext_lazy("Choose a registered host.")


def host_field(refusal: _StrOrPromise = CHOOSE_HOST) -> RowField:
    return RowField(Host.objects.order_by("name"), required=False, error_messages={"invalid_choice": refusal})


class ListedChoiceField(forms.ChoiceField):
    """A choice among what the chosen host's last inventory lists: `listed(host)`, set by HostForm. That inventory
    may be older than the host, so a value it does not list is taken too when `unlisted` finds it well formed: the
    job reads the host live and says what it finds there."""

    def __init__(
        self, listed: Callable[[Host | None], list[tuple[str, str]]], unlisted: Callable[[str], bool], **kwargs: Any
    ) -> None:
        super().__init__(required=False, validators=[ProhibitNullCharactersValidator()], **kwargs)
        self.listed, self.unlisted = listed, unlisted

    def valid_value(self, value: Any) -> bool:
        return super().valid_value(value) or self.unlisted(str(value))


def refusals(form: forms.Form) -> list[str]:
    """Why `form` refused what it was sent, field by field in its order, then the whole form's ([] when valid)."""
    return [str(message) for errors in form.errors.values() for message in errors]


class PageForm(forms.Form):
    """A workflow page's form, bound to what the page was sent: the POST, else the query string (the choices made so
    far; nothing is required, so a page opens empty). Its fields are named as the page's `preflight()` takes them."""

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request.POST if request.method == "POST" else request.GET)

    def early(self, name: str) -> Any:
        """Field `name` cleaned ahead of the others (None when missing or refused): what the other fields' choices
        depend on, such as the host whose inventory lists them."""
        chosen = self.fields[name]
        try:
            return chosen.clean(chosen.widget.value_from_datadict(self.data, self.files, self.add_prefix(name)))
        except ValidationError:
            return None

    def offer(self, name: str, choices: Sequence[tuple[str, str]]) -> None:
        chosen = self.fields[name]
        assert isinstance(chosen, forms.ChoiceField)
        chosen.choices = list(choices)

    def options(self, name: str) -> list[tuple[str, str]]:
        """The choices of field `name` as a page's <select> lists them: values as text, no empty one."""
        chosen = self.fields[name]
        assert isinstance(chosen, forms.ChoiceField)
        listed = cast(Iterable[tuple[Any, Any]], chosen.choices)  # flat: no page groups its options
        return [(str(value), str(label)) for value, label in listed if str(value)]

    def raw(self, name: str) -> str:
        """What was sent for field `name`, valid or not (a <select> shows it chosen only if it is an option)."""
        return str(self[name].value() or "")


class HostForm(PageForm):
    """A page about one registered host first: what else it offers comes from that host's last inventory."""

    host = host_field()

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request)
        self.chosen_host: Host | None = self.early("host")
        for name, listing in self.fields.items():
            if isinstance(listing, ListedChoiceField):
                self.offer(name, listing.listed(self.chosen_host))

    @property
    def hosts(self) -> QuerySet[Host]:
        """The host picker's list: the hosts the field accepts, in its order."""
        picker = self.fields["host"]
        assert isinstance(picker, RowField) and picker.queryset is not None
        return picker.queryset


# -- the job and the answer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewJob:
    """The job a preflight would start when its page is posted."""

    kind: str
    hosts: list[Host]
    vms: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


def start_job(request: HttpRequest, job: NewJob) -> HttpResponse:
    """Create the job as the requesting user (Forbidden without the kind's permission) and show its page."""
    created = create_job(request.user, job.kind, hosts=list(job.hosts), vms=list(job.vms), params=dict(job.params))
    return redirect("jobs:detail", pk=created.pk)


def start_or_show(request: HttpRequest, job: NewJob | None, template: str, context: dict[str, Any]) -> HttpResponse:
    """A workflow page's answer: a POST starts `job`, the job its preflight allows (None: none). A POST that starts
    nothing gets the page back with status 400, saying why; a GET gets the page."""
    if request.method == "POST" and job is not None:
        return start_job(request, job)
    return render(request, template, context, status=400 if request.method == "POST" else 200)


# -- the guardian preflight page (escrow, import, restore) --------------------------------------------------------


@dataclass(frozen=True)
class GuardianPage:
    """What a guardian preflight page says whatever is chosen: its title and intro, the list beside the host picker
    (the form field `choice`), its button and what could go wrong."""

    title: _StrOrPromise
    intro: _StrOrPromise
    choice: str
    choice_label: _StrOrPromise
    submit_label: _StrOrPromise
    risks: list[_StrOrPromise]
    # A checkbox of the form beside the list, (field name, label), shown only to users with `tick_permission`.
    tick: tuple[str, _StrOrPromise] | None = None
    tick_permission: str = ""


@dataclass(frozen=True)
class Preflight:
    """What a guardian preflight page shows for the choices made: the steps of the job, what they affect, warnings,
    Show PowerShell and the fields its POST sends back — or the problem that stops it, with links to what to do
    instead. Built by each workflow's `preflight()`, which sees no request."""

    steps: list[str] = field(default_factory=list)
    impact: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    powershell: list[str] = field(default_factory=list)
    post: list[tuple[str, Any]] = field(default_factory=list)
    problem: str = ""
    problem_links: list[tuple[str, str]] = field(default_factory=list)
    cancel_url: str = "/vault/"
    job: NewJob | None = None  # what the POST starts; None: the page shows the problem instead

    @classmethod
    def refused(cls, form: forms.Form) -> Preflight:
        """The preflight of a form that refused what it was sent: its first reason as the problem."""
        return cls(problem=refusals(form)[0])


def preflight_page(request: HttpRequest, page: GuardianPage, form: HostForm, flight: Preflight) -> HttpResponse:
    """A guardian preflight page: the host picker and the page's list filled from the form, then the preflight."""
    context = {"page": page, "flight": flight, "hosts": form.hosts, "host": form.chosen_host}
    if page.choice:  # a page about the whole host (restore every VM) has no list beside the picker
        context |= {"choices": form.options(page.choice), "chosen": form.raw(page.choice)}
    if page.tick is not None and can(request.user, page.tick_permission):
        context |= {"tick": page.tick, "ticked": bool(form.data.get(page.tick[0])), "tick_url": toggled(form, page)}
    return start_or_show(request, flight.job, "workflows/guardian_preflight.html", context)


def toggled(form: HostForm, page: GuardianPage) -> str:
    """The page's query with its checkbox flipped: a link, so that Show PowerShell follows the box without script."""
    assert page.tick is not None
    name = page.tick[0]
    query = [(key, value) for key, value in form.data.items() if key != name and key != "csrfmiddlewaretoken"]
    return "?" + urlencode(query + ([] if form.data.get(name) else [(name, "on")]))


# -- links between pages ------------------------------------------------------------------------------------------


def preflight_link(page: str, job: Job, query: Sequence[tuple[str, Any]] = ()) -> str:
    """ "Run again" of a job with a preflight page: that page, filled from the job (the user confirms there again)."""
    hosts = ordered_hosts(job)
    first = [("host", hosts[0].pk)] if hosts else []
    return f"{page}?{urlencode(first + [(key, value) for key, value in query if value not in (None, '')])}"
