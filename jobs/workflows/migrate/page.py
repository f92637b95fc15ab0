"""The migration wizard: VM, target, method and unsealing, the live preflight, and the job."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.db.models import Q
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.inventory.models import HostInventory, VirtualMachine
from hosts.models import Host, LabShare
from hosts.remoting import open_session
from hosts.remoting.errors import RemotingError

from ..pages import HostForm, NewJob, host_field, kind_page, refusals, start_or_show
from ..powershell import PowerShellScript
from .plan import (
    COPIES,
    METHODS,
    SOURCE_AFTER,
    UNSEAL,
    MigrationOptions,
    MigrationPlan,
    check_carry_placement,
    plan_migration,
    share_problems,
    twin_left_behind,
)
from .reach import Verdict
from .run import migration_script
from .sides import LiveSide
from .steps import STEPS, StepLink, carried, hidden_fields, next_step, previous_step, step_links, step_of

NOT_ASCII = "[^ -~]"  # a character outside printable ASCII (a control character just costs a comparison)
PREPARE_LIVE_MIGRATION = "/hosts/prepare/#live-migration"


def choice_of(options: Mapping[str, str | Promise], refusal: Any) -> forms.ChoiceField:
    """`refusal`: a str or a lazy translation (made when the form class is)."""
    return forms.ChoiceField(choices=list(options.items()), required=False, error_messages={"invalid_choice": refusal})


class MigrationForm(HostForm):
    """The wizard's choices: the source (`host`), the VM, the target and the options; the POST sends them again."""

    host = host_field(gettext_lazy("Choose a registered source host."))  # type: ignore[arg-type]  # lazy: a str
    vm = forms.CharField(required=False, strip=False, max_length=200)
    target = host_field(gettext_lazy("Choose a registered target host."))  # type: ignore[arg-type]  # lazy: a str
    method = choice_of(METHODS, gettext_lazy("Choose a migration method."))
    unseal = choice_of(UNSEAL, gettext_lazy("Choose how the target gets the right to unseal the VM."))
    source_after = choice_of(SOURCE_AFTER, gettext_lazy("Choose what happens to the source copy."))
    new_id = forms.BooleanField(required=False)
    start = forms.BooleanField(required=False)
    form = forms.BooleanField(required=False)  # the options were on the page: an unticked box sends nothing
    share = forms.CharField(required=False, strip=False)
    files_path = forms.CharField(required=False, strip=False)
    preview = forms.BooleanField(required=False)  # "Check both hosts"
    confirm_name = forms.CharField(required=False, strip=False, max_length=200)  # typed to remove the source copy
    step = choice_of(
        STEPS, gettext_lazy("Choose a step of the wizard.")
    )  # which step to show; the choices travel with it

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        source, target = cleaned.get("host"), cleaned.get("target")
        if source is not None and target is not None and source.pk == target.pk:
            raise forms.ValidationError(_("Choose a target host other than the source."))
        return cleaned

    def chosen_options(self) -> MigrationOptions:
        """The options chosen, each refused or missing one at its default."""
        chosen = self.cleaned_data
        return MigrationOptions(
            chosen.get("vm", ""),
            method=chosen.get("method") or "export",
            unseal=chosen.get("unseal") or "carry",
            new_id=bool(chosen.get("new_id")),
            start=bool(chosen.get("start")) if chosen.get("form") else True,
            source_after=chosen.get("source_after") or "off",
            share=chosen.get("share", ""),
            files_path=chosen.get("files_path", ""),
        )


def live_preview(
    source: Host, target: Host, opts: MigrationOptions
) -> tuple[MigrationPlan | None, PowerShellScript, str]:
    """The preflight run live against both hosts, and Show PowerShell: the reads it sent, then the job's steps as
    the preflight predicts them. (None, …, reason) when a host cannot be read."""

    script = PowerShellScript().comment(
        _("Preflight on %(source)s and %(target)s: reads only") % {"source": source, "target": target}
    )
    try:
        with open_session(source.connection_spec()) as s, open_session(target.connection_spec()) as t:
            sides = LiveSide(s, source, "source", script), LiveSide(t, target, "target", script)
            plan = plan_migration(*sides, source, target, opts)
    except RemotingError as exc:
        return None, script, _("Preflight could not read both hosts: %(error)s") % {"error": exc}
    return plan, migration_script(plan, opts, (source, target), script), ""


