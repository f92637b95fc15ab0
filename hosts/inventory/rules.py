"""The rules of domain.md as plain functions: can a VM start on a host, which guardian needs a reset, and the words
of each risk.

Two computations share them: the from-scratch one over the whole lab in memory (analysis.Inventory, the reference)
and the stored one that is updated incrementally when an inventory changes (facts.py). Keeping the rules here means
the two can only differ in *which* facts they feed in, which is what the tests compare.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from hosts.models import Host

from . import actions
from .actions import Action
from .models import Certificate, Guardian, HostInventory, VirtualMachine

UNTRUSTED_GUARDIAN = "UntrustedGuardian"
EXPIRY_WINDOW = dt.timedelta(days=365)

Pair = tuple[str, str]

RISK_TITLES = {
    "vm_cannot_start": "VM can start on no registered host",
    "single_copy": "Keys on one host only, not escrowed",
    "guardian_without_keys": "Guardian without private keys",
    "cert_expiring": "Certificate expiring within 12 months",
    "hgs_mode": "Host in HGS mode",
    "stale_inventory": "Inventory out of date",
}
VM_RISKS = ("vm_cannot_start", "single_copy")


@dataclass
class Risk:
    code: str
    title: str
    explanation: str
    subject: str  # what the risk is about, e.g. "Win11-A on HV02"
    url: str = ""
    host: Host | None = None
    actions: list[Action] = field(default_factory=list)  # the workflow pages that fix it (filter with permitted)
    vm: VirtualMachine | None = None  # the VM it is about, for a VM's risks


def one_escrow_per_guardian(risks: list[Risk]) -> list[Risk]:
    """Several VMs whose keys exist once share one guardian, and escrowing it once protects them all: the first of
    their risks in the list offers one "Escrow…" naming them, the others none (in place: the risks are the list's)."""
    sharing: dict[str, list[Risk]] = {}
    for risk in risks:
        for action in risk.actions:
            if action.code == "escrow":
                sharing.setdefault(action.url, []).append(risk)
    for url, group in sharing.items():
        if len(group) < 2:
            continue
        names = ", ".join(risk.vm.name if risk.vm else risk.subject for risk in group)
        first, *others = group
        first.actions = [replace(a, label=f"Escrow… (protects {names})") if a.url == url else a for a in first.actions]
        for risk in others:
            risk.actions = [a for a in risk.actions if a.url != url]
    return risks


# -- can VM X start on host Y? ----------------------------------------------------------------------------------------


def can_start_here(state: HostInventory | None) -> bool:
    """Whether a host's own keys decide what starts there: inventoried, and not in HGS mode."""
    return state is not None and state.refreshed_at is not None and not (state.mode and state.mode != "Local")


def start_answer(
    vm: VirtualMachine,
    host: Host,
    state: HostInventory | None,
    held: Callable[[str], bool],
    name_of: Callable[[Pair], str],
) -> tuple[bool, str]:
    """Can the VM start on the host, and why (not). `held(thumbprint)`: does the host's store hold that private key;
    `name_of(pair)`: how the page names a guardian."""
    if not vm.protected:
        return True, "Yes: the VM has no vTPM key protector, so no guardian is needed."
    if not vm.kp_readable:
        return False, "Unknown: the guardians of its key protector could not be read (see the VM's problems)."
    if state is None or state.refreshed_at is None:
        return False, f"Unknown: {host} has not been inventoried yet — refresh it first."
    if state.mode and state.mode != "Local":
        return False, f"No: {host} is in HGS mode; it starts only VMs its Host Guardian Service releases keys for."
    for pair in vm.guardian_pairs:
        if held(pair[1]):
            name = name_of(pair)
            return True, f"Yes: {host} holds the private key of guardian {name}, which the key protector trusts."
    count = len(vm.guardian_pairs)
    return False, (
        f"No: {host} holds the private keys of none of the {count} guardian(s) the key protector is sealed to. "
        "Import the owner's certificate pair (from the vault or a PFX backup) on this host first."
    )


def pair_to_escrow(vm: VirtualMachine, held: Callable[[str], bool]) -> Pair:
    """The guardian pair whose keys let a host start the VM: the owner's when the host has it."""
    pairs = [pair for pair in vm.guardian_pairs if held(pair[1])]
    return vm.owner_pair if vm.owner_pair in pairs else pairs[0]


def needs_reset(guardian: Guardian, owners_on_its_host: set[Pair]) -> bool:
    """A guardian without private keys that should have them: `UntrustedGuardian`, or the owner of a VM on its host.
    Imported (public-only) or HGS guardians have no private keys by design."""
    if guardian.has_private_signing_key:
        return False
    return guardian.name == UNTRUSTED_GUARDIAN or guardian.identity in owners_on_its_host


# -- guardian names ---------------------------------------------------------------------------------------------------

_GENERATED_SUBJECT = re.compile(r"Shielded VM \w+ Certificate \((?P<name>[^)]*)\) \((?P<host>[^)]*)\)")


def name_from_subject(subject: str) -> str:
    """'UntrustedGuardian (of HV02)' from a subject Hyper-V generated, so a guardian no host holds any more still
    says where it came from; '' when the subject does not say."""
    match = _GENERATED_SUBJECT.search(subject or "")
    return f"{match['name']} (of {match['host']})" if match else ""


def display_name(names: Iterable[str], vault_name: str, subject: str) -> str:
    shown = ", ".join(sorted(n for n in set(names) if n))
    return shown or vault_name or name_from_subject(subject) or "(unnamed guardian)"


# -- the words of each risk -------------------------------------------------------------------------------------------


def vm_url(vm: VirtualMachine) -> str:
    return f"/vms/{vm.pk}/"


def vm_cannot_start(vm: VirtualMachine, escrowed: bool, guardian_broken: bool = False) -> Risk:
    """`guardian_broken`: the UntrustedGuardian of the VM's host has lost its keys, so Hyper-V refuses to turn its
    vTPM off until that guardian is reset (domain.md, 3): then the vTPM is not offered."""
    why = (
        f"{vm.name} cannot start anywhere: no registered host holds the private keys of a guardian its "
        'key protector is sealed to ("The key protector could not be unwrapped"). '
    )
    if escrowed:
        fix = "The vault holds them: restore them onto its host."
        offered = actions.restore(vm.host, vm.name)
    else:
        vtpm = f"turn its vTPM off once the guardian of {vm.host} is reset" if guardian_broken else "turn its vTPM off"
        fix = (
            "The vault does not hold them either. Upload a PFX backup if one exists; otherwise rescue it as a new "
            f"VM without a vTPM on its disks, or {vtpm} (BitLocker then asks for its recovery key)."
        )
        offered = actions.lost_keys(vm.host, vm.name, vtpm_off=not guardian_broken)
    return Risk(
        "vm_cannot_start",
        RISK_TITLES["vm_cannot_start"],
        why + fix,
        f"{vm.name} on {vm.host}",
        vm_url(vm),
        vm.host,
        offered,
        vm,
    )


def single_copy(vm: VirtualMachine, holder: Host, pair: Pair) -> Risk:
    return Risk(
        "single_copy",
        RISK_TITLES["single_copy"],
        f"{vm.name} is one reinstall away from loss: the private keys it needs exist only on "
        f"{holder} and are not escrowed. Escrow the guardian into the vault now.",
        f"{vm.name} on {vm.host}",
        vm_url(vm),
        vm.host,
        actions.escrow(holder, pair),
        vm,
    )


def guardian_without_keys(guardian: Guardian) -> Risk:
    return Risk(
        "guardian_without_keys",
        RISK_TITLES["guardian_without_keys"],
        f"Guardian {guardian.name} on {guardian.host} has no private keys: TPM changes will fail "
        '("does not have a private key and cannot be the owner"). A guardian reset is needed — '
        "escrow first anything still recoverable.",
        f"{guardian.name} on {guardian.host}",
        f"/hosts/{guardian.host_id}/#host-guardians",
        guardian.host,
        actions.reset(guardian.host, guardian.name),
    )


def expiring(cert: Certificate, now: dt.datetime) -> bool:
    return cert.not_after is not None and cert.not_after <= now + EXPIRY_WINDOW


def cert_expiring(cert: Certificate, now: dt.datetime) -> Risk:
    assert cert.not_after is not None  # only expiring certificates get here
    when = "expired on" if cert.not_after <= now else "expires on"
    return Risk(
        "cert_expiring",
        RISK_TITLES["cert_expiring"],
        f"Certificate {cert.subject or cert.thumbprint} on {cert.host} {when} "
        f"{cert.not_after:%Y-%m-%d}. New key protectors cannot use an expired guardian without "
        "-AllowExpired; plan a new guardian and re-grant access.",
        f"{cert.subject or cert.thumbprint} on {cert.host}",
        f"/hosts/{cert.host_id}/",
        cert.host,
    )


def host_risks(host: Host, state: HostInventory | None) -> list[Risk]:
    """HGS mode and a failed last refresh: what a host's own state says."""
    if state is None:
        return []
    found = []
    if state.mode and state.mode != "Local":
        found.append(
            Risk(
                "hgs_mode",
                RISK_TITLES["hgs_mode"],
                f"{host} is in HGS mode ({state.mode}): its keys come from a Host Guardian Service, so "
                "local guardian operations (escrow, import, reset) do not apply.",
                str(host),
                f"/hosts/{host.pk}/",
                host,
            )
        )
    if state.stale:
        found.append(
            Risk(
                "stale_inventory",
                RISK_TITLES["stale_inventory"],
                f"The last refresh of {host} failed ({state.last_error}); what is shown is from "
                f"{state.refreshed_at:%Y-%m-%d %H:%M} UTC."
                if state.refreshed_at
                else f"{host} has never been read successfully: {state.last_error}",
                str(host),
                f"/hosts/{host.pk}/",
                host,
            )
        )
    return found
