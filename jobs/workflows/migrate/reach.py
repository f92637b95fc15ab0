"""Which migration methods can work between two hosts, and why not the others: the second hop (docs/domain.md).

A host's session logged on with NTLM or Basic (or Kerberos without delegation) holds no credentials for a third
machine: from it the lab share answers "access denied" and the other host refuses Move-VM. So the preflight reads
what decides it — each host's domain membership and migration authentication type, how the console logs on to it,
and whether the share answers *from the host's session* (Test-Path there) — and says what to configure.

A verdict is False only where Windows is known to refuse; where the answer lies in Active Directory (constrained
delegation, which the console cannot read) it is None, and Compare-VM on the source decides before anything runs.

The method made for workgroups ("pull") needs no second hop at all: the source exports to a folder it shares
itself (a local path for Export-VM), and the target maps that share with the share's own account, given as a
PSCredential for that one connection (New-PSDrive -Credential), copies the export to a local folder and imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from hosts.models import Host, LabShare
from hosts.remoting.catalog.vms import Membership
from hosts.remoting.operation import quote

KERBEROS, CREDSSP = "Kerberos", "CredSSP"
MIGRATION_SERVICE = "Microsoft Virtual System Migration Service"
NO_DELEGATION = "0x8009030E"  # SEC_E_NO_CREDENTIALS: the source has no credentials it may pass on to the target
# How the console's session logs on, by the host's authentication setting. Negotiate becomes NTLM towards an IP
# address or a workgroup host, so it is not counted as Kerberos here.
LOGON = {"negotiate": "Negotiate", "ntlm": "NTLM", "kerberos": "Kerberos", "basic": "Basic", "credssp": "CredSSP"}
# CredSSP hands the host the account's password: its session can act on a third machine as that account.
DELEGATES_CREDENTIALS = "credssp"


@dataclass
class HopFacts:
    """One host as the second hop sees it, read live by the preflight."""

    host: Host
    computer_name: str
    membership: Membership
    migration_authentication: str  # CredSSP | Kerberos | "" (not read)
    share_reachable: bool  # Test-Path of the lab share from the console's session on this host

    @property
    def logon(self) -> str:
        return LOGON.get(self.host.auth, self.host.auth)

    @property
    def delegates_credentials(self) -> bool:
        return self.host.auth == DELEGATES_CREDENTIALS


@dataclass
class Verdict:
    """Whether a method can work between the two hosts: True, False (Windows refuses it) or None (a live check
    decides); the reasons, and the PowerShell that would make it work, each line saying where it runs."""

    method: str
    runnable: bool | None
    reasons: list[str] = field(default_factory=list)
    configure: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return {True: _("can work"), False: _("cannot work"), None: _("Compare-VM decides")}[self.runnable]


@dataclass
class PullFacts:
    """The share the source would serve its export from, as the preflight found it: the administrator's entry (with
    or without the share's account) and the folder the source's own Get-SmbShare says the share serves."""

    share: LabShare | None
    path: str
    folder: str | None  # None: the source serves no share of that name (or the share is another machine's)


def assess(src: HopFacts, tgt: HopFacts, share: str, pull: PullFacts) -> dict[str, Verdict]:
    return {
        "pull": pull_verdict(src, tgt, pull),
        "export": share_verdict(src, tgt, share),
        "live": live_verdict(src, tgt),
        "register": register_verdict(),
    }


def pull_verdict(src: HopFacts, tgt: HopFacts, pull: PullFacts) -> Verdict:
    """Whether the target can copy the export from a share of the source with the share's own account."""
    verdict = Verdict("pull", True)
    share = pull.share
    served_here = share is not None and same_machine(share.server, src.computer_name, str(src.host))
    if not served_here:
        verdict.reasons.append(
            _(
                "%(share)s is not a share of %(source)s: this method copies from a folder %(source)s shares itself "
                "(Export-VM writes there locally, with no second hop)."
            )
            % {"share": pull.path, "source": src.host}
        )
    elif pull.folder is None:
        verdict.reasons.append(
            _("%(source)s has no share named '%(name)s' (Get-SmbShare).")
            % {"source": src.host, "name": share_name(pull.path)}
        )
    if share is None or not share.has_credentials:
        verdict.reasons.append(
            _(
                "No account is stored for %(share)s: an administrator gives the share's account (a local account "
                "of %(source)s that may read the share) in Hosts › Lab shares."
            )
            % {"share": pull.path, "source": src.host}
        )
    if verdict.reasons:
        verdict.runnable = False
        verdict.configure = serve_share(src, tgt, share_name(pull.path) if served_here else "VMExports")
        return verdict
    assert share is not None
    verdict.reasons = [
        _(
            "%(source)s exports to %(folder)s, the folder behind %(share)s; %(target)s maps %(share)s with the "
            "share's account %(account)s (explicit credentials for that one share: not a second hop), copies the "
            "export to a local folder and imports it there. Wrong credentials or an unreachable share stop the job "
            "before anything is imported."
        )
        % {"source": src.host, "folder": pull.folder, "share": pull.path, "target": tgt.host, "account": share.account}
    ]
    return verdict


