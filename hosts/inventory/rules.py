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

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

from hosts.models import Host

from . import actions
from .actions import Action
from .models import Certificate, Guardian, HostInventory, VirtualMachine

UNTRUSTED_GUARDIAN = "UntrustedGuardian"
EXPIRY_WINDOW = dt.timedelta(days=365)

Pair = tuple[str, str]

# The English titles, marked for the catalogue but kept English here: notifications store them in their text and the
# API sends them. Pages show risk_title(code), translated when shown. No risk text is stored: a VM's stored facts hold
# only its risk's code (VmFacts.risk), and every Risk below is built when a page (or the API) asks, in its language.
RISK_TITLES = {
    "vm_cannot_start": gettext_noop("VM can start on no registered host"),
    "single_copy": gettext_noop("Keys on one host only, not escrowed"),
    "guardian_without_keys": gettext_noop("Guardian without private keys"),
    "cert_expiring": gettext_noop("Certificate expiring within 12 months"),
    "hgs_mode": gettext_noop("Host in HGS mode"),
    "stale_inventory": gettext_noop("Inventory out of date"),
}
VM_RISKS = ("vm_cannot_start", "single_copy")


def risk_title(code: str) -> str:
    """The title of a kind of risk in the active language (the code itself for an unknown kind)."""
    return _(RISK_TITLES[code]) if code in RISK_TITLES else code


# The dashboard's tiles put the count before the words ("5 VMs that can start on no registered host"): a title that
# reads well after any number, in the active language.
RISK_TILES: dict[str, Callable[[int], str]] = {
    "vm_cannot_start": lambda n: ngettext(
        "VM that can start on no registered host", "VMs that can start on no registered host", n
    ),
    "single_copy": lambda n: ngettext(
        "VM whose keys are on one host only, not escrowed", "VMs whose keys are on one host only, not escrowed", n
    ),
    "guardian_without_keys": lambda n: ngettext("Guardian without private keys", "Guardians without private keys", n),
    "cert_expiring": lambda n: ngettext(
        "Certificate expiring within 12 months", "Certificates expiring within 12 months", n
    ),
    "hgs_mode": lambda n: ngettext("Host in HGS mode", "Hosts in HGS mode", n),
    "stale_inventory": lambda n: ngettext(
        "Host whose inventory is out of date", "Hosts whose inventory is out of date", n
    ),
}


def risk_tile(code: str, count: int) -> str:
    """The words after `count` on the dashboard's tile of a kind of risk, in the active language."""
    return RISK_TILES[code](count) if code in RISK_TILES else risk_title(code)


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
        label = _("Escrow… (protects %(names)s)") % {"names": names}
        first.actions = [replace(a, label=label) if a.url == url else a for a in first.actions]
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
    verdict, why = start_verdict(vm, host, state, held, name_of)
    return bool(verdict), why


def start_verdict(
    vm: VirtualMachine,
    host: Host,
    state: HostInventory | None,
    held: Callable[[str], bool],
    name_of: Callable[[Pair], str],
) -> tuple[bool | None, str]:
    """start_answer, with None when it cannot be told (key protector unreadable, host not inventoried): the reason
    is in the reader's language, so callers tell "unknown" by this, never by its words."""
    if not vm.protected:
        return True, _("Yes: the VM has no vTPM key protector, so no guardian is needed.")
    if not vm.kp_readable:
        return None, _("Unknown: the guardians of its key protector could not be read (see the VM's problems).")
    if state is None or state.refreshed_at is None:
        return None, _("Unknown: %(host)s has not been inventoried yet — refresh it first.") % {"host": host}
    if state.mode and state.mode != "Local":
        return False, _(
            "No: %(host)s is in HGS mode; it starts only VMs its Host Guardian Service releases keys for."
        ) % {"host": host}
    for pair in vm.guardian_pairs:
        if held(pair[1]):
            return True, _(
                "Yes: %(host)s holds the private key of guardian %(guardian)s, which the key protector trusts."
            ) % {"host": host, "guardian": name_of(pair)}
    count = len(vm.guardian_pairs)
    return False, _(
        "No: %(host)s holds the private keys of none of the %(count)d guardian(s) the key protector is sealed to. "
        "Import the owner's certificate pair (from the vault or a PFX backup) on this host first."
    ) % {"host": host, "count": count}


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


UNNAMED = "(unnamed guardian)"


# English: the name is stored (KnownGuardian.display_name, a mark's name) and sorted on; shown_name translates the
# two forms made up here when a page shows it.
def display_name(names: Iterable[str], vault_name: str, subject: str) -> str:
    shown = ", ".join(sorted(n for n in set(names) if n))
    return shown or vault_name or name_from_subject(subject) or UNNAMED


def shown_name(display_name: str, subject: str) -> str:
    """A stored display name in the reader's language: "(unnamed guardian)" and "X (of HV02)" (made from the
    subject) translated, a guardian's own name as it is."""
    if display_name == UNNAMED:
        return _("(unnamed guardian)")
    match = _GENERATED_SUBJECT.search(subject or "")
    if match and display_name == name_from_subject(subject):
        return _("%(name)s (of %(host)s)") % {"name": match["name"], "host": match["host"]}
    return display_name


