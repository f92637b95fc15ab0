"""Every migration method in every session world (issue 10), as one table over the simulator.

The worlds are two simulated hosts as Windows has them (the second hop refused unless the session may pass on its
logon: tests/plugins/worlds.py), told apart by domain membership, how the console logs on, and what the domain lets
the source delegate. Each cell of the table is what Windows would do: a method it would refuse fails in the
preflight with the reason and changes nothing on either host; the others move the VM, start it on the target, and
leave the source copy as the options say (gone after a live move or "remove", off after "off"), with no export or
copy left behind. Besides the issue's four worlds (workgroup NTLM, CredSSP, Kerberos with and without delegation)
the table has a domain pair reached with NTLM, the console's default: with Kerberos migrations Compare-VM itself
refuses the move, with CredSSP migrations (Hyper-V's default) the preflight knows the session has no credentials.

Each cell starts its own world (a lab costs a fraction of a second; the migration it runs is the cell's cost), as
every migration changes both hosts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hypervsim.cmdlets import invoke
from hypervsim.logon import Delegation
from hypervsim.model import MIGRATION_CREDSSP, VM_ROOT
from hypervsim.scenarios import LAB_DOMAIN
from jobs.kinds import JobFailed
from jobs.workflows.migrate.page import live_preview
from jobs.workflows.migrate.plan import MigrationOptions
from tests.plugins.sim import files_copied_to
from tests.plugins.worlds import (
    DELEGATED,
    FOLDER,
    SHARE,
    credssp_pair,
    kerberos_pair,
    ntlm_pair,
    serve_source_share,
)
from tests.workflows.test_migrate import migrate

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

# The worlds, set up by WORLDS below.
WORKGROUP_NTLM = "workgroup, NTLM"
DOMAIN_NTLM = "domain, NTLM sessions"
DOMAIN_NTLM_CREDSSP_MIGRATIONS = "domain, NTLM sessions, CredSSP migrations"
CREDSSP = "domain, CredSSP"
KERBEROS_DELEGATED = "domain, Kerberos with delegation"
KERBEROS_UNDELEGATED = "domain, Kerberos without delegation"

RUNS = True  # the preflight rates the method runnable, and it moves the VM
COMPARE_VM_DECIDES = None  # runnable as far as the preflight can tell (delegation is Active Directory's): it moves
SECOND_HOP = "holds no credentials for a third machine (the second hop)"
# world -> method -> RUNS, COMPARE_VM_DECIDES, or a phrase of the preflight's refusal
TABLE: dict[str, dict[str, bool | str | None]] = {
    WORKGROUP_NTLM: {
        "pull": RUNS,
        "export": SECOND_HOP,
        "live": "A workgroup pair cannot live-migrate",
        "register": RUNS,
    },
    DOMAIN_NTLM: {
        "pull": RUNS,
        "export": SECOND_HOP,
        "live": "No credentials are available in the security package",  # Compare-VM on the source, as Windows says
        "register": RUNS,
    },
    DOMAIN_NTLM_CREDSSP_MIGRATIONS: {
        "pull": RUNS,
        "export": SECOND_HOP,
        "live": "authenticates migrations with CredSSP, which needs the operator's own credentials",
        "register": RUNS,
    },
    CREDSSP: {"pull": RUNS, "export": RUNS, "live": RUNS, "register": RUNS},
    KERBEROS_DELEGATED: {"pull": RUNS, "export": RUNS, "live": COMPARE_VM_DECIDES, "register": RUNS},
    KERBEROS_UNDELEGATED: {
        "pull": RUNS,
        "export": "A session logged on with Kerberos holds no credentials for a third machine",
        "live": "may not pass the console's Kerberos logon on to HV02",
        "register": RUNS,
    },
}
# method -> (VM, unseal, source_after): live moves the running VM; the copies shut theirs down (Win11-B is off)
# and each way of unsealing and of leaving the source copy is taken by some method.
OPTIONS = {
    "pull": ("Win11-B", "authorise", "off"),
    "export": ("Win11-B", "carry", "remove"),
    "live": ("Win11-A", "carry", "off"),
    "register": ("Win11-B", "authorise", "remove"),
}
COPIED = rf"{VM_ROOT}\Win11-B"  # register: the VM's files carried by hand into a folder the target reports for VMs
# Kerberos with delegation: what a domain administrator grants for every method — HV01 may delegate to HV02's
# migration service and both hosts to the lab share's server (cifs/LAB), with protocol transition (the console's
# tickets are not forwardable). The KDC authenticates every logon for real; the delegation is hypervsim's model of
# Active Directory (hypervsim/logon.py), so no cell needs anything of the test KDC it lacks.
TO_LAB_SHARE = ("cifs/LAB",)
SOURCE_DELEGATES = Delegation(DELEGATED.allowed_to + TO_LAB_SHARE, any_protocol=True)
TARGET_DELEGATES = Delegation(TO_LAB_SHARE, any_protocol=True)


# The cells that run on PostgreSQL as well: every method once (in the world where each moves the VM), a refusal of
# the preflight's own and one of Compare-VM's. The other cells differ from these only in the simulated hosts' logons
# and domain, not in what the console stores or reads, so they run on SQLite alone.
ON_EVERY_DATABASE = {(CREDSSP, method) for method in OPTIONS} | {(WORKGROUP_NTLM, "export"), (DOMAIN_NTLM, "live")}


def cells() -> list[Any]:
    return [
        pytest.param(
            world,
            method,
            expected,
            id=f"{world}-{method}",
            marks=() if (world, method) in ON_EVERY_DATABASE else pytest.mark.same_on_every_database,
        )
        for world, row in TABLE.items()
        for method, expected in row.items()
    ]


def kerberos_world(request: pytest.FixtureRequest, *delegations: Delegation) -> Any:
    return kerberos_pair(request.getfixturevalue("kerberos"), *lab_fixtures(request), *delegations)


def lab_fixtures(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    return request.getfixturevalue("sim_lab"), request.getfixturevalue("registered_host")


WORLDS: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    WORKGROUP_NTLM: lambda request: ntlm_pair(*lab_fixtures(request)),
    DOMAIN_NTLM: lambda request: ntlm_pair(*lab_fixtures(request), LAB_DOMAIN),
    DOMAIN_NTLM_CREDSSP_MIGRATIONS: lambda request: ntlm_pair(*lab_fixtures(request), LAB_DOMAIN, MIGRATION_CREDSSP),
    CREDSSP: lambda request: credssp_pair(*lab_fixtures(request)),
    KERBEROS_DELEGATED: lambda request: kerberos_world(request, SOURCE_DELEGATES, TARGET_DELEGATES),
    KERBEROS_UNDELEGATED: lambda request: kerberos_world(request),
}


def world(name: str, request: pytest.FixtureRequest) -> Any:
    """The world's two hosts, registered, with the source's own share listed for the workgroup method."""
    lab = WORLDS[name](request)
    serve_source_share(lab)
    assert all(sim.strict.second_hop for sim in lab.hosts)  # Windows' behaviour, in every world
    return lab


def options(lab: Any, method: str) -> MigrationOptions:
    vm, unseal, source_after = OPTIONS[method]
    files = carry_files_by_hand(lab, vm) if method == "register" else ""
    return MigrationOptions(
        vm, method=method, unseal=unseal, source_after=source_after, share=share_for(method), files_path=files
    )


def share_for(method: str) -> str:
    """The source's own share for "pull"; the lab share (the options' default) for the others."""
    return SHARE if method == "pull" else ""


def carry_files_by_hand(lab: Any, vm_name: str) -> str:
    """The VM exported on the source and its folder copied to the target (a USB disk): what "register" expects."""
    invoke(lab.source.model, "Export-VM", {"Name": vm_name, "Path": r"C:\Export"})
    return files_copied_to(lab, lab.source.model.vm(vm_name).id, rf"C:\Export\{vm_name}", COPIED)


def hosts_state(lab: Any) -> dict[str, Any]:
    """What a migration would change: each host's VMs (state, key protector) and files, and the lab share."""
    state: dict[str, Any] = {"lab share": sorted(p.name for p in lab.share.iterdir())}
    for sim in lab.hosts:
        state[sim.name] = {vm.name: (vm.id, vm.state, vm.key_protector) for vm in sim.model.vms.values()}
        state[f"{sim.name} files"] = sorted(sim.model.files.snapshot("C:\\")) + sorted(sim.model.files.snapshot(FOLDER))
    return state