def names_taken(source: Host, names: list[str]) -> dict[str, list[Host]]:
    """Per VM name (lower case): the other hosts whose last inventory has a VM of that name. The database finds
    them rather than the whole lab being read: the VMs whose name it lowers to one of those — and, for a name
    outside ASCII (which SQLite does not lower), every name outside ASCII, for Python's lower() to decide."""

    taken: dict[str, list[Host]] = {}
    wanted = {name.lower() for name in names}
    if not wanted:
        return taken
    match = Q(lower_name__in=wanted)
    if not all(name.isascii() for name in wanted):
        match |= Q(name__regex=NOT_ASCII)
    others = VirtualMachine.objects.exclude(host=source).annotate(lower_name=Lower("name"))
    for vm in others.filter(match).select_related("host").order_by("host__name"):
        name = vm.name.lower()
        if name in wanted and vm.host not in taken.setdefault(name, []):
            taken[name].append(vm.host)
    return taken


@dataclass
class VmChoice:
    """A VM of the source in the list, with the hosts where its name is taken (it cannot go there)."""

    vm: VirtualMachine
    taken_on: list[Host] = field(default_factory=list)
    blocked: bool = False  # its name is taken on the chosen target

    @property
    def taken_pks(self) -> str:
        return " ".join(str(h.pk) for h in self.taken_on)


@dataclass
class TargetChoice:
    host: Host
    taken: bool  # the host already has a VM of the chosen name


def vm_choices(vms: list[VirtualMachine], source: Host, target: Host | None) -> list[VmChoice]:
    taken = names_taken(source, [vm.name for vm in vms])
    rows = [VmChoice(vm, taken.get(vm.name.lower(), [])) for vm in vms]
    for row in rows:
        row.blocked = target is not None and any(h.pk == target.pk for h in row.taken_on)
    return rows


def target_choices(hosts: Iterable[Host], source: Host | None, vm_name: str) -> list[TargetChoice]:
    """The hosts a VM may go to; one that already has a VM of the chosen name is marked."""
    if source is None:
        return []
    taken = {h.pk for h in names_taken(source, [vm_name]).get(vm_name.lower(), [])} if vm_name else set()
    return [TargetChoice(h, h.pk in taken) for h in hosts if h.pk != source.pk]


@dataclass
class Wizard:
    """What the wizard shows for the choices so far: the source's VMs and the targets to choose from, the problems
    with the choices, and once both hosts were checked, the preflight's plan, Show PowerShell and the job it allows."""

    source: Host | None
    target: Host | None
    opts: MigrationOptions
    vms: list[VmChoice] = field(default_factory=list)
    targets: list[TargetChoice] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fixes: list[tuple[str, str]] = field(default_factory=list)  # (label, URL) of pages that remove a problem
    shares: list[str] = field(default_factory=list)  # the lab shares an administrator listed for both hosts
    plan: MigrationPlan | None = None
    error: str = ""  # why the preflight could not read both hosts
    powershell: list[str] = field(default_factory=list)
    job: NewJob | None = None
    confirm_name: str = ""  # what was typed to confirm removing the source copy
    errors: list[str] = field(default_factory=list)  # why a complete, checked migration was not allowed to start
    step: str = "vm"  # the step shown (steps.py)
    links: list[StepLink] = field(default_factory=list)
    hidden: list[tuple[str, str]] = field(default_factory=list)  # the other steps' choices
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # the method step: every method, read live
    target_folders: list[str] = field(default_factory=list)  # the folders the target reported (register)
    twin_warning: str = ""  # the review: leaving the source off leaves the VM's id on two hosts
    # What the wizard offers (class attributes, not fields): each option's value and label.
    methods, unseals, afters = METHODS, UNSEAL, SOURCE_AFTER

    @property
    def method_label(self) -> str:
        return str(METHODS.get(self.opts.method, ""))

    @property
    def next_step(self) -> str:
        return next_step(self.step)

    @property
    def previous_step(self) -> str:
        return previous_step(self.step)

    @property
    def offered(self) -> list[str]:
        """The methods the method step lets the user choose: all but those Windows is known to refuse here."""
        return [key for key, verdict in self.verdicts.items() if verdict.runnable is not False]

    @property
    def files_path_example(self) -> str:
        """The register method's placeholder: a .vmcx under the first folder the target reported."""
        folder = self.target_folders[0] if self.target_folders else "D:\\VMs"
        return f"{folder}\\Virtual Machines\\<ID>.vmcx"

    @property
    def offers_copy(self) -> bool:
        return any(key in COPIES for key in self.offered)


