"""Migration between lab hosts: the options, and the preflight that reads both hosts live, checks them and decides
every branch the job takes (MigrationPlan), changing nothing. run.py carries the plan out; the wizard shows the same
steps driven without sending anything."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.inventory.analysis import UNTRUSTED_GUARDIAN
from hosts.models import Host, LabShare
from hosts.remoting.catalog.inventory import (
    GuardianFacts,
    HostInventoryFacts,
    ReadHostInventory,
    ReadVmDetails,
    VmFacts,
)
from hosts.remoting.catalog.shares import GetSmbShare
from hosts.remoting.catalog.vms import (
    CompareMove,
    CompareVM,
    GetVmHost,
    ImportOptions,
    Membership,
    ReadMembership,
    TestPath,
)
from hosts.remoting.errors import RemoteCommandError
from hosts.remoting.keyprotector import KeyProtectorInfo
from hosts.remoting.operation import Credential, Secret
from hosts.vault.models import EscrowedPair, find_pair

from ..import_guardian.plan import distinct_name
from ..placement import may_place, placement_refusal
from .paths import lies_under, local_path_refusal, reported_folders
from .reach import NO_DELEGATION, HopFacts, PullFacts, Verdict, assess, delegation_refused, same_machine, share_name
from .sides import Sender

METHODS = {
    "pull": gettext_lazy(
        "Copy from the source's own share with the share's account, import a copy on the target (workgroups)"
    ),
    "export": gettext_lazy("Export to the lab share, import a copy on the target"),
    "live": gettext_lazy("Live migration (Move-VM)"),
    "register": gettext_lazy("Register VM files already on the target"),
}


UNSEAL = {
    "carry": gettext_lazy("Carry the owner guardian's PFX pair through the vault"),
    "authorise": gettext_lazy(
        "Authorise the target's own guardian in the VM's key protector (no private key leaves the source)"
    ),
}


SOURCE_AFTER = {
    "off": gettext_lazy("Leave the source copy off"),
    "remove": gettext_lazy("Remove the source copy (its disks stay on the host)"),
}


COPIES = ("pull", "export")  # the methods that import a copy of an export on the target


def share_problems(opts: MigrationOptions, source: Host, target: Host) -> list[str]:
    """An export goes only through a share an administrator listed for both hosts, whatever the request says."""
    if opts.method not in COPIES or opts.share in LabShare.offered_to(source, target):
        return []
    return [
        _("Choose a lab share listed for both %(source)s and %(target)s (Hosts › Lab shares).")
        % {"source": source, "target": target}
    ]


def lab_share() -> str:
    return str(getattr(settings, "LAB_SHARE", "\\\\LAB\\share"))


@dataclass
class MigrationOptions:
    vm_name: str
    method: str = "export"
    unseal: str = "carry"
    new_id: bool = False
    start: bool = True
    source_after: str = "off"
    share: str = ""
    files_path: str = ""  # method "register": the .vmcx of the VM on the target

    def __post_init__(self) -> None:
        self.share = self.share or lab_share()

    def problems(self) -> list[str]:
        found = []
        if self.method not in METHODS:
            found.append(_("Choose a migration method."))
        if self.unseal not in UNSEAL:
            found.append(_("Choose how the target gets the right to unseal the VM."))
        if self.source_after not in SOURCE_AFTER:
            found.append(_("Choose what happens to the source copy."))
        if self.method == "register":
            found += self.files_path_problems()
        if self.method in COPIES and not self.share.startswith("\\\\"):
            found.append(_("The lab share must be a UNC path (\\\\server\\share) that both hosts can reach."))
        return found

    def files_path_problems(self) -> list[str]:
        if not self.files_path.lower().endswith(".vmcx"):
            return [_("Give the path of the VM's .vmcx file on the target (…\\Virtual Machines\\<ID>.vmcx).")]
        refusal = local_path_refusal(self.files_path)
        return [_("The configuration file's path %(refusal)s") % {"refusal": refusal}] if refusal else []

    @classmethod
    def from_params(cls, vm_name: str, params: dict[str, Any]) -> MigrationOptions:
        known = {k: params[k] for k in ("method", "unseal", "source_after", "share", "files_path") if k in params}
        return cls(vm_name, new_id=bool(params.get("new_id")), start=bool(params.get("start", True)), **known)

    def as_params(self) -> dict[str, Any]:
        params = asdict(self)
        params.pop("vm_name")
        return params


@dataclass
class Check:
    level: str  # ok | warn | fail
    text: str


@dataclass
class HostSide:
    """What one host looks like for the migration, read live."""

    inventory: HostInventoryFacts
    computer_name: str
    live_migration: bool
    virtual_machine_path: str = ""
    virtual_hard_disk_path: str = ""
    membership: Membership = field(default_factory=lambda: Membership(False, "WORKGROUP"))
    migration_authentication: str = ""

    @property
    def folders(self) -> list[str]:
        """The folders the host reported for VM files: its default folders and where its VMs live."""
        defaults = [self.virtual_machine_path, self.virtual_hard_disk_path]
        return reported_folders(defaults + [vm.path for vm in self.inventory.vms])

    @property
    def keyed(self) -> set[str]:
        return {c.thumbprint.upper() for c in self.inventory.certificates if c.has_private_key}

    def can_unseal(self, kp: KeyProtectorInfo) -> bool:
        return any({g.signing, g.encryption} <= self.keyed for g in kp.guardians)

    def vm(self, name: str) -> VmFacts | None:
        return next((vm for vm in self.inventory.vms if vm.name.lower() == name.lower()), None)


def read_side(session: Sender) -> HostSide:
    inventory = session.run(ReadHostInventory())
    inventory.facts.require_local()
    vm_host = session.run(GetVmHost())
    name = vm_host.computer_name or inventory.facts.computer_name
    side = HostSide(
        inventory, name, vm_host.live_migration, vm_host.virtual_machine_path, vm_host.virtual_hard_disk_path
    )
    side.membership, side.migration_authentication = session.run(ReadMembership()), vm_host.migration_authentication
    return side


def hop_facts(side: HostSide, session: Sender, host: Host, share: str) -> HopFacts:
    """The host as the second hop sees it; the share is tried from the host's own session, never assumed."""
    reachable = session.run(TestPath(share))
    return HopFacts(host, side.computer_name, side.membership, side.migration_authentication, reachable)