def same_machine(server: str, *names: str) -> bool:
    """Whether a UNC server name (HV01 or HV01.lab.test) names the host."""
    first = server.split(".")[0].casefold()
    return any(first == name.split(".")[0].casefold() for name in names if name)


def share_name(unc: str) -> str:
    parts = unc.lstrip("\\").split("\\")
    return parts[1] if len(parts) > 1 else ""


def serve_share(src: HopFacts, tgt: HopFacts, name: str) -> list[str]:
    """The PowerShell that makes the source serve a folder to the target with an account of its own."""
    account = f"{src.computer_name}\\vmshare"
    return [
        f"# On {src.host}: a local account that may only read the exports, a folder and its share,",
        "New-LocalUser -Name 'vmshare' -Password (Read-Host -AsSecureString 'Password of vmshare')",
        "New-Item -ItemType Directory -Path 'D:\\VMExports'",
        f"New-SmbShare -Name {quote(name)} -Path 'D:\\VMExports' -ReadAccess {quote(account)}",
        "# and File and Printer Sharing open on the Private profile (the network must be Private too):",
        "Set-NetConnectionProfile -InterfaceAlias 'Ethernet' -NetworkCategory Private",
        "Set-NetFirewallRule -DisplayGroup 'File And Printer Sharing' -Enabled True -Profile Private",
        f"# Then in the console, Hosts › Lab shares: \\\\{src.computer_name}\\{name} for {src.host} and {tgt.host}, "
        f"with the account {account} and its password.",
    ]


def share_verdict(src: HopFacts, tgt: HopFacts, share: str) -> Verdict:
    verdict = Verdict("export", True)
    for side in (src, tgt):
        if side.share_reachable:
            if side.delegates_credentials:
                verdict.reasons.append(
                    _(
                        "%(host)s reaches %(share)s from the console's session: logged on with CredSSP, the session "
                        "holds the account's credentials for the share (the second hop)."
                    )
                    % {"host": side.host, "share": share}
                )
            continue
        verdict.runnable = False
        verdict.reasons.append(
            _(
                "%(host)s cannot reach %(share)s from the console's session (Test-Path on %(host)s is False). "
                "A session logged on with %(logon)s holds no credentials for a third machine (the second hop)."
            )
            % {"host": side.host, "share": share, "logon": side.logon}
        )
        verdict.configure += share_remedy(side, share)
    return verdict


def share_remedy(side: HopFacts, share: str) -> list[str]:
    server = share.lstrip("\\").split("\\", 1)[0]
    if not side.membership.part_of_domain:
        return [
            f"# {side.host} is in {side.membership}: it cannot delegate credentials. Use “Copy from the source's own "
            "share”: the target maps a share of the source with the share's own account (no second hop)."
        ]
    connect = f"and connect to {side.host} with Kerberos. " if side.host.auth != "kerberos" else ""
    return [
        f"# On a domain controller: let {side.host} delegate to the file server (Kerberos constrained delegation),",
        f"Set-ADComputer -Identity {side.computer_name} -Add @{{'msDS-AllowedToDelegateTo'=@('cifs/{server}')}}",
        *any_protocol(side),
        f"# {connect}Or, on {side.host}, accept delegated credentials (CredSSP),",
        "Enable-WSManCredSSP -Role Server -Force",
        f"# and register {side.host} in the console with CredSSP over HTTPS (a dedicated account: it receives the "
        "password).",
    ]


def any_protocol(side: HopFacts) -> list[str]:
    """Protocol transition for the host's computer account: the console's Kerberos tickets are not forwardable."""
    return [
        "# with any authentication protocol: the console's Kerberos tickets are not forwardable (it hands no host "
        "its TGT), so the host must get its own forwardable ticket for the console's account (S4U2self) first,",
        f"Set-ADAccountControl -Identity (Get-ADComputer {side.computer_name}) -TrustedToAuthForDelegation $true",
    ]