def leftovers(lab: Any) -> dict[str, list[str]]:
    """Exports on the lab share or the source's share folder, and copies of them on the target (…-migrate)."""
    return {
        "source": [*lab.source.model.files.snapshot(FOLDER), *(p.name for p in lab.share.iterdir())],
        "target": [p for p in lab.target.model.files.snapshot("C:\\") if "-migrate" in p],
    }


@pytest.mark.parametrize(("world_name", "method", "expected"), cells())
def test_each_method_in_each_world_moves_the_vm_or_is_refused_in_the_preflight(
    world_name: str, method: str, expected: bool | str | None, request: pytest.FixtureRequest
) -> None:
    lab = world(world_name, request)
    opts = options(lab, method)
    before = hosts_state(lab)
    plan, _, error = live_preview(lab.source_host, lab.target_host, opts)
    assert plan is not None, error
    if isinstance(expected, str):
        assert_refused(lab, opts, plan, expected)
        assert hosts_state(lab) == before  # neither the preflight nor the refused job changed anything
    else:
        assert_moved(lab, opts, plan, expected)


def assert_refused(lab: Any, opts: MigrationOptions, plan: Any, reason: str) -> None:
    assert plan.methods[opts.method].runnable is False
    assert any(reason in failure for failure in plan.failures), plan.failures
    with pytest.raises(JobFailed, match="Nothing was changed"):
        migrate(lab, opts)


def assert_moved(lab: Any, opts: MigrationOptions, plan: Any, verdict: bool | None) -> None:
    assert not plan.failures, plan.failures
    assert plan.methods[opts.method].runnable is verdict
    summary, _ = migrate(lab, opts)
    assert "running there" in summary
    assert lab.target.model.vm(opts.vm_name).state == "Running"
    on_source = {vm.name: vm.state for vm in lab.source.model.vms.values()}
    if opts.method == "live" or opts.source_after == "remove":
        assert opts.vm_name not in on_source
    else:
        assert on_source[opts.vm_name] == "Off"
    assert leftovers(lab) == {"source": [], "target": []}
    if opts.method == "pull":  # the share mapped with its account around the copy, and removed after it
        sent = [c["cmdlet"] for c in lab.target.command_log]
        assert sent.index("New-PSDrive") < sent.index("Copy-Item") < sent.index("Remove-PSDrive")
