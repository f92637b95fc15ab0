"""The vTPM page: choose a host, an action and the VMs, confirm each by typing its name, start the job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.inventory.models import Guardian, VirtualMachine
from hosts.inventory.refresh import refresh_host
from hosts.inventory.vmstates import vm_state_words
from hosts.models import Host
from hosts.remoting.catalog.vms import StopVM

from ..pages import HostForm, NewJob, kind_page, refusals, start_or_show
from ..powershell import by_hand
from .plan import ACTIONS, LOCAL_GUARDIAN_NAME, TPM_OFF_WARNING, changes_from, reset_url, vtpm_script

NOTHING_ELIGIBLE = gettext_lazy("None of the chosen VMs can change now: see what each needs below, then check again.")


class VtpmForm(HostForm):
    action = forms.ChoiceField(
        choices=[(action, action) for action in ACTIONS],
        required=False,
        error_messages={"invalid_choice": gettext_lazy("Choose whether to turn the TPM off or on.")},
    )
    vm = forms.MultipleChoiceField(
        required=False,
        error_messages={
            "invalid_choice": gettext_lazy("No VM named '%(value)s' in the host's last inventory: refresh it first.")
        },
    )
    recheck = forms.BooleanField(required=False)  # "Check again": read the host now, before the preflight

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request)
        names = VirtualMachine.objects.filter(host=self.chosen_host).order_by("name").values_list("name", flat=True)
        self.offer("vm", [(name, name) for name in names] if self.chosen_host else [])

    def clean_action(self) -> str:
        return str(self.cleaned_data["action"]) or "disable"


@dataclass
class VmRow:
    """A chosen VM as the last inventory shows it, with what stands in the way of the change ("" = eligible)."""

    vm: VirtualMachine
    saved: bool
    blocker: str = ""


def broken_guardian(host: Host) -> str:
    """Why Hyper-V refuses every vTPM change on this host, as the stored inventory knows ("" when it does not): its
    UntrustedGuardian has lost its private keys (domain.md, 3)."""
    if Guardian.objects.filter(host=host, name=LOCAL_GUARDIAN_NAME, needs_reset=True).exists():
        return _(
            "the %(guardian)s of %(host)s has lost its private keys, and Hyper-V refuses every vTPM change "
            '("does not have a private key and cannot be the owner") until it is reset.'
        ) % {"guardian": LOCAL_GUARDIAN_NAME, "host": host}
    return ""


def vm_rows(host: Host, chosen: list[str], action: str) -> list[VmRow]:
    rows = []
    broken = broken_guardian(host)
    for vm in VirtualMachine.objects.filter(host=host, name__in=chosen).order_by("name"):
        row = VmRow(vm, saved=vm.state == "Saved" or vm.has_saved_state)
        if broken:
            row.blocker = _("Not now: %(reason)s") % {"reason": broken}
        elif vm.state not in ("Off", "Saved"):
            row.blocker = _(
                "%(state)s: shut it down from inside the guest (or, on %(host)s: %(command)s), then check again."
            ) % {"state": vm_state_words(vm.state), "host": host, "command": by_hand(StopVM(vm.name))}
        elif action == "enable" and vm.tpm_enabled:
            row.blocker = _("TPM already on: nothing to do.")
        elif action == "disable" and not vm.tpm_enabled:
            row.blocker = _("TPM already off: nothing to do.")
        rows.append(row)
    return rows


def eligible(rows: list[VmRow]) -> list[VmRow]:
    """The rows the job would change: a blocked VM is left out of the form rather than failing in the job."""
    return [row for row in rows if not row.blocker]


def job_params(action: str, ready: list[VmRow]) -> dict[str, Any]:
    """The job's parameters once the user confirmed every ready VM: what the page starts, and what it previews."""
    return {
        "action": action,
        "confirmed": [row.vm.name for row in ready] if action == "disable" else [],
        "remove_saved_state": [row.vm.name for row in ready if row.saved],
    }


def read_again(host: Host) -> str:
    """Read the host again now (the user shut a VM down since the last inventory); "" or why it failed."""
    outcome = refresh_host(host)
    return "" if outcome.ok else _("Could not read %(host)s again: %(error)s") % {"host": host, "error": outcome.error}


