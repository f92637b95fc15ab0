"""The audit trail as people read it: each event as a sentence with a link to its object, filters (who, what, which
object, when, search) applied by the database, and the CSV export (no secret: details are redacted when recorded,
and again here).
"""

from __future__ import annotations

import csv
import json
import string
from collections.abc import Iterable, Iterator
from datetime import UTC
from html import unescape
from typing import Any

from django import forms
from django.db.models import Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, strip_tags
from django.utils.safestring import SafeString

from .models import AuditEvent, redact_detail

# What each action says, after who did it ("ada …", "The console …"). {object} is the event's object, linked to its
# page; other {names} are values of its detail. An action not listed here is shown by its name.
SENTENCES = {
    "login": "signed in",
    "logout": "signed out",
    "login.failed": "A sign-in as {username} failed",
    "login.unlock": "lifted the login lockout of {username}",
    "user.create": "created user {object} with the role {role}",
    "user.role_change": "changed the role of {object} from {role_from} to {role_to}",
    "user.activate": "re-activated user {object}",
    "user.deactivate": "deactivated user {object}",
    "user.password_reset": "set a new password for {object}",
    "user.password_change": "changed their password",
    "user.must_change_password": "changed whether {object} must choose a new password",
    "two_factor.enrol": "set up two-factor sign-in",
    "two_factor.verify": "passed the second factor ({method})",
    "two_factor.verify_failed": "failed the second factor",
    "two_factor.reset": "reset the two-factor sign-in of {object}",
    "two_factor.recovery_codes": "made new recovery codes",
    "host.create": "registered host {object}",
    "host.update": "changed host {object} ({changed})",
    "host.delete": "removed host {object}",
    "host.test_connection": "tested the connection to {object}",
    "host.captured": "recorded host {object} as a capture",
    "share.create": "added the share {path}",
    "share.delete": "removed the share {path}",
    "vault.escrow": "escrowed {object} in the vault",
    "vault.upload": "uploaded {object} to the vault",
    "vault.download": "downloaded {object} from the vault",
    "vault.download_refused": "was refused the download of {object}: {reason}",
    "vault.placed": "placed the private keys of {object} on {host}",
    "vault.tampered": "found {object} tampered with: {reason}",
    "secrets.rotated": "re-sealed the stored secrets with a new key",
    "job.create": "started {object}",
    "job.cancel": "cancelled {object}",
    "job.succeeded": "{object} succeeded",
    "job.partly_failed": "{object} partly failed",
    "job.failed": "{object} failed",
    "job.errored": "{object} ended with an unexpected error",
    "job.cancelled": "{object} was cancelled",
    "job.lost": "{object} was lost: its worker stopped",
    "job.orphaned": "A worker came back after losing {object}; it sent nothing more",
    "vm.tpm_enable": "turned the vTPM on for {vms} on {object}",
    "vm.tpm_disable": "turned the vTPM off for {vms} on {object}",
    "vm.migrated": "migrated a VM to {object}",
    "guardian.reset": "reset the guardian {guardian_name} on {object}",
    "guardian.reset_undone": "undid the guardian reset of job #{reset_job} on {object}",
    "api_token.create": "created the API token {object} (role {role})",
    "api_token.revoke": "revoked the API token {object} of {owner}",
    "account.time_zone": "chose to see times in {time_zone}",
    "account.language": "chose to see pages in {language}",
    "audit.export": "exported the audit trail as CSV",
}
# Sentences that name no actor ("A sign-in … failed", "Job #3 succeeded") start with a capital or {object}.
NO_ACTOR = frozenset(action for action, sentence in SENTENCES.items() if sentence[0].isupper() or sentence[0] == "{")

OBJECT_WORDS = {"escrowedpair": "vault pair", "apitoken": "API token", "job": "job", "host": "host", "user": "user"}
OBJECT_PAGES = {"job": "jobs:detail", "host": "hosts:detail", "escrowedpair": "vault_detail", "user": "users:edit"}


def placeholders(sentence: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(sentence) if name]


def plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "nothing"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "—" if value in (None, "") else str(value)


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
    sentence = SENTENCES.get(event.action)
    if sentence is None:
        return format_html("{} <code>{}</code> {}", actor(event), event.action, object_link(event))
    values: dict[str, Any] = {name: plain(event.detail.get(name)) for name in placeholders(sentence)}
    values["object"] = object_link(event)
    said = format_html(sentence, **values)
    return said if event.action in NO_ACTOR else format_html("{} {}", actor(event), said)


def actor(event: AuditEvent) -> str:
    return event.username or "The console"


def unsaid_detail(event: AuditEvent) -> list[tuple[str, str]]:
    """The detail the sentence does not say, as (words, value), for the line under it."""
    said = set(placeholders(SENTENCES.get(event.action, "")))
    return [(key.replace("_", " "), plain(value)) for key, value in event.detail.items() if key not in said]


def action_words(action: str) -> str:
    """An action as the filter lists it: its sentence with "…" for what varies ("Turned the vTPM off for … on …")."""
    sentence = SENTENCES[action]
    for name in placeholders(sentence):
        sentence = sentence.replace("{" + name + "}", "…")
    return sentence[0].upper() + sentence[1:]


def action_choices() -> list[tuple[str, str]]:
    return [("", "any action")] + sorted(((action, action_words(action)) for action in SENTENCES), key=lambda c: c[1])


class AuditFilterForm(forms.Form):
    """Filters of the audit trail; each narrows the query in the database (an invalid one is ignored)."""

    q = forms.CharField(required=False, label="Search", widget=forms.TextInput(attrs={"type": "search"}))
    actor = forms.CharField(required=False, label="Who", help_text='a user name, or "system"')
    action = forms.ChoiceField(required=False, choices=action_choices)
    object_type = forms.ChoiceField(
        required=False, label="Object", choices=[("", "any object"), *sorted(OBJECT_WORDS.items(), key=lambda c: c[1])]
    )
    object_id = forms.CharField(required=False, widget=forms.HiddenInput)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")

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
        detail = json.dumps(redact_detail(event.detail), ensure_ascii=False, sort_keys=True, default=str)
        row = [
            event.at.astimezone(UTC).isoformat(),
            timezone.localtime(event.at).isoformat(),
            actor(event),
            event.action,
            text_of(describe(event)),
            event.object_type,
            event.object_id,
            event.object_repr,
            detail,
        ]
        yield writer.writerow([cell(str(value)) for value in row])


def text_of(html: str) -> str:
    return unescape(strip_tags(html))
