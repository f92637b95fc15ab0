"""The audit trail as people read it: each event as a sentence with a link to its object, filters (who, what, which
object, when, search) applied by the database, and the CSV export (no secret: details are redacted when recorded,
and again here).
"""

from __future__ import annotations

import csv
import json
import re
import string
from collections.abc import Iterable, Iterator
from datetime import UTC
from html import unescape
from typing import Any

from django import forms
from django.conf import settings
from django.db.models import Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.html import format_html, strip_tags
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from .models import AuditEvent, redact_detail
from .roles import role_title

# What each action says. {actor} is who did it ("ada", "The console"): a placeholder, not a prefix, because the
# word order differs between languages (「{actor} がサインインしました」). {object} is the event's object, linked to its
# page; other {names} are values of its detail. An action not listed here is shown by its name.
SENTENCES: dict[str, Promise] = {
    "login": gettext_lazy("{actor} signed in"),
    "logout": gettext_lazy("{actor} signed out"),
    "login.failed": gettext_lazy("A sign-in as {username} failed"),
    "login.unlock": gettext_lazy("{actor} lifted the login lockout of {username}"),
    "user.create": gettext_lazy("{actor} created user {object} with the role {role}"),
    "user.role_change": gettext_lazy("{actor} changed the role of {object} from {role_from} to {role_to}"),
    "user.activate": gettext_lazy("{actor} re-activated user {object}"),
    "user.deactivate": gettext_lazy("{actor} deactivated user {object}"),
    "user.password_reset": gettext_lazy("{actor} set a new password for {object}"),
    "user.password_change": gettext_lazy("{actor} changed their password"),
    "user.must_change_password": gettext_lazy("{actor} changed whether {object} must choose a new password"),
    "two_factor.enrol": gettext_lazy("{actor} set up two-factor sign-in"),
    "two_factor.verify": gettext_lazy("{actor} passed the second factor ({method})"),
    "two_factor.verify_failed": gettext_lazy("{actor} failed the second factor"),
    "two_factor.reset": gettext_lazy("{actor} reset the two-factor sign-in of {object}"),
    "two_factor.recovery_codes": gettext_lazy("{actor} made new recovery codes"),
    "host.create": gettext_lazy("{actor} registered host {object}"),
    "host.update": gettext_lazy("{actor} changed host {object} ({changed})"),
    "host.delete": gettext_lazy("{actor} removed host {object}"),
    "host.test_connection": gettext_lazy("{actor} tested the connection to {object}"),
    "host.captured": gettext_lazy("{actor} recorded host {object} as a capture"),
    "share.create": gettext_lazy("{actor} added the share {path}"),
    "share.delete": gettext_lazy("{actor} removed the share {path}"),
    "vault.escrow": gettext_lazy("{actor} escrowed {object} in the vault"),
    "vault.upload": gettext_lazy("{actor} uploaded {object} to the vault"),
    "vault.download": gettext_lazy("{actor} downloaded {object} from the vault"),
    "vault.download_refused": gettext_lazy("{actor} was refused the download of {object}: {reason}"),
    "vault.placed": gettext_lazy("{actor} placed the private keys of {object} on {host}"),
    "vault.tampered": gettext_lazy("{actor} found {object} tampered with: {reason}"),
    "secrets.rotated": gettext_lazy("{actor} re-sealed the stored secrets with a new key"),
    "job.create": gettext_lazy("{actor} started {object}"),
    "job.cancel": gettext_lazy("{actor} cancelled {object}"),
    "job.succeeded": gettext_lazy("{object} succeeded"),
    "job.partly_failed": gettext_lazy("{object} partly failed"),
    "job.failed": gettext_lazy("{object} failed"),
    "job.errored": gettext_lazy("{object} ended with an unexpected error"),
    "job.cancelled": gettext_lazy("{object} was cancelled"),
    "job.lost": gettext_lazy("{object} was lost: its worker stopped"),
    "job.orphaned": gettext_lazy("A worker came back after losing {object}; it sent nothing more"),
    "vm.tpm_enable": gettext_lazy("{actor} turned the vTPM on for {vms} on {object}"),
    "vm.tpm_disable": gettext_lazy("{actor} turned the vTPM off for {vms} on {object}"),
    "vm.migrated": gettext_lazy("{actor} migrated a VM to {object}"),
    "guardian.reset": gettext_lazy("{actor} reset the guardian {guardian_name} on {object}"),
    "guardian.reset_undone": gettext_lazy("{actor} undid the guardian reset of job #{reset_job} on {object}"),
    "api_token.create": gettext_lazy("{actor} created the API token {object} (role {role})"),
    "api_token.revoke": gettext_lazy("{actor} revoked the API token {object} of {owner}"),
    "account.time_zone": gettext_lazy("{actor} chose to see times in {time_zone}"),
    "account.language": gettext_lazy("{actor} chose to see pages in {language}"),
    "audit.export": gettext_lazy("{actor} exported the audit trail as CSV"),
}

