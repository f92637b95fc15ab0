"""Forms of the jobs app: the job list's filters and the inventory refresh request."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from hosts.models import Host

from .models import Job, JobState
from .registry import KINDS


def kind_choices() -> list[tuple[str, str]]:
    return [("", "any kind")] + sorted(((k.name, k.label) for k in KINDS.values()), key=lambda c: c[1])


class JobFilterForm(forms.Form):
    """Filters of the job list; invalid values are ignored rather than failing the page."""

    host = forms.ModelChoiceField(queryset=Host.objects.order_by("name"), required=False, empty_label="any host")
    kind = forms.ChoiceField(required=False)
    state = forms.ChoiceField(choices=[("", "any state"), *JobState.choices], required=False)
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.order_by("username"),
        required=False,
        empty_label="anyone",
        to_field_name="username",
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="from")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="to")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind = self.fields["kind"]
        assert isinstance(kind, forms.ChoiceField)
        kind.choices = kind_choices()

    def apply(self, jobs: QuerySet[Job]) -> QuerySet[Job]:
        if not self.is_valid():
            return jobs
        data = self.cleaned_data
        if data["host"]:
            jobs = jobs.filter(hosts=data["host"])
        if data["kind"]:
            jobs = jobs.filter(kind=data["kind"])
        if data["state"]:
            jobs = jobs.filter(state=data["state"])
        if data["user"]:
            jobs = jobs.filter(requested_by=data["user"])
        if data["since"]:
            jobs = jobs.filter(created_at__date__gte=data["since"])
        if data["until"]:
            jobs = jobs.filter(created_at__date__lte=data["until"])
        return jobs


class RefreshForm(forms.Form):
    hosts = forms.ModelMultipleChoiceField(
        queryset=Host.objects.order_by("name"),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one host."},
    )