def live_verdict(src: HopFacts, tgt: HopFacts) -> Verdict:
    verdict = Verdict("live", None, [_("Delegation lives in Active Directory: Compare-VM on the source tells.")])
    outside = [side for side in (src, tgt) if not side.membership.part_of_domain]
    if outside:
        verdict.runnable = False
        verdict.reasons = [
            _(
                "%(host)s is in %(membership)s: live migration without a cluster needs both hosts in one (or a "
                "trusting) domain. A workgroup pair cannot live-migrate: use export/import."
            )
            % {"host": side.host, "membership": side.membership}
            for side in outside
        ]
        verdict.configure = [f"Add-Computer -DomainName <domain> -Restart  # on {side.host}" for side in outside]
    elif src.membership.domain.casefold() != tgt.membership.domain.casefold():
        verdict.runnable = False
        verdict.reasons = [
            _("%(source)s is in %(source_membership)s and %(target)s in %(target_membership)s: they need a trust.")
            % {
                "source": src.host,
                "source_membership": src.membership,
                "target": tgt.host,
                "target_membership": tgt.membership,
            }
        ]
    elif src.migration_authentication == CREDSSP and src.delegates_credentials:
        verdict.runnable = True
        verdict.reasons = [
            _(
                "%(source)s and %(target)s are both in %(membership)s; %(source)s authenticates migrations with "
                "CredSSP and the console logs on to it with CredSSP, so Move-VM on %(source)s holds the account's "
                "credentials to authenticate to %(target)s."
            )
            % {"source": src.host, "target": tgt.host, "membership": src.membership}
        ]
    elif src.migration_authentication == CREDSSP:
        verdict.runnable = False
        verdict.reasons = [
            _(
                "%(source)s authenticates migrations with CredSSP, which needs the operator's own credentials on "
                "%(source)s; the console's %(logon)s session has none (Windows: 0x8009030D)."
            )
            % {"source": src.host, "logon": src.logon}
        ]
        verdict.configure = kerberos_migration(src, tgt) + credssp_logon(src)
    elif src.migration_authentication == KERBEROS and src.host.auth in ("ntlm", "basic"):
        verdict.runnable = False
        verdict.reasons = [
            _("Kerberos delegation needs a Kerberos logon: the console connects to %(source)s with %(logon)s.")
            % {"source": src.host, "logon": src.logon}
        ]
        verdict.configure = [f"# Register {src.host} with Kerberos authentication in the console."]
    return verdict


def credssp_logon(side: HopFacts) -> list[str]:
    return [
        f"# Or let {side.host} receive the account's credentials, and register it in the console with CredSSP over "
        "HTTPS (Prepare a host says the risk: use a dedicated account):",
        f"Enable-WSManCredSSP -Role Server -Force  # on {side.host}",
    ]


def kerberos_migration(src: HopFacts, tgt: HopFacts) -> list[str]:
    services = ", ".join(f"'{spn}'" for spn in delegation_targets(tgt))
    lines = [
        f"Enable-VMMigration  # on {src.host} and on {tgt.host}",
        f"Set-VMHost -VirtualMachineMigrationAuthenticationType Kerberos  # on {src.host} and on {tgt.host}",
        f"# On a domain controller: let {src.host} delegate to {tgt.host}'s migration service and file shares,",
        f"Set-ADComputer -Identity {src.computer_name} -Add @{{'msDS-AllowedToDelegateTo'=@({services})}}",
        *any_protocol(src),
    ]
    if src.host.auth != "kerberos":
        lines.append(f"# and connect to {src.host} with Kerberos.")
    return lines


def delegation_targets(tgt: HopFacts) -> list[str]:
    """The target's services a source must be allowed to delegate to, by its short and its DNS name."""
    names = [tgt.computer_name]
    if tgt.membership.part_of_domain:
        names.append(f"{tgt.computer_name}.{tgt.membership.domain}")
    return [f"{service}/{name}" for service in (MIGRATION_SERVICE, "cifs") for name in names]


def delegation_refused(src: HopFacts, tgt: HopFacts) -> Verdict:
    """What the preflight says when Compare-VM on the source finds it may not pass the console's logon on to the
    target (SEC_E_NO_CREDENTIALS): delegation is missing in Active Directory, and how to grant it."""
    reason = _(
        "%(source)s may not pass the console's %(logon)s logon on to %(target)s (Compare-VM: no credentials, "
        "%(code)s). Live migration with Kerberos needs %(source_computer)s to be allowed to delegate to "
        "%(target_computer)s's migration service (Kerberos constrained delegation, set in Active Directory)."
    ) % {
        "source": src.host,
        "logon": src.logon,
        "target": tgt.host,
        "code": NO_DELEGATION,
        "source_computer": src.computer_name,
        "target_computer": tgt.computer_name,
    }
    return Verdict("live", False, [reason], kerberos_migration(src, tgt))


def register_verdict() -> Verdict:
    return Verdict("register", True, [_("Runs on the target alone (its own files): no second hop.")])