OBJECT_WORDS: dict[str, Promise] = {
    "escrowedpair": gettext_lazy("vault pair"),
    "apitoken": gettext_lazy("API token"),
    "job": gettext_lazy("job"),
    "host": gettext_lazy("host"),
    "user": gettext_lazy("user"),
}
OBJECT_PAGES = {"job": "jobs:detail", "host": "hosts:detail", "escrowedpair": "vault_detail", "user": "users:edit"}


# Details that hold a role code, said as the role's title in the reader's language.
ROLE_DETAILS = frozenset({"role", "role_from", "role_to"})
# The start of a sentence that names who did it, left out where the filter lists the actions: "{actor} " in English,
# 「{actor} が」 in Japanese.
ACTOR_LEAD = re.compile(r"^\{actor\}\s*(?:が\s*)?")


def placeholders(sentence: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(sentence) if name]


def plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return _(", ").join(str(item) for item in value) or _("nothing")
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    return "—" if value in (None, "") else str(value)


def detail_value(name: str, value: Any) -> str:
    """A value of the detail as its sentence says it: roles and languages by their names in the reader's language."""
    if name in ROLE_DETAILS and isinstance(value, str):
        return role_title(value)
    if name == "language" and isinstance(value, str):
        return str(dict(settings.LANGUAGES).get(value, _("the browser's language") if value == "browser" else value))
    return plain(value)


def object_link(event: AuditEvent) -> SafeString:
    shown = event.object_repr or f"{OBJECT_WORDS.get(event.object_type, event.object_type)} {event.object_id}"
    page = OBJECT_PAGES.get(event.object_type)
    if page and event.object_id.isdigit():
        try:
            return format_html('<a href="{}">{}</a>', reverse(page, args=[int(event.object_id)]), shown)
        except NoReverseMatch:
            pass
    return format_html("{}", shown)


def describe(event: AuditEvent) -> SafeString:
    """The event as one sentence, its object linked: "ada turned the vTPM off for Win11-A on HV01"."""
    if event.action not in SENTENCES:
        return format_html("{} <code>{}</code> {}", actor(event), event.action, object_link(event))
    sentence = str(SENTENCES[event.action])
    values: dict[str, Any] = {name: detail_value(name, event.detail.get(name)) for name in placeholders(sentence)}
    values.update(object=object_link(event), actor=actor(event))
    return format_html(sentence, **values)


def actor(event: AuditEvent) -> str:
    return event.username or _("The console")


def unsaid_detail(event: AuditEvent) -> list[tuple[str, str]]:
    """The detail the sentence does not say, as (words, value), for the line under it."""
    said = set(placeholders(str(SENTENCES.get(event.action, ""))))
    return [(detail_words(key), plain(value)) for key, value in event.detail.items() if key not in said]


# The words for the keys of job parameters, job results and audit details, in the reader's language; a key not
# listed reads as itself with spaces ("guardian_name" → "guardian name").
DETAIL_WORDS = {
    "guardian_name": gettext_lazy("guardian name"),
    "signing_thumbprint": gettext_lazy("signing thumbprint"),
    "encryption_thumbprint": gettext_lazy("encryption thumbprint"),
    "vault_entry": gettext_lazy("vault pair"),
    "policy": gettext_lazy("started by the escrow policy"),
    "exportable": gettext_lazy("private keys exportable"),
    "reset_job": gettext_lazy("reset job"),
    "action": gettext_lazy("action"),
    "confirmed": gettext_lazy("confirmed"),
    "method": gettext_lazy("method"),
    "unseal": gettext_lazy("unsealing"),
    "new_id": gettext_lazy("new VM ID"),
    "start": gettext_lazy("start afterwards"),
    "source_after": gettext_lazy("source afterwards"),
    "share": gettext_lazy("share"),
    "files_path": gettext_lazy("VM files"),
    "remove_saved_state": gettext_lazy("discard saved state"),
    "failed_hosts": gettext_lazy("failed hosts"),
    "escrow_jobs": gettext_lazy("escrow jobs"),
    "already_escrowed": gettext_lazy("already escrowed"),
    "restored_vms": gettext_lazy("restored VMs"),
    "sealed_vms": gettext_lazy("sealed VMs"),
    "removed_guardian": gettext_lazy("removed guardian"),
    "stored": gettext_lazy("stored"),
    "steps_done_before_cancel": gettext_lazy("steps done before the cancel"),
    "host": gettext_lazy("host"),
    "hosts": gettext_lazy("hosts"),
    "vms": gettext_lazy("VMs"),
    "guardians": gettext_lazy("guardians"),
    "job": gettext_lazy("job"),
    "jobs": gettext_lazy("jobs"),
    "kind": gettext_lazy("kind"),
    "params": gettext_lazy("parameters"),
    "role": gettext_lazy("role"),
    "path": gettext_lazy("path"),
    "address": gettext_lazy("address"),
    "account": gettext_lazy("account"),
    "user_agent": gettext_lazy("browser"),
    "via": gettext_lazy("via"),
    "trigger": gettext_lazy("trigger"),
    "source_host": gettext_lazy("source host"),
    "required": gettext_lazy("required"),
}


