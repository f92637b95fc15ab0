"""What the inventory means: guardian identities across hosts, "can VM X start on host Y?", and the risks.

Rules, from domain.md:
- A guardian's identity is its certificate pair (signing, encryption thumbprints); names are not identities.
- In Local mode a host starts a VM when its store holds the private key of the encryption certificate of any
  guardian the VM's key protector is sealed to.
- A guardian without private keys is broken only when it should be able to own VMs here: `UntrustedGuardian`, or
  the owner of a VM on this host. Imported (public-only) and HGS guardians have none by design.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field

from django.utils import timezone

from hosts.models import Host
from hosts.vault.models import EscrowedPair

from . import actions
from .actions import Action
from .models import Certificate, Guardian, HostInventory, VirtualMachine

UNTRUSTED_GUARDIAN = "UntrustedGuardian"
EXPIRY_WINDOW = dt.timedelta(days=365)

Pair = tuple[str, str]


@dataclass
class Holding:
    """One host's view of a guardian identity."""

    host: Host
    guardian_names: list[str] = field(default_factory=list)
    has_private_keys: bool = False  # the store holds the private keys of both certificates


@dataclass
class GuardianIdentity:
    signing: str
    encryption: str
    names: set[str] = field(default_factory=set)
    subject: str = ""
    not_after: dt.datetime | None = None
    holdings: dict[int, Holding] = field(default_factory=dict)  # by host id
    sealed_vms: list[VirtualMachine] = field(default_factory=list)
    owned_vms: list[VirtualMachine] = field(default_factory=list)
    escrowed: bool = False  # the vault holds this pair
    vault_entry: int | None = None  # pk of the vault's EscrowedPair, when escrowed
    vault_name: str = ""  # the guardian name the vault knows it by

    @property
    def pair(self) -> Pair:
        return (self.signing, self.encryption)

    @property
    def key(self) -> str:
        return f"{self.signing}-{self.encryption}"

    @property
    def display_name(self) -> str:
        names = ", ".join(sorted(n for n in self.names if n))
        return names or self.vault_name or name_from_subject(self.subject) or "(unnamed guardian)"

    @property
    def vault_url(self) -> str:
        return actions.vault_entry_url(self.vault_entry)

    @property
    def hosts_with_keys(self) -> list[Host]:
        return [h.host for h in self.holdings.values() if h.has_private_keys]

    @property
    def hosts_without_keys(self) -> list[Host]:
        return [h.host for h in self.holdings.values() if not h.has_private_keys]


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


RISK_TITLES = {
    "vm_cannot_start": "VM can start on no registered host",
    "single_copy": "Keys on one host only, not escrowed",
    "guardian_without_keys": "Guardian without private keys",
    "cert_expiring": "Certificate expiring within 12 months",
    "hgs_mode": "Host in HGS mode",
    "stale_inventory": "Inventory out of date",
}