@dataclass
class VtpmPreflight:
    """What the vTPM page shows: the host's VMs to choose from and, for the chosen ones, which the job would change
    (with what it sends) and what stands in the way of the others."""

    host: Host | None = None
    action: str = "disable"
    chosen: list[str] = field(default_factory=list)
    all_vms: list[VirtualMachine] = field(default_factory=list)
    rows: list[VmRow] = field(default_factory=list)
    powershell: list[str] = field(default_factory=list)
    recheck_url: str = ""
    recheck_error: str = ""
    problems: list[str] = field(default_factory=list)  # why the choices were refused
    errors: list[str] = field(default_factory=list)  # why a POST's confirmation was refused
    fix: tuple[str, str] | None = None  # (label, URL) of the page that removes what blocks the VMs
    job: NewJob | None = None

    @property
    def ready(self) -> list[VmRow]:
        return eligible(self.rows)

    @property
    def blocked(self) -> list[VmRow]:
        return [row for row in self.rows if row.blocker]

    @property
    def warning(self) -> str:
        return TPM_OFF_WARNING if self.action == "disable" else ""

    def confirm(self, confirmation: Confirmation) -> None:
        """A POST: the job once every ready VM is confirmed, else why not."""
        if not confirmation.is_valid() or self.host is None:
            self.errors = refusals(confirmation)
            return
        names = [row.vm.name for row in self.ready]
        self.job = NewJob("vtpm", [self.host], names, job_params(self.action, self.ready))


def vms_on(host: Host) -> list[VirtualMachine]:
    return list(VirtualMachine.objects.filter(host=host).order_by("name"))


def refused(form: VtpmForm) -> VtpmPreflight:
    """Choices the form refused: why, and the chosen host's VMs to choose again from."""
    host = form.chosen_host
    return VtpmPreflight(host, all_vms=vms_on(host) if host else [], problems=refusals(form))


def preflight(host: Host | None, action: str, vm: list[str], recheck: bool) -> VtpmPreflight:
    """The change of `action` to VMs `vm` of `host`, as its last inventory (read again first: `recheck`) shows them."""
    flight = VtpmPreflight(host, action, vm)
    if host is None:
        return flight
    if recheck:
        flight.recheck_error = read_again(host)
    flight.all_vms = vms_on(host)
    flight.rows = vm_rows(host, vm, action)
    if broken_guardian(host):
        flight.fix = (_("Reset the broken guardian…"), reset_url(host))
    query = [("host", str(host.pk)), ("action", action), *(("vm", name) for name in vm), ("recheck", "1")]
    flight.recheck_url = f"{reverse('vtpm_preflight')}?{urlencode(query)}"
    ready = flight.ready
    if ready:
        changes = changes_from(job_params(action, ready), [row.vm.name for row in ready])
        flight.powershell = vtpm_script(host, changes).lines()
    return flight


class Confirmation(forms.Form):
    """What a POST confirms for each VM the job would change: its name typed to turn its TPM off, its saved state
    ticked for removal."""

    def __init__(self, data: QueryDict, flight: VtpmPreflight) -> None:
        super().__init__(data)
        self.anything_ready = bool(flight.ready)
        for row in flight.ready:
            name = row.vm.name
            if flight.action == "disable":
                self.fields[f"confirm-{name}"] = TypedName(name)
            if row.saved:
                refusal = _("'%(vm)s' has a saved state: tick “remove the saved state” to go on.") % {"vm": name}
                self.fields[f"saved-{name}"] = forms.ChoiceField(
                    choices=[("remove", "remove")], error_messages={"required": refusal, "invalid_choice": refusal}
                )

    def clean(self) -> dict[str, Any]:
        if not self.anything_ready:
            raise forms.ValidationError(NOTHING_ELIGIBLE)
        return super().clean() or {}


class TypedName(forms.CharField):
    """A VM's name, typed exactly (case too) to confirm turning its TPM off."""

    def __init__(self, name: str) -> None:
        refusal = _("Type the name '%(vm)s' exactly to confirm turning its TPM off.") % {"vm": name}
        super().__init__(error_messages={"required": refusal})
        self.expected, self.refusal = name, refusal

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value != self.expected:
            raise forms.ValidationError(self.refusal)


@kind_page("vtpm")
def vtpm_preflight(request: HttpRequest) -> HttpResponse:
    form = VtpmForm(request)
    flight = preflight(**form.cleaned_data) if form.is_valid() else refused(form)
    if request.method == "POST":
        flight.confirm(Confirmation(request.POST, flight))
    return start_or_show(request, flight.job, "workflows/vtpm.html", {"flight": flight, "form": form})