# -- the words of each risk -------------------------------------------------------------------------------------------


def vm_url(vm: VirtualMachine) -> str:
    return f"/vms/{vm.pk}/"


def on_host(name: object, host: object) -> str:
    """A risk's subject: "Win11-A on HV02"."""
    return _("%(name)s on %(host)s") % {"name": name, "host": host}


def vm_cannot_start(vm: VirtualMachine, escrowed: bool, guardian_broken: bool = False) -> Risk:
    """`guardian_broken`: the UntrustedGuardian of the VM's host has lost its keys, so Hyper-V refuses to turn its
    vTPM off until that guardian is reset (domain.md, 3): then the vTPM is not offered."""
    why = _(
        "%(vm)s cannot start anywhere: no registered host holds the private keys of a guardian its "
        'key protector is sealed to ("The key protector could not be unwrapped"). '
    ) % {"vm": vm.name}
    if escrowed:
        fix = _("The vault holds them: restore them onto its host.")
        offered = actions.restore(vm.host, vm.name)
    else:
        if guardian_broken:
            fix = _(
                "The vault does not hold them either. Upload a PFX backup if one exists; otherwise rescue it as a new "
                "VM without a vTPM on its disks, or turn its vTPM off once the guardian of %(host)s is reset "
                "(BitLocker then asks for its recovery key)."
            ) % {"host": vm.host}
        else:
            fix = _(
                "The vault does not hold them either. Upload a PFX backup if one exists; otherwise rescue it as a new "
                "VM without a vTPM on its disks, or turn its vTPM off (BitLocker then asks for its recovery key)."
            )
        offered = actions.lost_keys(vm.host, vm.name, vtpm_off=not guardian_broken)
    return Risk(
        "vm_cannot_start",
        risk_title("vm_cannot_start"),
        why + fix,
        on_host(vm.name, vm.host),
        vm_url(vm),
        vm.host,
        offered,
        vm,
    )


def single_copy(vm: VirtualMachine, holder: Host, pair: Pair) -> Risk:
    return Risk(
        "single_copy",
        risk_title("single_copy"),
        _(
            "%(vm)s is one reinstall away from loss: the private keys it needs exist only on "
            "%(holder)s and are not escrowed. Escrow the guardian into the vault now."
        )
        % {"vm": vm.name, "holder": holder},
        on_host(vm.name, vm.host),
        vm_url(vm),
        vm.host,
        actions.escrow(holder, pair),
        vm,
    )


def guardian_without_keys(guardian: Guardian) -> Risk:
    return Risk(
        "guardian_without_keys",
        risk_title("guardian_without_keys"),
        _(
            "Guardian %(guardian)s on %(host)s has no private keys: TPM changes will fail "
            '("does not have a private key and cannot be the owner"). A guardian reset is needed — '
            "escrow first anything still recoverable."
        )
        % {"guardian": guardian.name, "host": guardian.host},
        on_host(guardian.name, guardian.host),
        f"/hosts/{guardian.host_id}/#host-guardians",
        guardian.host,
        actions.reset(guardian.host, guardian.name),
    )


def expiring(cert: Certificate, now: dt.datetime) -> bool:
    return cert.not_after is not None and cert.not_after <= now + EXPIRY_WINDOW


def cert_expiring(cert: Certificate, now: dt.datetime) -> Risk:
    assert cert.not_after is not None  # only expiring certificates get here
    words = {"cert": cert.subject or cert.thumbprint, "host": cert.host, "date": f"{cert.not_after:%Y-%m-%d}"}
    if cert.not_after <= now:
        text = _(
            "Certificate %(cert)s on %(host)s expired on %(date)s. New key protectors cannot use an expired guardian "
            "without -AllowExpired; plan a new guardian and re-grant access."
        )
    else:
        text = _(
            "Certificate %(cert)s on %(host)s expires on %(date)s. New key protectors cannot use an expired guardian "
            "without -AllowExpired; plan a new guardian and re-grant access."
        )
    return Risk(
        "cert_expiring",
        risk_title("cert_expiring"),
        text % words,
        on_host(cert.subject or cert.thumbprint, cert.host),
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
                risk_title("hgs_mode"),
                _(
                    "%(host)s is in HGS mode (%(mode)s): its keys come from a Host Guardian Service, so "
                    "local guardian operations (escrow, import, reset) do not apply."
                )
                % {"host": host, "mode": state.mode},
                str(host),
                f"/hosts/{host.pk}/",
                host,
            )
        )
    if state.stale:
        found.append(
            Risk(
                "stale_inventory",
                risk_title("stale_inventory"),
                _stale_words(host, state),
                str(host),
                f"/hosts/{host.pk}/",
                host,
            )
        )
    return found


def _stale_words(host: Host, state: HostInventory) -> str:
    """The error is the host's (or the connection's) own words, stored with the inventory as they came."""
    if state.refreshed_at:
        return _("The last refresh of %(host)s failed (%(error)s); what is shown is from %(when)s UTC.") % {
            "host": host,
            "error": state.last_error,
            "when": f"{state.refreshed_at:%Y-%m-%d %H:%M}",
        }
    return _("%(host)s has never been read successfully: %(error)s") % {"host": host, "error": state.last_error}