class Inventory:
    """Every host's inventory at once, indexed for the questions the pages ask."""

    def __init__(self) -> None:
        self.hosts = list(Host.objects.order_by("name"))
        self.states = {s.host_id: s for s in HostInventory.objects.all()}
        self.vms = list(VirtualMachine.objects.select_related("host").order_by("name", "host__name"))
        self.guardians = list(Guardian.objects.select_related("host"))
        self.certificates = list(Certificate.objects.select_related("host"))
        self.private_keys: dict[int, set[str]] = defaultdict(set)  # host id → thumbprints with a private key
        self.store: dict[int, dict[str, Certificate]] = defaultdict(dict)
        for cert in self.certificates:
            self.store[cert.host_id][cert.thumbprint] = cert
            if cert.has_private_key:
                self.private_keys[cert.host_id].add(cert.thumbprint)
        self._broken: list[Guardian] | None = None
        self.identities = self._identities()

    # -- guardian identities --------------------------------------------------------------------------------------

    def _identities(self) -> dict[Pair, GuardianIdentity]:
        identities: dict[Pair, GuardianIdentity] = {}

        def get(pair: Pair) -> GuardianIdentity:
            if pair not in identities:
                identities[pair] = GuardianIdentity(*pair)
            return identities[pair]

        for guardian in self.guardians:
            if not guardian.signing_thumbprint and not guardian.encryption_thumbprint:
                continue
            identity = get(guardian.identity)
            identity.names.add(guardian.name)
            holding = identity.holdings.setdefault(guardian.host_id, Holding(guardian.host))
            holding.guardian_names.append(guardian.name)
        for vm in self.vms:
            for pair, row in zip(vm.guardian_pairs, vm.kp_guardian_thumbprints, strict=True):
                identity = get(pair)
                identity.sealed_vms.append(vm)
                identity.subject = identity.subject or str(row.get("subject", ""))
            owner = vm.owner_pair
            if owner:
                get(owner).owned_vms.append(vm)
        for identity in identities.values():
            self._place_keys(identity)
        self._mark_escrow(identities)
        return identities

    def _place_keys(self, identity: GuardianIdentity) -> None:
        """Which hosts hold the pair's private keys, and the certificates' subject and expiry."""
        for host in self.hosts:
            store = self.store.get(host.pk, {})
            signing, encryption = store.get(identity.signing), store.get(identity.encryption)
            if signing is None and encryption is None and host.pk not in identity.holdings:
                continue
            holding = identity.holdings.setdefault(host.pk, Holding(host))
            keys = self.private_keys.get(host.pk, set())
            holding.has_private_keys = identity.signing in keys and identity.encryption in keys
            for cert in (signing, encryption):
                if (
                    cert is not None
                    and cert.not_after
                    and (identity.not_after is None or cert.not_after < identity.not_after)
                ):
                    identity.not_after = cert.not_after
            if signing is not None and not identity.subject:
                identity.subject = signing.subject

    @staticmethod
    def _mark_escrow(identities: dict[Pair, GuardianIdentity]) -> None:
        escrowed = escrowed_pairs()
        for identity in identities.values():
            entry = escrowed.get(identity.pair)
            identity.escrowed = entry is not None
            if entry is not None:
                identity.vault_entry, identity.vault_name = entry

    def identity(self, pair: Pair) -> GuardianIdentity | None:
        return self.identities.get(pair)

    # -- can VM X start on host Y? ----------------------------------------------------------------------------------

    def can_start(self, vm: VirtualMachine, host: Host) -> tuple[bool, str]:
        state = self.states.get(host.pk)
        if not vm.protected:
            return True, "Yes: the VM has no vTPM key protector, so no guardian is needed."
        if not vm.kp_readable:
            return False, "Unknown: the guardians of its key protector could not be read (see the VM's problems)."
        if state is None or state.refreshed_at is None:
            return False, f"Unknown: {host} has not been inventoried yet — refresh it first."
        if state.mode and state.mode != "Local":
            return False, f"No: {host} is in HGS mode; it starts only VMs its Host Guardian Service releases keys for."
        keys = self.private_keys.get(host.pk, set())
        for signing, encryption in vm.guardian_pairs:
            if encryption in keys:
                identity = self.identities.get((signing, encryption))
                name = identity.display_name if identity else "a guardian"
                return True, f"Yes: {host} holds the private key of guardian {name}, which the key protector trusts."
        count = len(vm.guardian_pairs)
        return False, (
            f"No: {host} holds the private keys of none of the {count} guardian(s) the key protector is sealed to. "
            "Import the owner's certificate pair (from the vault or a PFX backup) on this host first."
        )

    def start_answers(self, vm: VirtualMachine) -> list[tuple[Host, bool, str]]:
        return [(host, *self.can_start(vm, host)) for host in self.hosts]

    def startable_anywhere(self, vm: VirtualMachine) -> bool:
        return any(self.can_start(vm, host)[0] for host in self.hosts)

    def hosts_with_vm_keys(self, vm: VirtualMachine) -> set[int]:
        hosts: set[int] = set()
        for _signing, encryption in vm.guardian_pairs:
            hosts |= {hid for hid, keys in self.private_keys.items() if encryption in keys}
        return hosts

    # -- next steps the pages offer (filter them with actions.permitted) ----------------------------------------------

    def identity_actions(self, identity: GuardianIdentity) -> list[Action]:
        """Escrow a pair the vault lacks from a host that has its keys; reset it where it is broken."""
        found: list[Action] = []
        if identity.escrowed is False and identity.hosts_with_keys:
            found += actions.escrow(identity.hosts_with_keys[0], identity.pair)
        for guardian in self.broken_guardians():
            if guardian.identity == identity.pair:
                found += actions.reset(guardian.host, guardian.name)
        return found

    def guardian_actions(self, guardian: Guardian) -> list[Action]:
        """For a guardian row of a host: escrow it from there when the host has its keys, or reset it if broken."""
        identity = self.identities.get(guardian.identity)
        if guardian.pk in {g.pk for g in self.broken_guardians()}:
            return actions.reset(guardian.host, guardian.name)
        holding = identity.holdings.get(guardian.host_id) if identity else None
        if identity and holding and holding.has_private_keys and identity.escrowed is False:
            return actions.escrow(guardian.host, identity.pair)
        return []

    def host_actions(self, host: Host) -> list[Action]:
        """Escrow every pair whose private keys the host holds, in one job."""
        holdings = [i.holdings.get(host.pk) for i in self.identities.values()]
        held = any(h is not None and h.has_private_keys for h in holdings)
        return actions.escrow_all(host) if held else []

    def vm_actions(self, vm: VirtualMachine) -> list[Action]:
        """Move the VM, and turn its vTPM off or on (generation 2 VMs only have one)."""
        found = actions.migrate(vm.host, vm.name)
        if vm.generation == 2:
            found += actions.vtpm(vm.host, vm.name, vm.tpm_enabled)
        return found

    # -- risks -----------------------------------------------------------------------------------------------------

    def risks(self) -> list[Risk]:
        found: list[Risk] = []
        for vm in self.vms:
            found += self._vm_risks(vm)
        found += self._guardian_risks()
        found += self._expiry_risks()
        found += self._host_risks()
        return found

    def _vm_risks(self, vm: VirtualMachine) -> list[Risk]:
        if not vm.protected or not vm.kp_readable:
            return []
        url = f"/vms/{vm.pk}/"
        subject = f"{vm.name} on {vm.host}"
        if not self.startable_anywhere(vm):
            return [
                Risk(
                    "vm_cannot_start",
                    RISK_TITLES["vm_cannot_start"],
                    f"{vm.name} cannot start anywhere: no registered host holds the private keys of a guardian its "
                    'key protector is sealed to ("The key protector could not be unwrapped"). Restore the owner\'s '
                    "certificate pair from the vault or a PFX backup onto a host.",
                    subject,
                    url,
                    vm.host,
                    actions.restore(vm.host, vm.name) + ([] if self._escrowed(vm) else actions.upload_backup()),
                    vm,
                )
            ]
        holders = self.hosts_with_vm_keys(vm)
        if len(holders) == 1 and not self._escrowed(vm):
            holder = next(h for h in self.hosts if h.pk in holders)
            return [
                Risk(
                    "single_copy",
                    RISK_TITLES["single_copy"],
                    f"{vm.name} is one reinstall away from loss: the private keys it needs exist only on "
                    f"{holder} and are not escrowed. Escrow the guardian into the vault now.",
                    subject,
                    url,
                    vm.host,
                    actions.escrow(holder, self._pair_held(vm, holder)),
                    vm,
                )
            ]
        return []

    def _escrowed(self, vm: VirtualMachine) -> bool:
        """Whether the vault holds a pair the VM's key protector is sealed to."""
        return any(self.identities[p].escrowed for p in vm.guardian_pairs if p in self.identities)

    def _pair_held(self, vm: VirtualMachine, host: Host) -> Pair:
        """The guardian pair whose keys let `host` start the VM: the owner's when the host has it."""
        keys = self.private_keys.get(host.pk, set())
        held = [pair for pair in vm.guardian_pairs if pair[1] in keys]
        return vm.owner_pair if vm.owner_pair in held else held[0]

    def broken_guardians(self) -> list[Guardian]:
        """Guardians without private keys that should have them: `UntrustedGuardian`, or the owner of a VM on
        its host. Imported or HGS guardians have no private keys by design."""
        if self._broken is not None:
            return self._broken
        owners_here: dict[int, set[Pair]] = defaultdict(set)
        for vm in self.vms:
            if vm.owner_pair:
                owners_here[vm.host_id].add(vm.owner_pair)
        self._broken = [
            g
            for g in self.guardians
            if not g.has_private_signing_key and (g.name == UNTRUSTED_GUARDIAN or g.identity in owners_here[g.host_id])
        ]
        return self._broken

    def _guardian_risks(self) -> list[Risk]:
        found = []
        for guardian in self.broken_guardians():
            found.append(
                Risk(
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
            )
        return found

    def _expiry_risks(self) -> list[Risk]:
        horizon = timezone.now() + EXPIRY_WINDOW
        found = []
        for cert in self.certificates:
            if cert.not_after is None or cert.not_after > horizon:
                continue
            expired = cert.not_after <= timezone.now()
            when = "expired on" if expired else "expires on"
            found.append(
                Risk(
                    "cert_expiring",
                    RISK_TITLES["cert_expiring"],
                    f"Certificate {cert.subject or cert.thumbprint} on {cert.host} {when} "
                    f"{cert.not_after:%Y-%m-%d}. New key protectors cannot use an expired guardian without "
                    "-AllowExpired; plan a new guardian and re-grant access.",
                    f"{cert.subject or cert.thumbprint} on {cert.host}",
                    f"/hosts/{cert.host_id}/",
                    cert.host,
                )
            )
        return found

    def _host_risks(self) -> list[Risk]:
        found = []
        for host in self.hosts:
            state = self.states.get(host.pk)
            if state is None:
                continue
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


_GENERATED_SUBJECT = re.compile(r"Shielded VM \w+ Certificate \((?P<name>[^)]*)\) \((?P<host>[^)]*)\)")


def name_from_subject(subject: str) -> str:
    """'UntrustedGuardian (HV02)' from a subject Hyper-V generated, so a guardian no host holds any more still
    says where it came from; '' when the subject does not say."""
    match = _GENERATED_SUBJECT.search(subject or "")
    return f"{match['name']} (of {match['host']})" if match else ""


def escrowed_pairs() -> dict[Pair, tuple[int, str]]:
    """Pairs the vault holds, with their entry's pk and guardian name."""
    fields = ("signing_thumbprint", "encryption_thumbprint", "pk", "guardian_name")
    rows = EscrowedPair.objects.order_by("created_at").values_list(*fields)
    return {(signing, encryption): (pk, name or "") for signing, encryption, pk, name in rows}


def can_start(vm: VirtualMachine, host: Host) -> tuple[bool, str]:
    """The contract's entry point: can this VM start on that host, and why (not)."""
    return Inventory().can_start(vm, host)


def risk_counts(risks: list[Risk]) -> list[tuple[str, str, list[Risk]]]:
    """(code, title, risks) for every kind of risk, in a fixed order, including kinds with none."""
    grouped: dict[str, list[Risk]] = defaultdict(list)
    for risk in risks:
        grouped[risk.code].append(risk)
    return [(code, title, grouped.get(code, [])) for code, title in RISK_TITLES.items()]
