"""The migration wizard: VM, target, method and unsealing, the live preflight, and the job."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hosts.inventory.models import VirtualMachine
from hosts.models import Host
from hosts.remoting import open_session
from hosts.remoting.errors import RemotingError

from ..pages import kind_page, start_job
from .plan import (
    METHODS,
    SOURCE_AFTER,
    UNSEAL,
    MigrationOptions,
    MigrationPlan,
    migration_script,
    plan_migration,
)


def wizard_choices(data: Any) -> tuple[Any, Any, MigrationOptions]:

    def host(key: str) -> Any:
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


def live_preview(source: Any, target: Any, opts: MigrationOptions) -> tuple[MigrationPlan | None, str]:
    """The preflight run live against both hosts for the page; (None, reason) when a host cannot be read."""

    try:
        with open_session(source.connection_spec()) as s, open_session(target.connection_spec()) as t:
            return plan_migration(s, t, source, target, opts), ""
    except RemotingError as exc:
        return None, f"Preflight could not read both hosts: {exc}"


def names_taken(source: Any, names: list[str]) -> dict[str, list[Any]]:
    """Per VM name (lower case): the other hosts whose last inventory has a VM of that name."""

    taken: dict[str, list[Any]] = {}
    others = VirtualMachine.objects.exclude(host=source).select_related("host").order_by("host__name")
    wanted = {name.lower() for name in names}
    for vm in others:
        if vm.name.lower() in wanted and vm.host not in taken.setdefault(vm.name.lower(), []):
            taken[vm.name.lower()].append(vm.host)
    return taken


def vm_choices(vms: list[Any], source: Any, target: Any) -> list[dict[str, Any]]:
    """The source's VMs for the list, each with the hosts where its name is taken (it cannot go there)."""
    taken = names_taken(source, [vm.name for vm in vms])
    rows = []
    for vm in vms:
        hosts = taken.get(vm.name.lower(), [])
        rows.append({"vm": vm, "taken_on": hosts, "taken_pks": " ".join(str(h.pk) for h in hosts)})
        rows[-1]["blocked"] = target is not None and any(h.pk == target.pk for h in hosts)
    return rows


def target_choices(hosts: Any, source: Any, vm_name: str) -> list[dict[str, Any]]:
    """The hosts a VM may go to; one that already has a VM of the chosen name is marked."""
    if source is None:
        return []
    taken = {h.pk for h in names_taken(source, [vm_name]).get(vm_name.lower(), [])} if vm_name else set()
    return [{"host": h, "taken": h.pk in taken} for h in hosts if h.pk != source.pk]


@kind_page("migrate_vm")
def migrate_wizard(request: HttpRequest) -> HttpResponse:

    data = request.POST if request.method == "POST" else request.GET
    source, target, opts = wizard_choices(data)
    context: dict[str, Any] = {"hosts": Host.objects.order_by("name"), "source": source, "target": target}
    context |= {"opts": opts, "methods": METHODS, "unseals": UNSEAL, "afters": SOURCE_AFTER}
    context["method_label"] = METHODS.get(opts.method, "")
    vms = list(VirtualMachine.objects.filter(host=source).order_by("name")) if source else []
    context["vms"] = vm_choices(vms, source, target)
    context["targets"] = target_choices(context["hosts"], source, opts.vm_name)
    ready = source is not None and target is not None and opts.vm_name and data.get("preview")
    if source is not None and target is not None and source.pk == target.pk:
        context["problems"] = ["Choose a target host other than the source."]
    elif ready:
        context["problems"] = opts.problems()
        if not context["problems"]:
            plan, error = live_preview(source, target, opts)
            context |= {"plan": plan, "error": error}
            if plan is not None:
                context["powershell"] = migration_script(plan, opts, source, target).lines()
                if request.method == "POST" and not plan.failures:
                    return start_job(request, "migrate_vm", [source, target], [opts.vm_name], opts.as_params())
    status = 400 if request.method == "POST" else 200
    return render(request, "workflows/migrate.html", context, status=status)