def preflight(form: MigrationForm, user: Any = None) -> Wizard:
    """The wizard for the choices the form was sent: what it refused, the lists to choose from, and the live check
    of both hosts once the choices are complete and the user asked for it ("Check both hosts")."""
    valid, chosen = form.is_valid(), form.cleaned_data
    source, target = chosen.get("host"), chosen.get("target")
    wizard = Wizard(source, target, form.chosen_options(), problems=refusals(form))
    wizard.confirm_name = chosen.get("confirm_name") or ""
    if source is not None:
        vms = list(VirtualMachine.objects.filter(host=source).order_by("name"))
        wizard.vms = vm_choices(vms, source, target)
        wizard.targets = target_choices(form.hosts, source, wizard.opts.vm_name)
    if source is not None and target is not None:
        wizard.shares = LabShare.offered_to(source, target)
        if not chosen.get("share") and wizard.shares:
            wizard.opts.share = wizard.shares[0]
    show_step(form, wizard)
    if valid and source and target and wizard.opts.vm_name and wizard.step == "method":
        read_methods(wizard)
    if valid and source and target and wizard.opts.vm_name and wizard.step == "review":
        check_both_hosts(wizard, user)
    return wizard


def first_open_step(form: MigrationForm, wizard: Wizard) -> tuple[str, list[str]]:
    """The first step whose choices are missing or refused, and why (the review: none)."""
    chosen, refused = form.cleaned_data, set(form.errors)
    if wizard.source is None or not wizard.opts.vm_name or refused & {"host", "vm"}:
        return "vm", [_("Choose the source host and the VM first.")]
    if wizard.target is None or refused & {"target", "__all__"}:
        return "target", [_("Choose the target host first.")]
    method = wizard.opts.problems() + share_problems(wizard.opts, wizard.source, wizard.target)
    if not chosen.get("method") or method or refused & {"method", "share", "files_path", "new_id"}:
        return "method", method or [_("Choose a migration method first.")]
    if not chosen.get("unseal") or not chosen.get("source_after") or refused & {"unseal", "source_after"}:
        return "unseal", [_("Choose how the target may unseal the VM, and what happens to the source copy, first.")]
    return "review", []


def show_step(form: MigrationForm, wizard: Wizard) -> None:
    """Which step the page shows, the trail of steps, and the other steps' choices as hidden fields."""
    chosen = form.cleaned_data
    first, why = first_open_step(form, wizard)
    requested = chosen.get("step") or ""
    wizard.step = step_of(requested, bool(chosen.get("preview")), first)
    if requested and wizard.step != requested:  # sent past an open step: say what it still needs
        wizard.problems += [reason for reason in why if reason not in wizard.problems]
    values = carried({**chosen, "start": wizard.opts.start})
    wizard.hidden, wizard.links = hidden_fields(values, wizard.step), step_links(values, wizard.step, first)


def read_methods(wizard: Wizard) -> None:
    """The method step: every method between the two hosts with its verdict, and the folders the target reported
    (where the files of a VM registered in place must lie), read live from both hosts."""
    assert wizard.source is not None and wizard.target is not None
    plan, _, wizard.error = live_preview(wizard.source, wizard.target, wizard.opts)
    if plan is not None:
        wizard.verdicts, wizard.target_folders = plan.methods, plan.target_folders
        refuse_live_where_stored_off(wizard, wizard.source, wizard.target)


def migration_off(source: Host, target: Host) -> list[Host]:
    """The hosts whose last inventory says live migration is off on them (Get-VMHost VirtualMachineMigrationEnabled);
    a host not read yet is not counted: the live check decides for it."""
    off = set(HostInventory.objects.filter(host__in=[source, target], live_migration_enabled=False).values_list("host"))
    return [host for host in (source, target) if (host.pk,) in off]