def pull_facts(session: Sender, source: Host, side: HostSide, path: str) -> PullFacts:
    """The share the source would serve its export from: the administrator's entry, and the folder behind it as the
    source's own Get-SmbShare says (asked only when the share names the source)."""
    share = LabShare.objects.filter(path=path).first()
    folder = None
    if share is not None and same_machine(share.server, side.computer_name, str(source)) and share_name(path):
        folder = session.run(GetSmbShare(share_name(path)))
    return PullFacts(share, path, folder)


def share_credential(path: str, shown: bool = False) -> Credential | None:
    """The share's account as a PSCredential parameter value (shown: without opening the password, for Show
    PowerShell, which prompts for it). None when no account is stored."""
    share = LabShare.objects.filter(path=path).first()
    if share is None or not share.has_credentials:
        return None
    return Credential(share.account, Secret("" if shown else share.get_password()))


@dataclass
class MigrationPlan:
    checks: list[Check] = field(default_factory=list)
    vm: VmFacts | None = None
    tpm_enabled: bool = False
    key_protector: KeyProtectorInfo = field(default_factory=lambda: KeyProtectorInfo(present=False))
    unseal_needed: bool = False
    vault_pair: EscrowedPair | None = None
    target_guardian: str = ""  # authorise: the target's guardian that will be granted access ("" = generate one)
    granted_name: str = ""  # authorise: the name that guardian's public part gets on the source
    import_name: str = ""  # carry: the name the owner's pair gets on the target
    target_name: str = ""  # the target's computer name (Move-VM's destination)
    source_name: str = ""  # the source's computer name (where a live-migrated VM would go back to)
    target_storage: str = ""  # live migration: the folder on the target that receives all the VM's files
    target_store_exists: bool = True  # carry: whether the import must first create the target's shielded store
    methods: dict[str, Verdict] = field(default_factory=dict)  # every method between these hosts, and why (not)
    hops: tuple[HopFacts, HopFacts] | None = None  # source and target as the second hop sees them
    share_folder: str = ""  # pull: the source's local folder behind the share
    target_vm_path: str = ""  # pull: the target's default folder for VMs (where the copy lands, then the import)
    target_folders: list[str] = field(default_factory=list)  # register: the folders the target reported for VM files

    def add(self, level: str, text: str) -> None:
        self.checks.append(Check(level, text))

    @property
    def failures(self) -> list[str]:
        return [c.text for c in self.checks if c.level == "fail"]


