"""The restore page: choose a host and a VM that cannot start, see where its keys can come from, start the job."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.inventory import reading
from hosts.inventory.models import VirtualMachine
from hosts.inventory.reading import restorable_vms
from hosts.inventory.vmstates import vm_state_words
from hosts.models import Host
from hosts.remoting.keyprotector import GuardianRef
from hosts.vault.models import EscrowedPair
from hosts.vault.services import thumbprint_pairs
from jobs.kinds import JobFailed

from ..escrow.page import holder_links
from ..import_guardian.plan import import_notes
from ..pages import GuardianPage, HostForm, ListedChoiceField, NewJob, Preflight, kind_page, preflight_page
from ..placement import may_place, placement_refusal
from .plan import pair_for, restore_script


def vm_choices(host: Host | None) -> list[tuple[str, str]]:
    """The host's VMs with a key protector, those that cannot start there marked (they are the ones to restore)."""
    if host is None:
        return []
    rows = list(VirtualMachine.objects.filter(host=host, has_key_protector=True).order_by("name"))
    answers = reading.start_answers([(vm, host) for vm in rows])  # the stored inventory: a few queries in all
    choices = []
    for vm, (starts, _why) in zip(rows, answers, strict=True):
        label = _("%(vm)s (%(state)s, starts here)") if starts else _("%(vm)s (%(state)s, does not start here)")
        choices.append((vm.name, label % {"vm": vm.name, "state": vm_state_words(vm.state) or _("state unknown")}))
    return choices


def any_vm_name(name: str) -> bool:
    """A VM the last inventory does not list (yet): the page says what it knows, and the job reads the host."""
    return True


class RestoreForm(HostForm):
    vm = ListedChoiceField(vm_choices, unlisted=any_vm_name)


def where_to_get(host: Host, vm_name: str, guardians: list[GuardianRef]) -> list[tuple[str, str]]:
    """Buttons for a VM whose guardian is not in the vault: upload a backup (then come back), or escrow it from a
    registered host whose last inventory shows the private keys."""

    back = "/jobs/new/restore/?" + urlencode({"host": host.pk, "vm": vm_name})
    links = [(_("Upload the PFX pair from a backup…"), "/vault/upload/?" + urlencode({"next": back}))]
    for g in guardians:
        links += holder_links(g.signing, g.encryption)
    if len(links) == 1:  # no host to escrow from: the last resort (domain.md)
        links.append(
            (_("Rescue as a new VM without vTPM…"), "/jobs/new/rescue/?" + urlencode({"host": host.pk, "vm": vm_name}))
        )
    return links


def no_copy_anywhere(host: Host, vm_name: str) -> str:
    """What the stored analysis adds when no registered host holds the keys either: the rescue is the way out."""
    row = VirtualMachine.objects.filter(host=host, name=vm_name, facts__key_hosts=0).first()
    if row is None:
        return ""
    return " " + _("No registered host holds them either: without a backup, rescue the VM as a new VM without a vTPM.")


def inventoried_guardians(host: Host, vm_name: str) -> list[GuardianRef]:
    vm = VirtualMachine.objects.filter(host=host, name=vm_name).first()
    if vm is None:
        return []
    pairs = thumbprint_pairs(vm.kp_owner_thumbprints) + thumbprint_pairs(vm.kp_guardian_thumbprints)
    return [GuardianRef(sign, enc) for sign, enc in dict.fromkeys(pairs)]


RESTORE_PAGE = GuardianPage(
    title=gettext_lazy("Restore a VM after reinstall"),
    intro=gettext_lazy(
        'For a VM that will not start ("the key protector could not be unwrapped") because the guardian it is '
        "sealed to is gone from its host, typically after a reinstall: brings that guardian back from the vault and "
        "starts the VM."
    ),
    choice="vm",
    choice_label=gettext_lazy("VM"),
    submit_label=gettext_lazy("Restore"),
    risks=[
        gettext_lazy(
            "If none of the VM's guardians is in the vault, nothing is changed: the job says which thumbprints to "
            "look for."
        ),
        gettext_lazy("A vault entry that fails its integrity check is not used."),
        gettext_lazy("If the VM still does not start, the guardian stays installed (harmless) and the job says so."),
    ],
)