def detail_words(key: str) -> str:
    return str(DETAIL_WORDS.get(key, key.replace("_", " ")))


def action_words(action: str) -> str:
    """An action as the filter lists it: its sentence without who did it, "…" for what varies ("Turned the vTPM off for
    … on …")."""
    sentence = ACTOR_LEAD.sub("", str(SENTENCES[action]))
    for name in placeholders(sentence):
        sentence = sentence.replace("{" + name + "}", "…")
    return sentence[0].upper() + sentence[1:]


def action_choices() -> list[tuple[str, str]]:
    return [("", _("any action"))] + sorted(
        ((action, action_words(action)) for action in SENTENCES), key=lambda c: c[1]
    )


def object_choices() -> list[tuple[str, str]]:
    words = sorted(((code, str(word)) for code, word in OBJECT_WORDS.items()), key=lambda c: c[1])
    return [("", _("any object")), *words]


class AuditFilterForm(forms.Form):
    """Filters of the audit trail; each narrows the query in the database (an invalid one is ignored)."""

    q = forms.CharField(required=False, label=gettext_lazy("Search"), widget=forms.TextInput(attrs={"type": "search"}))
    # "system" is typed as it is, whatever the language: the filter compares it.
    actor = forms.CharField(
        required=False, label=gettext_lazy("Who"), help_text=gettext_lazy('a user name, or "system"')
    )
    action = forms.ChoiceField(required=False, label=gettext_lazy("Action"), choices=action_choices)
    object_type = forms.ChoiceField(required=False, label=gettext_lazy("Object"), choices=object_choices)
    object_id = forms.CharField(required=False, widget=forms.HiddenInput)
    since = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label=pgettext_lazy("date range", "From")
    )
    until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label=pgettext_lazy("date range", "To")
    )

    def apply(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        if not self.is_valid():
            return events
        data = self.cleaned_data
        if data["q"]:
            q = data["q"].strip()
            events = events.filter(Q(username__icontains=q) | Q(object_repr__icontains=q) | Q(action__icontains=q))
        if data["actor"]:
            who = data["actor"].strip()
            events = events.filter(username="") if who.lower() == "system" else events.filter(username__iexact=who)
        # Dates are the reader's: __date converts to the active time zone (console/preferences.py).
        lookups = {
            "action": "action",
            "object_type": "object_type",
            "object_id": "object_id",
            "since": "at__date__gte",
            "until": "at__date__lte",
        }
        chosen = {lookup: data[name] for name, lookup in lookups.items() if data[name]}
        return events.filter(**chosen)

    @property
    def filtering(self) -> bool:
        return self.is_bound and self.is_valid() and any(self.cleaned_data.values())


# -- CSV --------------------------------------------------------------------------------------------------------
# The export stays English whatever the reader's language: it is a record handed on (to auditors, spreadsheets and
# scripts that read its header and sentences), so it must say the same for every admin who makes it.
CSV_LANGUAGE = "en"

CSV_HEADER = ["time (UTC)", "time", "who", "action", "what happened", "object type", "object id", "object", "detail"]


def cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a value starting with =, +, - or @)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


class Echo:
    def write(self, value: str) -> str:
        return value


def csv_rows(events: Iterable[AuditEvent]) -> Iterator[str]:
    """The events as CSV lines, streamed (a long trail is never held in memory)."""
    writer = csv.writer(Echo())
    yield writer.writerow(CSV_HEADER)
    for event in events:
        with translation.override(CSV_LANGUAGE):  # per row: an override never spans a yield (another request's turn)
            who, what = actor(event), text_of(describe(event))
        detail = json.dumps(redact_detail(event.detail), ensure_ascii=False, sort_keys=True, default=str)
        row = [
            event.at.astimezone(UTC).isoformat(),
            timezone.localtime(event.at).isoformat(),
            who,
            event.action,
            what,
            event.object_type,
            event.object_id,
            event.object_repr,
            detail,
        ]
        yield writer.writerow([cell(str(value)) for value in row])


def text_of(html: str) -> str:
    return unescape(strip_tags(html))