def plan_migration(
    source_session: Sender, target_session: Sender, source: Host, target: Host, opts: MigrationOptions
) -> MigrationPlan:
    """Check both hosts live and decide every step; failures are listed in plan.checks, nothing is changed."""
    plan = MigrationPlan()
    src, tgt = read_side(source_session), read_side(target_session)
    plan.add("ok", _("%(source)s and %(target)s answer, both in Local mode") % {"source": source, "target": target})
    share = opts.share
    pull = pull_facts(source_session, source, src, share)
    plan.hops = hop_facts(src, source_session, source, share), hop_facts(tgt, target_session, target, share)
    plan.methods = assess(*plan.hops, share, pull)
    plan.share_folder, plan.target_vm_path = pull.folder or "", tgt.virtual_machine_path.rstrip("\\")
    plan.target_name, plan.source_name = tgt.computer_name, src.computer_name
    plan.target_store_exists, plan.target_folders = tgt.inventory.store_exists, tgt.folders
    if tgt.virtual_machine_path:
        plan.target_storage = f"{tgt.virtual_machine_path.rstrip(chr(92))}\\{opts.vm_name}"
    plan.vm = src.vm(opts.vm_name)
    if plan.vm is None:
        plan.add("fail", _("%(source)s has no VM named '%(vm)s'.") % {"source": source, "vm": opts.vm_name})
        return plan
    details = source_session.run(ReadVmDetails([plan.vm.name]))[plan.vm.name]
    plan.tpm_enabled, plan.key_protector = details.tpm_enabled, details.key_protector
    check_state(plan, opts, source)
    check_target(plan, tgt, target, opts)
    check_method(plan, src, tgt, source_session, target_session, source, target, opts)
    check_unseal(plan, src, tgt, source, target, opts)
    if opts.method == "live":
        compare_move(plan, source_session, source, target)
    return plan


def twin_left_behind(plan: MigrationPlan, opts: MigrationOptions, source: Host, target: Host) -> str:
    """Why leaving the source copy off is a trap when the copy keeps the VM's id (an export without a new id, the
    copy from the source's share, or its files registered in place): the same id is then registered on two hosts,
    and a later import or move of either to the other's host fails on "the identifier is already in use"."""
    keeps_id = opts.method == "register" or (opts.method in COPIES and not opts.new_id)
    if plan.vm is None or opts.source_after != "off" or not keeps_id:
        return ""
    return _(
        "'%(vm)s' keeps its ID %(id)s on %(target)s, and its source copy stays registered on "
        "%(source)s (off): the same VM ID on two hosts. A later import or move of either one to the other's host "
        'fails ("the identifier is already in use"), and starting both runs two machines of one identity. Remove '
        "the source copy (its disks stay), or give the imported copy a new ID."
    ) % {"vm": plan.vm.name, "id": plan.vm.vm_id, "target": target, "source": source}


def check_state(plan: MigrationPlan, opts: MigrationOptions, source: Host) -> None:
    assert plan.vm is not None
    state = plan.vm.state
    said = {"vm": plan.vm.name, "state": state, "source": source}
    if state == "Running" and opts.method != "live":
        plan.add("warn", _("'%(vm)s' is Running on %(source)s: the job shuts it down before moving it.") % said)
    elif state not in ("Off", "Running", "Saved"):
        plan.add("fail", _("'%(vm)s' is %(state)s on %(source)s: turn it Off (or let it run) first.") % said)
    else:
        plan.add("ok", _("'%(vm)s' is %(state)s on %(source)s") % said)


def check_target(plan: MigrationPlan, tgt: HostSide, target: Host, opts: MigrationOptions) -> None:
    assert plan.vm is not None
    if tgt.vm(opts.vm_name) is not None:
        plan.add(
            "fail",
            _(
                "%(target)s already has a VM named '%(vm)s'. Rename or remove one of them first: two VMs of one "
                "name on a host cannot be told apart by name."
            )
            % {"target": target, "vm": opts.vm_name},
        )
    same_id = any(vm.vm_id == plan.vm.vm_id for vm in tgt.inventory.vms)
    said = {"target": target, "id": plan.vm.vm_id}
    if same_id and opts.method == "live":
        plan.add("fail", _("%(target)s already has a VM with the ID %(id)s.") % said)
    elif same_id and opts.method in COPIES and not opts.new_id:
        plan.add("fail", _("%(target)s already has a VM with the ID %(id)s: tick “new ID” to import a copy.") % said)