def preflight(host: Host | None, vm: str, user: Any = None) -> Preflight:
    """The restore of VM `vm` on `host`, as the last inventory shows it: which vault entry brings its guardian back,
    or why none can."""
    if host is None or not vm:
        return Preflight(problem=_("Choose the host and the VM that does not start."))
    guardians = inventoried_guardians(host, vm)
    pair = pair_for(guardians)
    if pair is None:
        listed = ", ".join(f"{g.signing} / {g.encryption}" for g in guardians) or _("(not inventoried yet)")
        problem = _(
            "The last inventory shows VM '%(vm)s' sealed to %(guardians)s; none of these is in the vault. Upload the "
            "pair from a backup or escrow it from a host that has it (the job would stop without changing anything)."
        ) % {"vm": vm, "guardians": listed}
        return Preflight(problem=problem + no_copy_anywhere(host, vm), problem_links=where_to_get(host, vm, guardians))
    try:
        plan, script = restore_script(host, vm)
    except JobFailed as exc:
        return Preflight(problem=_("The last inventory says the job would stop: %(error)s") % {"error": exc})
    if plan.guardian.copies and not may_place(user, host, pair):
        return Preflight(problem=placement_refusal(host, pair))
    return Preflight(
        steps=restore_steps(host, vm, pair),
        impact=[
            _("%(host)s: one guardian with its two certificates added; VM '%(vm)s' started.") % {"host": host, "vm": vm}
        ],
        warnings=import_notes(host, pair, plan.guardian),
        powershell=script.lines(),
        post=[("host", host.pk), ("vm", vm)],
        job=NewJob("restore_vm", [host], [vm]),
    )


def restore_steps(host: Host, vm: str, pair: EscrowedPair) -> list[str]:
    said = {"vm": vm, "host": host, "pair": pair}
    return [
        _("Read the key protector of '%(vm)s' on %(host)s and find its guardian in the vault (%(pair)s).") % said,
        _("Import that pair to %(host)s (as the import job does; nothing changes if it is there already).") % said,
        _("Start '%(vm)s' and check that it is Running.") % said,
    ]


@kind_page("restore_vm")
def restore_preflight(request: HttpRequest) -> HttpResponse:
    form = RestoreForm(request)
    flight = preflight(**form.cleaned_data, user=request.user) if form.is_valid() else Preflight.refused(form)
    return preflight_page(request, RESTORE_PAGE, form, flight)


# -- every restorable VM of a host, in one job ---------------------------------------------------------------------


RESTORE_ALL_PAGE = GuardianPage(
    title=gettext_lazy("Restore every restorable VM of a host"),
    intro=gettext_lazy(
        "One restore job for every VM of the host that cannot start while the vault holds the guardian it is "
        "sealed to (typically after a reinstall): each VM's own preflight decides whether it is in the job."
    ),
    choice="",
    choice_label="",
    submit_label=gettext_lazy("Restore them all"),
    risks=RESTORE_PAGE.risks
    + [
        gettext_lazy(
            "The job restores the VMs one after another and stops at the first that fails: those before it stay "
            "restored, and its log says which VM failed and why."
        )
    ],
)


def preflight_all(host: Host | None, user: Any = None) -> Preflight:
    """The restore of every restorable VM of `host`: each VM's own preflight, the ones it refuses left out and
    named."""
    if host is None:
        return Preflight(problem=_("Choose the host whose VMs to restore."))
    return preflight_each(host, restorable_vms(host), user)


def preflight_each(host: Host, vms: list[str], user: Any = None) -> Preflight:
    """The restore of VMs `vms` of `host` in one job: each VM's own preflight, the ones it refuses left out and named
    (what "every restorable VM" starts, and what the approval page checks again for such a job)."""
    flights = [(name, preflight(host, name, user)) for name in vms]
    ready = [(name, flight) for name, flight in flights if flight.job is not None]
    left_out = [
        _("Left out: '%(vm)s' — %(problem)s") % {"vm": name, "problem": flight.problem}
        for name, flight in flights
        if flight.job is None
    ]
    if not ready:
        reason = _("No VM of this host is restorable: none cannot start with its guardian in the vault.")
        return Preflight(problem=" ".join([reason, *left_out]) if left_out else reason)
    names = [name for name, _ in ready]
    return Preflight(
        steps=[f"'{name}': {step}" for name, flight in ready for step in flight.steps],
        impact=[
            _("%(host)s: the guardians of %(vms)s added; the VMs started.") % {"host": host, "vms": ", ".join(names)}
        ],
        warnings=left_out + [w for _, flight in ready for w in flight.warnings],
        powershell=[line for name, flight in ready for line in [f"# VM '{name}'", *flight.powershell]],
        post=[("host", host.pk)],
        cancel_url=f"/hosts/{host.pk}/",
        job=NewJob("restore_vm", [host], names),
    )


@kind_page("restore_vm")
def restore_all_preflight(request: HttpRequest) -> HttpResponse:
    form = HostForm(request)
    flight = preflight_all(**form.cleaned_data, user=request.user) if form.is_valid() else Preflight.refused(form)
    return preflight_page(request, RESTORE_ALL_PAGE, form, flight)
