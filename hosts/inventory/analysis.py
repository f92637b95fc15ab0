"""The from-scratch analysis: every host's inventory loaded at once, and what it means — guardian identities across
hosts, "can VM X start on host Y?", and the risks.

Pages read the stored analysis instead (facts.py, updated when an inventory changes); this computation is the
reference the stored one is tested against, and what a few workflow pages still use. Both apply the rules of
rules.py (from domain.md):
- A guardian's identity is its certificate pair (signing, encryption thumbprints); names are not identities.
- In Local mode a host starts a VM when its store holds the private key of the encryption certificate of any
  guardian the VM's key protector is sealed to.
- A guardian without private keys is broken only when it should be able to own VMs here: `UntrustedGuardian`, or
  the owner of a VM on this host. Imported (public-only) and HGS guardians have none by design.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.utils import timezone
from django.utils.translation import gettext as _

from hosts.models import Host
from hosts.vault.models import EscrowedPair

from . import actions, rules
from .actions import Action
from .models import Certificate, Guardian, HostInventory, VirtualMachine
from .rules import EXPIRY_WINDOW, RISK_TITLES, UNTRUSTED_GUARDIAN, Pair, Risk, name_from_subject

__all__ = [
    "EXPIRY_WINDOW",
    "RISK_TITLES",
    "UNTRUSTED_GUARDIAN",
    "GuardianIdentity",
    "Holding",
    "Inventory",
    "Pair",
    "Risk",
    "can_start",
    "escrowed_pairs",
    "name_from_subject",
    "risk_counts",
]


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
        return rules.display_name(self.names, self.vault_name, self.subject)

    @property
    def vault_url(self) -> str:
        return actions.vault_entry_url(self.vault_entry)

    @property
    def hosts_with_keys(self) -> list[Host]:
        return [h.host for h in self.holdings.values() if h.has_private_keys]

    @property
    def hosts_without_keys(self) -> list[Host]:
        return [h.host for h in self.holdings.values() if not h.has_private_keys]


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
        keys = self.private_keys.get(host.pk, set())

        def name_of(pair: Pair) -> str:
            identity = self.identities.get(pair)
            return identity.display_name if identity else _("a guardian")

        return rules.start_answer(vm, host, self.states.get(host.pk), keys.__contains__, name_of)

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
        """Escrow every pair whose private keys the host holds, in one job; restore every VM the vault can bring
        back, in one job; turn the vTPM off for a selection of its VMs."""
        holdings = [i.holdings.get(host.pk) for i in self.identities.values()]
        held = any(h is not None and h.has_private_keys for h in holdings)
        found = actions.escrow_all(host) if held else []
        if any(self._escrowed(vm) for vm in self._vms_starting_nowhere(host)):
            found += actions.restore_all(host)
        if any(vm.host_id == host.pk and vm.tpm_enabled for vm in self.vms):
            found += actions.vtpm_off_selection(host)
        return found

    def _vms_starting_nowhere(self, host: Host) -> list[VirtualMachine]:
        """The host's VMs with the risk "can start on no registered host" (the ones a restore may bring back)."""
        return [
            vm
            for vm in self.vms
            if vm.host_id == host.pk and self._vm_risks(vm) and vm.kp_readable and not self.startable_anywhere(vm)
        ]

    def vm_actions(self, vm: VirtualMachine) -> list[Action]:
        return actions.for_vm(vm)

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
        if not self.startable_anywhere(vm):
            return [rules.vm_cannot_start(vm, self._escrowed(vm), self._local_guardian_broken(vm.host_id))]
        holders = self.hosts_with_vm_keys(vm)
        if len(holders) == 1 and not self._escrowed(vm):
            holder = next(h for h in self.hosts if h.pk in holders)
            return [rules.single_copy(vm, holder, self._pair_held(vm, holder))]
        return []

    def _local_guardian_broken(self, host_id: int) -> bool:
        """Whether the host's UntrustedGuardian has lost its keys: Hyper-V then refuses every vTPM change there."""
        return any(g.host_id == host_id and g.name == rules.UNTRUSTED_GUARDIAN for g in self.broken_guardians())

    def _escrowed(self, vm: VirtualMachine) -> bool:
        """Whether the vault holds a pair the VM's key protector is sealed to."""
        return any(self.identities[p].escrowed for p in vm.guardian_pairs if p in self.identities)

    def _pair_held(self, vm: VirtualMachine, host: Host) -> Pair:
        """The guardian pair whose keys let `host` start the VM: the owner's when the host has it."""
        return rules.pair_to_escrow(vm, self.private_keys.get(host.pk, set()).__contains__)

    def broken_guardians(self) -> list[Guardian]:
        """Guardians without private keys that should have them: `UntrustedGuardian`, or the owner of a VM on
        its host. Imported or HGS guardians have no private keys by design."""
        if self._broken is not None:
            return self._broken
        owners_here: dict[int, set[Pair]] = defaultdict(set)
        for vm in self.vms:
            if vm.owner_pair:
                owners_here[vm.host_id].add(vm.owner_pair)
        self._broken = [g for g in self.guardians if rules.needs_reset(g, owners_here[g.host_id])]
        return self._broken

    def _guardian_risks(self) -> list[Risk]:
        return [rules.guardian_without_keys(guardian) for guardian in self.broken_guardians()]

    def _expiry_risks(self) -> list[Risk]:
        now = timezone.now()
        return [rules.cert_expiring(cert, now) for cert in self.certificates if rules.expiring(cert, now)]

    def _host_risks(self) -> list[Risk]:
        return [risk for host in self.hosts for risk in rules.host_risks(host, self.states.get(host.pk))]


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
    return [(code, rules.risk_title(code), grouped.get(code, [])) for code in RISK_TITLES]
