"""Which migration methods can work between two hosts, and why not the others: the second hop (docs/domain.md).

A host's session logged on with NTLM or Basic (or Kerberos without delegation) holds no credentials for a third
machine: from it the lab share answers "access denied" and the other host refuses Move-VM. So the preflight reads
what decides it — each host's domain membership and migration authentication type, how the console logs on to it,
and whether the share answers *from the host's session* (Test-Path there) — and says what to configure.

A verdict is False only where Windows is known to refuse; where the answer lies in Active Directory (constrained
delegation, which the console cannot read) it is None, and Compare-VM on the source decides before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hosts.models import Host
from hosts.remoting.catalog.vms import Membership

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
        return {True: "can work", False: "cannot work", None: "Compare-VM decides"}[self.runnable]


def assess(src: HopFacts, tgt: HopFacts, share: str) -> dict[str, Verdict]:
    return {"export": share_verdict(src, tgt, share), "live": live_verdict(src, tgt), "register": register_verdict()}


def share_verdict(src: HopFacts, tgt: HopFacts, share: str) -> Verdict:
    verdict = Verdict("export", True)
    for side in (src, tgt):
        if side.share_reachable:
            if side.delegates_credentials:
                verdict.reasons.append(
                    f"{side.host} reaches {share} from the console's session: logged on with CredSSP, the session "
                    "holds the account's credentials for the share (the second hop)."
                )
            continue
        verdict.runnable = False
        verdict.reasons.append(
            f"{side.host} cannot reach {share} from the console's session (Test-Path on {side.host} is False). "
            f"A session logged on with {side.logon} holds no credentials for a third machine (the second hop)."
        )
        verdict.configure += share_remedy(side, share)
    return verdict


def share_remedy(side: HopFacts, share: str) -> list[str]:
    server = share.lstrip("\\").split("\\", 1)[0]
    if not side.membership.part_of_domain:
        return [
            f"# {side.host} is in {side.membership}: it cannot delegate credentials. Copy the VM's files to "
            f"{side.host} and use “Register VM files already on the target”, or give {side.host} its own "
            "credentials for the share."
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
    verdict = Verdict("live", None, ["Delegation lives in Active Directory: Compare-VM on the source tells."])
    outside = [side for side in (src, tgt) if not side.membership.part_of_domain]
    if outside:
        verdict.runnable = False
        verdict.reasons = [
            f"{side.host} is in {side.membership}: live migration without a cluster needs both hosts in one (or a "
            "trusting) domain. A workgroup pair cannot live-migrate: use export/import."
            for side in outside
        ]
        verdict.configure = [f"Add-Computer -DomainName <domain> -Restart  # on {side.host}" for side in outside]
    elif src.membership.domain.casefold() != tgt.membership.domain.casefold():
        verdict.runnable = False
        verdict.reasons = [f"{src.host} is in {src.membership} and {tgt.host} in {tgt.membership}: they need a trust."]
    elif src.migration_authentication == CREDSSP and src.delegates_credentials:
        verdict.runnable = True
        verdict.reasons = [
            f"{src.host} and {tgt.host} are both in {src.membership}; {src.host} authenticates migrations with "
            f"CredSSP and the console logs on to it with CredSSP, so Move-VM on {src.host} holds the account's "
            f"credentials to authenticate to {tgt.host}."
        ]
    elif src.migration_authentication == CREDSSP:
        verdict.runnable = False
        verdict.reasons = [
            f"{src.host} authenticates migrations with CredSSP, which needs the operator's own credentials on "
            f"{src.host}; the console's {src.logon} session has none (Windows: 0x8009030D)."
        ]
        verdict.configure = kerberos_migration(src, tgt) + credssp_logon(src)
    elif src.migration_authentication == KERBEROS and src.host.auth in ("ntlm", "basic"):
        verdict.runnable = False
        verdict.reasons = [
            f"Kerberos delegation needs a Kerberos logon: the console connects to {src.host} with {src.logon}."
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
    reason = (
        f"{src.host} may not pass the console's {src.logon} logon on to {tgt.host} (Compare-VM: no credentials, "
        f"{NO_DELEGATION}). Live migration with Kerberos needs {src.computer_name} to be allowed to delegate to "
        f"{tgt.computer_name}'s migration service (Kerberos constrained delegation, set in Active Directory)."
    )
    return Verdict("live", False, [reason], kerberos_migration(src, tgt))


def register_verdict() -> Verdict:
    return Verdict("register", True, ["Runs on the target alone (its own files): no second hop."])
