"""Forms of the jobs app: the job list's filters and the inventory refresh request."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from console.params import RowsField
from hosts.models import Host

from .models import Job, JobState
from .registry import KINDS


def kind_choices() -> list[tuple[str, str]]:
    kinds = sorted(((k.name, str(k.label)) for k in KINDS.values()), key=lambda c: c[1])
    return [("", _("any kind")), *kinds]


class JobFilterForm(forms.Form):
    """Filters of the job list; invalid values are ignored rather than failing the page."""

    host = forms.ModelChoiceField(
        queryset=Host.objects.order_by("name"),
        required=False,
        empty_label=gettext_lazy("any host"),
        label=gettext_lazy("host"),
    )
    kind = forms.ChoiceField(required=False, label=gettext_lazy("kind"))
    state = forms.ChoiceField(
        choices=[("", gettext_lazy("any state")), *JobState.choices], required=False, label=gettext_lazy("state")
    )
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.order_by("username"),
        required=False,
        empty_label=gettext_lazy("anyone"),
        to_field_name="username",
        label=gettext_lazy("user"),
    )
    since = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label=pgettext_lazy("date filter", "from")
    )
    until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label=pgettext_lazy("date filter", "to")
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind = self.fields["kind"]
        assert isinstance(kind, forms.ChoiceField)
        kind.choices = kind_choices()

    # Each filter field and the lookup it narrows the jobs by.
    LOOKUPS = {
        "host": "hosts",
        "kind": "kind",
        "state": "state",
        "user": "requested_by",
        "since": "created_at__date__gte",
        "until": "created_at__date__lte",
    }

    def apply(self, jobs: QuerySet[Job]) -> QuerySet[Job]:
        if not self.is_valid():
            return jobs
        chosen = {lookup: self.cleaned_data[name] for name, lookup in self.LOOKUPS.items() if self.cleaned_data[name]}
        return jobs.filter(**chosen)


class RefreshForm(forms.Form):
    hosts = RowsField(
        queryset=Host.objects.order_by("name"),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": gettext_lazy("Choose at least one host.")},
    )