def live_migration_off_reason(host: Host) -> str:
    return _(
        "Live migration is not enabled on %(host)s (its last inventory refresh: VirtualMachineMigrationEnabled is "
        "False). Run Enable-VMMigration there as Prepare a host says, refresh its inventory, or use export/import."
    ) % {"host": host}


def refuse_live_where_stored_off(wizard: Wizard, source: Host, target: Host) -> None:
    """The method step: live migration is not offered when the stored inventory says a host has it off."""
    off = migration_off(source, target)
    live = wizard.verdicts.get("live")
    if not off or live is None:
        return
    live.runnable = False
    live.reasons = [live_migration_off_reason(host) for host in off] + live.reasons
    live.configure = [f"Enable-VMMigration  # on {host}" for host in off] + live.configure
    wizard.fixes.append((_("Prepare a host: live migration"), PREPARE_LIVE_MIGRATION))


def check_both_hosts(wizard: Wizard, user: Any) -> None:
    """The live preflight of complete choices, and the job when nothing in it fails."""
    source, target, opts = wizard.source, wizard.target, wizard.opts
    wizard.problems = opts.problems()
    if source is None or target is None:
        return
    wizard.problems += share_problems(opts, source, target)
    known_problems(wizard, source, target, opts)
    if wizard.problems:
        return
    wizard.plan, script, wizard.error = live_preview(source, target, opts)
    if wizard.plan is not None:
        check_carry_placement(wizard.plan, target, user)
    wizard.powershell = script.lines()
    if wizard.plan is None or wizard.plan.failures:
        return
    wizard.twin_warning = twin_left_behind(wizard.plan, opts, source, target)
    wizard.errors = removal_unconfirmed(opts, wizard.confirm_name, source)
    if not wizard.errors:
        wizard.job = NewJob("migrate_vm", [source, target], [opts.vm_name], opts.as_params())


def known_problems(wizard: Wizard, source: Host, target: Host, opts: MigrationOptions) -> None:
    """What the stored inventory already says against the move, before asking either host: live migration is off on
    a host, or the target has a VM with this VM's id (Import-VM without a new id, or Move-VM, fails on it: "the
    identifier is already in use")."""
    off = migration_off(source, target) if opts.method == "live" else []
    if off:
        wizard.problems += [live_migration_off_reason(host) for host in off]
        wizard.fixes.append((_("Prepare a host: live migration"), PREPARE_LIVE_MIGRATION))
    vm = VirtualMachine.objects.filter(host=source, name=opts.vm_name).first()
    if vm is None or not vm.vm_id or (opts.method == "export" and opts.new_id):
        return
    twin = VirtualMachine.objects.filter(host=target, vm_id__iexact=vm.vm_id).first()
    if twin is not None:
        wizard.problems.append(
            _(
                "%(target)s already has a VM with the id of '%(vm)s' ('%(twin)s', %(state)s): an import or move that "
                "keeps the id would fail on it. Export and import a copy with a new id, or look at that VM first (an "
                "earlier migration may have left it there)."
            )
            % {"target": target, "vm": vm.name, "twin": twin.name, "state": twin.state or _("state unknown")}
        )
        wizard.fixes.append((_("'%(vm)s' on %(host)s") % {"vm": twin.name, "host": target}, f"/vms/{twin.pk}/"))


def removal_unconfirmed(opts: MigrationOptions, typed: str, source: Host) -> list[str]:
    """Removing the source copy needs the VM's name typed exactly (case too), as turning a TPM off does."""
    if opts.source_after != "remove" or typed == opts.vm_name:
        return []
    return [
        _("Type the VM's name '%(vm)s' exactly to confirm removing its source copy from %(source)s.")
        % {"vm": opts.vm_name, "source": source}
    ]


@kind_page("migrate_vm")
def migrate_wizard(request: HttpRequest) -> HttpResponse:
    form = MigrationForm(request)
    wizard = preflight(form, request.user)
    return start_or_show(request, wizard.job, "workflows/migrate.html", {"wizard": wizard, "form": form})