def check_method(
    plan: MigrationPlan,
    src: HostSide,
    tgt: HostSide,
    source_session: Sender,
    target_session: Sender,
    source: Host,
    target: Host,
    opts: MigrationOptions,
) -> None:
    verdict = plan.methods[opts.method]
    if verdict.runnable is False:
        for reason in verdict.reasons:
            plan.add("fail", reason)
    if opts.method == "live":
        for host, side in ((source, src), (target, tgt)):
            if side.live_migration:
                plan.add("ok", _("Live migration is enabled on %(host)s") % {"host": host})
            else:
                plan.add(
                    "fail",
                    _("Live migration is not enabled on %(host)s (Enable-VMMigration): use export/import.")
                    % {"host": host},
                )
    elif opts.method == "export":
        if verdict.runnable:  # both tried it from their own sessions
            for host in (source, target):
                plan.add("ok", _("%(host)s sees the lab share %(share)s") % {"host": host, "share": opts.share})
        plan.add("ok", _("Compare-VM runs on the target after the export; the job stops if it reports a problem"))
    elif opts.method == "pull":
        if verdict.runnable:
            plan.add("ok", verdict.reasons[0])
        if not plan.target_vm_path:
            plan.add(
                "fail",
                _("%(target)s did not say where it keeps VMs (Get-VMHost VirtualMachinePath).") % {"target": target},
            )
        plan.add("ok", _("Compare-VM runs on the target after the copy; the job stops if it reports a problem"))
    else:
        check_files_in_place(plan, tgt, target, target_session, opts)


def check_files_in_place(
    plan: MigrationPlan, tgt: HostSide, target: Host, target_session: Sender, opts: MigrationOptions
) -> None:
    """Register: the .vmcx must lie under a folder the target reported, before the target is asked anything about
    it (Test-Path on a path of the form's choosing would already make the host look there)."""
    if not lies_under(opts.files_path, tgt.folders):
        listed = "; ".join(tgt.folders) or _("none")
        plan.add(
            "fail",
            _("%(path)s is not under a folder %(target)s reported for VM files (%(folders)s).")
            % {"path": opts.files_path, "target": target, "folders": listed},
        )
        return
    if not target_session.run(TestPath(opts.files_path)):
        plan.add("fail", _("%(target)s has no file %(path)s.") % {"target": target, "path": opts.files_path})
        return
    report = target_session.run(CompareVM(ImportOptions(opts.files_path, copy=False)))
    for problem in report.incompatibilities:
        plan.add("fail", _("Compare-VM on %(host)s: %(problems)s") % {"host": target, "problems": problem})
    if report.ok:
        plan.add("ok", _("Compare-VM on %(target)s reports no incompatibility") % {"target": target})


def compare_move(plan: MigrationPlan, source_session: Sender, source: Host, target: Host) -> None:
    """Ask the source what Move-VM would find wrong (it checks the target itself, as the move will). That the target
    cannot unwrap the key protector yet is expected when the job gives it the right first: the job asks again then,
    just before Move-VM."""
    assert plan.vm is not None
    if plan.failures:
        return  # its findings would repeat the ones above
    try:
        report = source_session.run(CompareMove(plan.vm.name, plan.target_name, plan.target_storage))
    except RemoteCommandError as exc:  # the source cannot even ask the target, e.g. no credentials for the second hop
        plan.add(
            "fail",
            _("Compare-VM on %(source)s for a move to %(target)s failed: %(error)s")
            % {"source": source, "target": target, "error": exc},
        )
        refuse_without_delegation(plan, [str(exc)])
        return
    refuse_without_delegation(plan, report.incompatibilities)
    for problem in report.incompatibilities:
        if plan.unseal_needed and "key protector" in problem.lower():
            plan.add(
                "ok",
                _(
                    "Compare-VM on %(source)s: %(target)s cannot unwrap the key protector yet — the job gives it "
                    "the right first, then runs Compare-VM again before Move-VM"
                )
                % {"source": source, "target": target},
            )
        else:
            plan.add(
                "fail",
                _("Compare-VM on %(source)s for a move to %(target)s: %(problem)s")
                % {"source": source, "target": target, "problem": problem},
            )
    if report.ok:
        plan.add(
            "ok",
            _("Compare-VM on %(source)s reports no incompatibility for a move to %(target)s")
            % {"source": source, "target": target},
        )


def refuse_without_delegation(plan: MigrationPlan, answers: list[str]) -> None:
    """Compare-VM's "no credentials" (0x8009030E) means the source may not delegate the console's logon to the
    target: live migration cannot work, and the methods table says what to grant in Active Directory."""
    if plan.hops is not None and any(NO_DELEGATION in answer for answer in answers):
        plan.methods["live"] = verdict = delegation_refused(*plan.hops)
        for reason in verdict.reasons:
            plan.add("fail", reason)


