"""Pages of the inventory: guardian identities across hosts, VMs with "can it start here?", and the risks of one
kind. They read the stored analysis (facts.py) a page at a time, with the same number of queries whatever the size
of the lab; filters and search are done by the database.

Its refresh buttons start jobs, so their views are console's (console/views.py): hosts never import jobs."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from console.params import page_of, parse_id, search_text
from console.roles import require
from hosts.models import Host

from . import actions, marks, reading, rules
from .models import Mark, VirtualMachine
from .rules import VM_RISKS, risk_title

GUARDIANS_PER_PAGE = 50
VMS_PER_PAGE = 100
HOSTS_PER_PAGE = 50  # a VM page's "can it start on…" answers
RISKS_PER_PAGE = 100
MARKS_PER_PAGE = 100


def chosen_host(request: HttpRequest) -> Host | None:
    """The host a list is narrowed to (?host=), if it is one."""
    pk = parse_id(request.GET.get("host"))
    return Host.objects.filter(pk=pk).first() if pk is not None else None


@require("view_console")
def guardian_list(request: HttpRequest) -> HttpResponse:
    query, escrow, keys = (search_text(request, name) for name in ("q", "escrow", "keys"))
    listing = page_of(request, reading.guardians_matching(query, escrow, keys), GUARDIANS_PER_PAGE)
    context = {
        "listing": listing,
        "rows": reading.guardian_rows(list(listing.page)),
        "q": query,
        "escrow": escrow,
        "keys": keys,
    }
    return render(request, "inventory/guardians.html", context)


@require("view_console")
def vm_list(request: HttpRequest) -> HttpResponse:
    query, risk, starts = (search_text(request, name) for name in ("q", "risk", "starts"))
    host = chosen_host(request)
    guardian = reading.guardian_by_key(key) if (key := search_text(request, "guardian")) else None
    found = reading.vms_matching(query, host.pk if host else None, risk, starts, guardian)
    context = {
        "listing": page_of(request, found, VMS_PER_PAGE),
        "q": query,
        "risk": risk,
        "starts": starts,
        "host": host,
        "guardian": guardian,
        "risk_choices": [(code, risk_title(code)) for code in VM_RISKS],
    }
    return render(request, "inventory/vms.html", context)


@require("view_console")
def vm_detail(request: HttpRequest, pk: int) -> HttpResponse:
    vm = get_object_or_404(
        VirtualMachine.objects.select_related("host", "host__inventory", "facts", "facts__holder"), pk=pk
    )
    guardians = reading.sealed_guardians(vm)
    entries = [g.known.vault_entry_id for g in guardians if g.known is not None and g.known.vault_entry_id]
    hosts = page_of(request, Host.objects.order_by("name"), HOSTS_PER_PAGE, param="hosts")
    answers = reading.start_answers([(vm, host) for host in hosts])
    risk = reading.vm_risk(vm)
    context = {
        "vm": vm,
        "hosts": hosts,
        "answers": [
            (host, ok, reason, [] if ok or not entries else actions.import_guardian(entries[0], host))
            for host, (ok, reason) in zip(hosts, answers, strict=True)
        ],
        "starts_on": reading.start_hosts(vm),
        "guardians": guardians,
        "risks": [risk] if risk else [],
        "state": getattr(vm.host, "inventory", None),
        "vault_entry": entries[0] if entries else None,
        "vm_actions": actions.for_vm(vm),
        "mark": marks.mark_of_vm(vm),
    }
    return render(request, "inventory/vm_detail.html", context)


@require("view_console")
def risk_list(request: HttpRequest) -> HttpResponse:
    """Every risk of one kind (the dashboard shows the first few), of the whole lab or of one host; the first kind
    when none (or an unknown one) is asked for."""
    kind = reading.KINDS_BY_CODE.get(search_text(request, "code"), reading.RISK_KINDS[0])
    host = chosen_host(request)
    now = timezone.now()
    listing = page_of(request, kind.of(now, host), RISKS_PER_PAGE)
    context = {
        "kind": kind,
        "host": host,
        "listing": listing,
        "risks": rules.one_escrow_per_guardian([kind.risk(row, now) for row in listing.page]),
        "kinds": reading.RISK_KINDS,
        "marked_count": Mark.objects.count(),
    }
    return render(request, "inventory/risks.html", context)


# -- marking lost or retired ------------------------------------------------------------------------------------------


class MarkForm(forms.Form):
    state = forms.ChoiceField(
        choices=Mark.STATES, error_messages={"invalid_choice": gettext_lazy("Choose lost or retired.")}
    )


def _marked(request: HttpRequest, done: Callable[[str], Mark], back: str) -> HttpResponse:
    form = MarkForm(request.POST)
    if form.is_valid():
        mark = done(form.cleaned_data["state"])
        words = {"name": mark.name, "state": mark.get_state_display()}
        messages.success(request, _("%(name)s is marked %(state)s: its risks are no longer counted.") % words)
    else:
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
    return redirect(back)


@require_POST
@require("run_jobs")
def vm_mark(request: HttpRequest, pk: int) -> HttpResponse:
    vm = get_object_or_404(VirtualMachine.objects.select_related("host"), pk=pk)
    return _marked(request, lambda state: marks.mark_vm(request.user, vm, state), f"/vms/{vm.pk}/")


@require_POST
@require("run_jobs")
def guardian_mark(request: HttpRequest, key: str) -> HttpResponse:
    guardian = reading.guardian_by_key(key)
    if guardian is None:
        raise Http404(_("No such guardian."))
    back = f"/guardians/{guardian.key}/"
    return _marked(request, lambda state: marks.mark_guardian(request.user, guardian, state), back)


@require_POST
@require("run_jobs")
def unmark(request: HttpRequest, pk: int) -> HttpResponse:
    mark = get_object_or_404(Mark, pk=pk)
    marks.unmark(request.user, mark)
    words = {"name": mark.name, "state": mark.get_state_display()}
    messages.success(request, _("%(name)s is no longer marked %(state)s: its risks are counted again.") % words)
    return redirect(marks.page_of_marked(mark))


@require("view_console")
def mark_list(request: HttpRequest) -> HttpResponse:
    """What the team marked lost or retired: left out of the dashboard and the risk lists, each with its way back."""
    listing = page_of(request, marks.all_marks(), MARKS_PER_PAGE)
    return render(request, "inventory/marks.html", {"listing": listing})
