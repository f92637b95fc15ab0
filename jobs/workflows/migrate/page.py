"""The migration wizard: VM, target, method and unsealing, the live preflight, and the job."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render

from hosts.inventory.models import VirtualMachine
from hosts.models import Host
from hosts.remoting import open_session
from hosts.remoting.errors import RemotingError

from ..pages import kind_page, start_job
from ..powershell import PowerShellScript
from .plan import METHODS, SOURCE_AFTER, UNSEAL, MigrationOptions, MigrationPlan, plan_migration
from .run import migration_script
from .sides import LiveSide


def wizard_choices(data: QueryDict) -> tuple[Host | None, Host | None, MigrationOptions]:

    def host(key: str) -> Host | None:
        raw = data.get(key, "")
        return Host.objects.filter(pk=int(raw)).first() if raw.isdigit() else None

    opts = MigrationOptions(
        data.get("vm", ""),
        method=data.get("method", "export"),
        unseal=data.get("unseal", "carry"),
        new_id=data.get("new_id") == "on",
        start=data.get("start") == "on" if "form" in data else True,  # an unticked box sends nothing
        source_after=data.get("source_after", "off"),
        share=data.get("share", ""),
        files_path=data.get("files_path", ""),
    )
    return host("host"), host("target"), opts


def live_preview(
    source: Host, target: Host, opts: MigrationOptions
) -> tuple[MigrationPlan | None, PowerShellScript, str]:
    """The preflight run live against both hosts, and Show PowerShell: the reads it sent, then the job's steps as
    the preflight predicts them. (None, …, reason) when a host cannot be read."""

    script = PowerShellScript().comment(f"Preflight on {source} and {target}: reads only")
    try:
        with open_session(source.connection_spec()) as s, open_session(target.connection_spec()) as t:
            sides = LiveSide(s, source, "source", script), LiveSide(t, target, "target", script)
            plan = plan_migration(*sides, source, target, opts)
    except RemotingError as exc:
        return None, script, f"Preflight could not read both hosts: {exc}"
    return plan, migration_script(plan, opts, (source, target), script), ""


def names_taken(source: Host, names: list[str]) -> dict[str, list[Host]]:
    """Per VM name (lower case): the other hosts whose last inventory has a VM of that name."""

    taken: dict[str, list[Host]] = {}
    others = VirtualMachine.objects.exclude(host=source).select_related("host").order_by("host__name")
    wanted = {name.lower() for name in names}
    for vm in others:
        if vm.name.lower() in wanted and vm.host not in taken.setdefault(vm.name.lower(), []):
            taken[vm.name.lower()].append(vm.host)
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


@kind_page("migrate_vm")
def migrate_wizard(request: HttpRequest) -> HttpResponse:

    data = request.POST if request.method == "POST" else request.GET
    source, target, opts = wizard_choices(data)
    hosts = Host.objects.order_by("name")
    context: dict[str, object] = {"hosts": hosts, "source": source, "target": target}
    context |= {"opts": opts, "methods": METHODS, "unseals": UNSEAL, "afters": SOURCE_AFTER}
    context["method_label"] = METHODS.get(opts.method, "")
    vms = list(VirtualMachine.objects.filter(host=source).order_by("name")) if source else []
    context["vms"] = vm_choices(vms, source, target) if source else []
    context["targets"] = target_choices(hosts, source, opts.vm_name)
    if source is not None and target is not None and source.pk == target.pk:
        context["problems"] = ["Choose a target host other than the source."]
    elif source is not None and target is not None and opts.vm_name and data.get("preview"):
        context["problems"] = opts.problems()
        if not context["problems"]:
            plan, script, error = live_preview(source, target, opts)
            context |= {"plan": plan, "error": error, "powershell": script.lines()}
            if request.method == "POST" and plan is not None and not plan.failures:
                return start_job(request, "migrate_vm", [source, target], [opts.vm_name], opts.as_params())
    status = 400 if request.method == "POST" else 200
    return render(request, "workflows/migrate.html", context, status=status)