def check_unseal(
    plan: MigrationPlan,
    src: HostSide,
    tgt: HostSide,
    source: Host,
    target: Host,
    opts: MigrationOptions,
) -> None:
    kp = plan.key_protector
    if not kp.present:
        plan.add("ok", _("The VM has no key protector: it needs no guardian on the target"))
        return
    if tgt.can_unseal(kp):
        plan.add("ok", _("%(target)s already holds the private keys of a guardian of this VM") % {"target": target})
        return
    plan.unseal_needed = True
    if opts.unseal == "carry":
        plan_carry(plan, src, tgt, source, target)
    else:
        plan_authorise(plan, src, tgt, source, target)


def plan_carry(plan: MigrationPlan, src: HostSide, tgt: HostSide, source: Host, target: Host) -> None:

    kp = plan.key_protector
    ordered = ([kp.owner] if kp.owner else []) + [g for g in kp.guardians if g != kp.owner]
    plan.vault_pair = next((p for g in ordered if (p := find_pair(g.signing, g.encryption)) is not None), None)
    if plan.vault_pair is not None:
        plan.add("ok", _("%(target)s will get %(pair)s from the vault") % {"target": target, "pair": plan.vault_pair})
        plan.import_name = distinct_name(plan.vault_pair, tgt.inventory.guardians)
    elif kp.owner is not None and {kp.owner.signing, kp.owner.encryption} <= src.keyed:
        plan.add(
            "ok",
            _("The owner guardian will be escrowed from %(source)s first, then imported to %(target)s")
            % {"source": source, "target": target},
        )
        escrowed = EscrowedPair(signing_thumbprint=kp.owner.signing, encryption_thumbprint=kp.owner.encryption)
        plan.import_name = distinct_name(escrowed, tgt.inventory.guardians)
    else:
        plan.add("fail", _("No guardian of this VM is in the vault, and the source lacks the owner's private keys."))


def check_carry_placement(plan: MigrationPlan, target: Host, user: Any) -> None:
    """Carrying the owner's private keys to a target that never held them is an admin's migration (placement.py): a
    failed check for anyone else, before anything is sent."""
    owner = plan.key_protector.owner
    if not plan.import_name or (plan.vault_pair is None and owner is None):
        return  # nothing is carried
    pair = plan.vault_pair
    if pair is None:
        assert owner is not None
        pair = EscrowedPair(signing_thumbprint=owner.signing, encryption_thumbprint=owner.encryption)
    if not may_place(user, target, pair):
        plan.add("fail", placement_refusal(target, pair) + " " + _("Or choose to authorise the target's own guardian."))


def plan_authorise(plan: MigrationPlan, src: HostSide, tgt: HostSide, source: Host, target: Host) -> None:
    assert plan.vm is not None
    owner = plan.key_protector.owner
    if owner is None or owner.signing not in src.keyed:
        plan.add(
            "fail",
            _("%(source)s lacks the owner's private signing key, which granting access needs: use carry.")
            % {"source": source},
        )
    if plan.vm.state == "Saved":
        plan.add(
            "fail", _("A saved state cannot be resumed after its key protector changes: use carry, or discard it.")
        )
    elif plan.vm.state == "Running":
        plan.add("warn", _("The VM is shut down before its key protector changes (it cannot change while running)."))
    local = next((g for g in tgt.inventory.guardians if g.name == UNTRUSTED_GUARDIAN), None)
    said = {"target": target}
    if local is None:
        plan.add(
            "ok", _("%(target)s has no guardian yet: the job creates its UntrustedGuardian, then authorises it") % said
        )
    elif not local.has_private_signing_key or local.encryption_thumbprint.upper() not in tgt.keyed:
        plan.add("fail", _("The UntrustedGuardian of %(target)s has lost its private keys: reset it first.") % said)
    else:
        plan.target_guardian = local.name
        plan.add("ok", _("The UntrustedGuardian of %(target)s will be authorised in the VM's key protector") % said)
    wanted = f"{plan.target_name or target}-{plan.target_guardian or UNTRUSTED_GUARDIAN}"
    plan.granted_name = free_name(wanted, src.inventory.guardians)


def free_name(wanted: str, guardians: list[GuardianFacts]) -> str:
    """`wanted`, or `wanted-2`, `-3`, … when a guardian of the host already has that name (an earlier run's)."""
    taken = {g.name.lower() for g in guardians}
    name, number = wanted, 2
    while name.lower() in taken:
        name, number = f"{wanted}-{number}", number + 1
    return name
