"""The rescue page: choose a host and a VM that can start nowhere, see the new VM it builds (read from the host
now), start the job. The stored analysis is asked first: a VM some host can start, or whose keys the vault holds,
is sent to the restore instead."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.inventory.models import VirtualMachine
from hosts.inventory.vmstates import vm_state_words
from hosts.models import Host
from hosts.remoting.errors import RemotingError
from hosts.remoting.session import HostSession
from jobs.kinds import JobFailed

from ..pages import GuardianPage, HostForm, ListedChoiceField, NewJob, Preflight, kind_page, preflight_page
from .plan import BITLOCKER_WARNING, rescue_script


def lost_vms(host: Host | None) -> list[tuple[str, str]]:
    """The host's VMs with a vTPM that no registered host can start, as the stored analysis says."""
    if host is None:
        return []
    rows = VirtualMachine.objects.filter(host=host, has_key_protector=True, facts__startable=False)
    label = _("%(vm)s (%(state)s, starts nowhere)")
    return [
        (vm.name, label % {"vm": vm.name, "state": vm_state_words(vm.state) or _("state unknown")})
        for vm in rows.order_by("name")
    ]


def any_vm_name(name: str) -> bool:
    return True  # the job reads the host and says what it finds there


class RescueForm(HostForm):
    vm = ListedChoiceField(lost_vms, unlisted=any_vm_name)


RESCUE_PAGE = GuardianPage(
    title=gettext_lazy("Rescue a VM whose keys are lost"),
    intro=gettext_lazy(
        "For a VM sealed to a guardian whose private keys exist on no host and in no vault: builds a new VM "
        "without a vTPM on the same disks, with the same generation, memory, processors, Secure Boot and network "
        "adapters, and starts it. The old VM stays, renamed, so its configuration (and its key protector, should a "
        "backup of the keys turn up) is kept."
    ),
    choice="vm",
    choice_label=gettext_lazy("VM"),
    submit_label=gettext_lazy("Rescue"),
    risks=[
        BITLOCKER_WARNING,
        gettext_lazy("Both VMs point at the same disks: never start the old one once the new one has run."),
        gettext_lazy(
            "If a step fails, nothing is deleted: the job says which step, and the VMs are as Hyper-V Manager shows "
            "them."
        ),
    ],
)


def inventory_refusal(host: Host, vm: str) -> Preflight | None:
    """What the console already knows against a rescue: a VM some host can start, or whose keys are escrowed."""
    row = VirtualMachine.objects.filter(host=host, name=vm).select_related("facts").first()
    facts = getattr(row, "facts", None)
    back = urlencode({"host": host.pk, "vm": vm})
    if facts is not None and facts.escrowed:
        return Preflight(
            problem=_("The vault holds the keys '%(vm)s' is sealed to: restore it instead, nothing is lost.")
            % {"vm": vm},
            problem_links=[(_("Restore…"), f"/jobs/new/restore/?{back}")],
        )
    if facts is not None and facts.startable:
        return Preflight(
            problem=_("'%(vm)s' can start on a registered host (see its page): it needs no rescue.") % {"vm": vm},
            problem_links=[(_("The VM's page"), f"/vms/{row.pk}/")] if row is not None else [],
        )
    return None


def preflight(host: Host | None, vm: str) -> Preflight:
    """The stored analysis first, then the VM's settings read from the host now (what the new VM gets)."""
    if host is None or not vm:
        return Preflight(problem=_("Choose the host and the VM whose keys are lost."))
    refused = inventory_refusal(host, vm)
    if refused is not None:
        return refused
    try:
        with HostSession(host.connection_spec()) as session:
            session.open()
            plan, script = rescue_script(session, host, vm)
    except JobFailed as exc:
        return Preflight(problem=_("%(host)s says the rescue would stop: %(error)s") % {"host": host, "error": exc})
    except RemotingError as exc:
        said = {"vm": vm, "host": host, "error": exc}
        return Preflight(problem=_("Could not read the settings of '%(vm)s' from %(host)s: %(error)s") % said)
    return Preflight(
        steps=plan.steps(),
        impact=[
            _("%(host)s: '%(vm)s' renamed to '%(kept)s'; a new VM '%(vm)s' without a vTPM created and started.")
            % {"host": host, "vm": vm, "kept": plan.kept_as}
        ],
        warnings=[BITLOCKER_WARNING],
        powershell=script.lines(),
        post=[("host", host.pk), ("vm", vm)],
        cancel_url=f"/hosts/{host.pk}/",
        job=NewJob("rescue_vm", [host], [vm]),
    )


@kind_page("rescue_vm")
def rescue_preflight(request: HttpRequest) -> HttpResponse:
    form = RescueForm(request)
    flight = preflight(**form.cleaned_data) if form.is_valid() else Preflight.refused(form)
    return preflight_page(request, RESCUE_PAGE, form, flight)
