"""What gives rise to notifications, each put in words here:
- a job that failed, errored or was lost, or waits for a second admin's approval: its audit event, written in the
  transaction of that change of state (so a change that rolls back tells nobody);
- new risks: the stored analysis' `risks_appeared` (hosts/inventory/news.py), one notification per update;
- certificates entering their expiry window: the periodic sweep (tasks.py) compares the stores with what was told.

A notification is written once for all its recipients, so it is put in words in the console's language
(settings.LANGUAGE_CODE), not in that of whoever happened to cause it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from console.models import AuditEvent
from hosts.inventory.models import Certificate, Guardian, VirtualMachine
from hosts.inventory.news import risks_appeared
from hosts.inventory.rules import EXPIRY_WINDOW, RISK_TITLES
from jobs.models import Job

from .events import notify
from .models import EventKind, ExpiryNotice

log = logging.getLogger(__name__)

# Audited changes of a job's state that are told, and how (the approval's is written by the two-person policy).
JOB_ACTIONS = {
    "job.failed": (EventKind.JOB_FAILED, gettext_lazy("Job #%(pk)s %(label)s%(where)s failed")),
    "job.errored": (EventKind.JOB_FAILED, gettext_lazy("Job #%(pk)s %(label)s%(where)s ended with an error")),
    "job.lost": (EventKind.JOB_FAILED, gettext_lazy("Job #%(pk)s %(label)s%(where)s was lost")),
    "job.approval_requested": (EventKind.APPROVAL, gettext_lazy("Job #%(pk)s %(label)s%(where)s waits for approval")),
}
MAX_LINES = 20  # of one notification's list of risks or certificates; the page linked shows them all


def connect() -> None:
    post_save.connect(audited, sender=AuditEvent, dispatch_uid="notifications-audited")
    risks_appeared.connect(risks_found, dispatch_uid="notifications-risks")


def told_safely(tell: Any, *args: Any) -> None:
    """Tell, in a savepoint: a failure to write the notification must never undo or break the change it tells of."""
    try:
        with transaction.atomic(), translation.override(settings.LANGUAGE_CODE):
            tell(*args)
    except Exception:  # noqa: BLE001 - the change itself stands; the log says why nobody was told
        log.warning("a notification could not be written", exc_info=True)


# -- jobs -----------------------------------------------------------------------------------------------------------


def audited(sender: type[AuditEvent], instance: AuditEvent, created: bool = False, raw: bool = False, **_: Any) -> None:
    """A job's audited end or approval request (never a fixture being loaded: what it tells happened long ago)."""
    if created and not raw and instance.action in JOB_ACTIONS and instance.object_id.isdigit():
        told_safely(tell_job, instance)


def tell_job(event: AuditEvent) -> None:
    job = Job.objects.filter(pk=int(event.object_id)).first()
    if job is None:
        return
    kind, happened = JOB_ACTIONS[event.action]
    where = _(" on %(hosts)s") % {"hosts": job.hosts_display} if job.host_names else ""
    subject = str(happened) % {"pk": job.pk, "label": job.label, "where": where}
    if kind == EventKind.APPROVAL:
        reason, until = event.detail.get("reason", ""), event.detail.get("expires", "")
        values = {"by": job.requested_by_name, "label": job.label, "where": where, "reason": reason}
        if until:
            body = _(
                "%(by)s asks for %(label)s%(where)s: %(reason)s Another admin approves or rejects it on the job's page "
                "before %(until)s UTC."
            ) % {**values, "until": until[:16].replace("T", " ")}
        else:
            body = (
                _(
                    "%(by)s asks for %(label)s%(where)s: %(reason)s Another admin approves or rejects it on the job's "
                    "page."
                )
                % values
            )
    else:
        body = (_("%(subject)s. %(why)s") % {"subject": subject, "why": job.error or job.summary}).strip()
    notify(kind, subject, body, reverse("jobs:detail", args=[job.pk]))


# -- risks ----------------------------------------------------------------------------------------------------------


def risks_found(sender: Any, vm_risks: list[tuple[int, str]], guardians: list[int], **_: Any) -> None:
    told_safely(tell_risks, vm_risks, guardians)


def tell_risks(vm_risks: list[tuple[int, str]], guardians: list[int]) -> None:
    vms = VirtualMachine.objects.select_related("host").in_bulk([vm_id for vm_id, _risk in vm_risks])
    lines = [risk_line(RISK_TITLES[risk], vms[vm_id].name, vms[vm_id].host) for vm_id, risk in vm_risks if vm_id in vms]
    rows = Guardian.objects.select_related("host").filter(pk__in=guardians).order_by("host__name", "name")
    lines += [risk_line(RISK_TITLES["guardian_without_keys"], row.name, row.host) for row in rows]
    if not lines:
        return
    if len(lines) == 1:
        subject = _("New risk: %(risk)s") % {"risk": lines[0]}
    else:
        subject = ngettext("%(n)d new risk", "%(n)d new risks", len(lines)) % {"n": len(lines)}
    one_vm = len(lines) == 1 and vm_risks
    link = reverse("inventory:vm", args=[vm_risks[0][0]]) if one_vm else reverse("inventory:risks")
    notify(EventKind.RISK, subject, listing(lines), link)


def risk_line(title: Any, name: str, host: Any) -> str:
    return _("%(risk)s: %(name)s on %(host)s") % {"risk": title, "name": name, "host": host}


def listing(lines: list[str]) -> str:
    shown = [f"- {line}" for line in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        shown.append("- " + _("and %(n)d more") % {"n": len(lines) - MAX_LINES})
    return "\n".join(shown)


# -- certificates -----------------------------------------------------------------------------------------------------


def announce_expiring_certificates(now: datetime) -> int:
    """One notification for the certificates that entered their expiry window since the last look; how many."""
    with transaction.atomic(), translation.override(settings.LANGUAGE_CODE):
        told = set(ExpiryNotice.objects.values_list("thumbprint", flat=True))
        expiring = Certificate.objects.filter(not_after__lte=now + EXPIRY_WINDOW).select_related("host")
        new: dict[str, list[Certificate]] = {}
        for cert in expiring.order_by("not_after", "host__name"):
            if cert.thumbprint not in told:
                new.setdefault(cert.thumbprint, []).append(cert)
        if not new:
            return 0
        ExpiryNotice.objects.bulk_create([ExpiryNotice(thumbprint=thumbprint) for thumbprint in new])
        notify(EventKind.CERT_EXPIRING, expiry_subject(new), listing([expiry_line(c, now) for c in new.values()]))
    return len(new)


def expiry_subject(new: dict[str, list[Certificate]]) -> str:
    if len(new) > 1:
        return _("%(n)d certificates enter their expiry window") % {"n": len(new)}
    first = next(iter(new.values()))[0]
    values = {"name": first.subject or first.thumbprint, "date": f"{first.not_after:%Y-%m-%d}"}
    return _("Certificate %(name)s expires on %(date)s") % values


def expiry_line(certificates: list[Certificate], now: datetime) -> str:
    first = certificates[0]
    assert first.not_after is not None  # only expiring certificates get here
    values = {
        "name": first.subject or first.thumbprint,
        "thumbprint": first.thumbprint,
        "hosts": ", ".join(sorted({str(cert.host) for cert in certificates})),
        "date": f"{first.not_after:%Y-%m-%d}",
    }
    if first.not_after <= now:
        return _("%(name)s (%(thumbprint)s) on %(hosts)s expired on %(date)s") % values
    return _("%(name)s (%(thumbprint)s) on %(hosts)s expires on %(date)s") % values
