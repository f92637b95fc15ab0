"""What pages ask of the stored analysis (facts.py), each question a constant number of indexed queries whatever the
size of the lab: the risks of one kind (a page of them, or how many), can these VMs start on those hosts, the
guardians and VMs of a list page with what each row shows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone
from django.utils.translation import gettext as _

from hosts.models import Host

from . import actions, marks, rules
from .actions import Action
from .models import Certificate, Guardian, HostInventory, KeyHolding, KeyProtectorEntry, KnownGuardian, VirtualMachine
from .rules import EXPIRY_WINDOW, Pair, Risk

# -- risks ----------------------------------------------------------------------------------------------------------


def local_guardian_broken() -> Exists:
    """For VirtualMachine rows: the UntrustedGuardian of the VM's host has lost its keys (no vTPM change there)."""
    broken = Guardian.objects.filter(host=OuterRef("host"), name=rules.UNTRUSTED_GUARDIAN, needs_reset=True)
    return Exists(broken)


def vm_risk(vm: VirtualMachine) -> Risk | None:
    """The VM's risk as its stored facts say (select_related "facts" and "facts__holder"; annotated with
    `guardian_broken` by the risk lists, asked here otherwise)."""
    facts = getattr(vm, "facts", None)
    if facts is None or not facts.risk:
        return None
    if facts.risk == "vm_cannot_start":
        broken = getattr(vm, "guardian_broken", None)
        if broken is None:
            broken = Guardian.objects.filter(host=vm.host_id, name=rules.UNTRUSTED_GUARDIAN, needs_reset=True).exists()
        return rules.vm_cannot_start(vm, facts.escrowed, bool(broken))
    assert facts.holder is not None  # a single copy has its one holder
    return rules.single_copy(vm, facts.holder, (facts.escrow_signing, facts.escrow_encryption))


@dataclass(frozen=True)
class RiskKind:
    """One kind of risk: where its rows are, and how a row reads as a Risk."""

    code: str
    rows: Callable[[dt.datetime], QuerySet[Any]]
    risk: Callable[[Any, dt.datetime], Risk]
    host_field: str  # the rows' path to their host, to list one host's risks

    @property
    def title(self) -> str:
        return rules.risk_title(self.code)

    def of(self, now: dt.datetime, host: Host | int | None = None) -> QuerySet[Any]:
        rows = self.rows(now)
        host_id = host.pk if isinstance(host, Host) else host
        return rows.filter(**{self.host_field: host_id}) if host_id is not None else rows


def _vm_rows(code: str) -> Callable[[dt.datetime], QuerySet[Any]]:
    def rows(now: dt.datetime) -> QuerySet[Any]:
        chosen = VirtualMachine.objects.filter(facts__risk=code).exclude(marks.vm_marked())  # given up on: hidden
        chosen = chosen.annotate(guardian_broken=local_guardian_broken())
        return chosen.select_related("host", "facts", "facts__holder").order_by("name", "host__name", "pk")

    return rows


def _vm_as_risk(vm: VirtualMachine, now: dt.datetime) -> Risk:
    risk = vm_risk(vm)
    assert risk is not None  # the rows are filtered on it
    return risk


def _hgs_hosts(now: dt.datetime) -> QuerySet[Any]:
    chosen = Host.objects.filter(inventory__mode__gt="").exclude(inventory__mode="Local")
    return chosen.select_related("inventory").order_by("name")


def _stale_hosts(now: dt.datetime) -> QuerySet[Any]:
    return Host.objects.filter(inventory__stale=True).select_related("inventory").order_by("name")


def _host_as(code: str) -> Callable[[Host, dt.datetime], Risk]:
    def risk(host: Host, now: dt.datetime) -> Risk:
        state: HostInventory = host.inventory  # type: ignore[attr-defined]  # the inventory's one-to-one
        return next(r for r in rules.host_risks(host, state) if r.code == code)

    return risk


RISK_KINDS = [
    RiskKind("vm_cannot_start", _vm_rows("vm_cannot_start"), _vm_as_risk, "host"),
    RiskKind("single_copy", _vm_rows("single_copy"), _vm_as_risk, "host"),
    RiskKind(
        "guardian_without_keys",
        lambda now: (
            Guardian.objects.filter(needs_reset=True)
            .exclude(marks.pair_marked())
            .select_related("host")
            .order_by("host__name", "name")
        ),
        lambda guardian, now: rules.guardian_without_keys(guardian),
        "host",
    ),
    RiskKind(
        "cert_expiring",
        lambda now: (
            Certificate.objects.filter(not_after__lte=now + EXPIRY_WINDOW)
            .select_related("host")
            .order_by("not_after", "host__name", "pk")
        ),
        rules.cert_expiring,
        "host",
    ),
    RiskKind("hgs_mode", _hgs_hosts, _host_as("hgs_mode"), "pk"),
    RiskKind("stale_inventory", _stale_hosts, _host_as("stale_inventory"), "pk"),
]
KINDS_BY_CODE = {kind.code: kind for kind in RISK_KINDS}


def all_risks(now: dt.datetime | None = None) -> list[Risk]:
    """Every stored risk: what the tests compare with the from-scratch analysis (pages read a page at a time)."""
    now = now or timezone.now()
    return [kind.risk(row, now) for kind in RISK_KINDS for row in kind.of(now)]


class StoredRisks(Sequence[Risk]):
    """The stored risks of some kinds in the dashboard's order (kind by kind), read a slice at a time, so a
    paginator costs a count per kind and a query per kind its page spans, whatever the size of the lab."""

    def __init__(self, kinds: list[RiskKind], now: dt.datetime | None = None) -> None:
        self.kinds = kinds
        self.now = now or timezone.now()
        self._counts: list[int] | None = None

    def counts(self) -> list[int]:
        if self._counts is None:
            self._counts = [kind.of(self.now).count() for kind in self.kinds]
        return self._counts

    def __len__(self) -> int:
        return sum(self.counts())

    @overload
    def __getitem__(self, index: int) -> Risk: ...

    @overload
    def __getitem__(self, index: slice) -> list[Risk]: ...

    def __getitem__(self, index: int | slice) -> Risk | list[Risk]:
        if isinstance(index, int):
            found = self[index : index + 1] if index >= 0 else self[len(self) + index : len(self) + index + 1]
            if not found:
                raise IndexError(index)
            return found[0]
        start, stop, _step = index.indices(len(self))  # a paginator never asks for a step
        risks: list[Risk] = []
        offset = 0
        for kind, count in zip(self.kinds, self.counts(), strict=True):
            first, last = max(start - offset, 0), min(stop - offset, count)
            if first < last:
                risks += [kind.risk(row, self.now) for row in kind.of(self.now)[first:last]]
            offset += count
        return risks


@dataclass
class RiskGroup:
    """How many risks of one kind, with the first few of them."""

    code: str
    title: str
    count: int
    first: list[Risk]

    @property
    def more(self) -> int:
        return self.count - len(self.first)

    @property
    def tile(self) -> str:
        return rules.risk_tile(self.code, self.count)


def risk_groups(first: int = 5, host: Host | None = None, now: dt.datetime | None = None) -> list[RiskGroup]:
    """Every kind of risk in a fixed order, with its count and first items: two queries a kind."""
    now = now or timezone.now()
    groups = []
    for kind in RISK_KINDS:
        rows = kind.of(now, host)
        shown = rules.one_escrow_per_guardian([kind.risk(row, now) for row in rows[:first]]) if first else []
        groups.append(RiskGroup(kind.code, kind.title, rows.count(), shown))
    return groups


def risks_per_host(now: dt.datetime | None = None) -> dict[int, int]:
    """How many risks each host has: one grouped query per kind."""
    return {host_id: sum(kinds.values()) for host_id, kinds in risk_grid(now).items()}


def risk_grid(now: dt.datetime | None = None) -> dict[int, dict[str, int]]:
    """How many risks of each kind each host has (the dashboard's host × risk grid): one grouped query per kind."""
    now = now or timezone.now()
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for kind in RISK_KINDS:
        path = "host_id" if kind.host_field == "host" else "pk"
        for host_id, count in kind.of(now).order_by().values_list(path).annotate(n=Count("pk")):
            counts[host_id][kind.code] = counts[host_id].get(kind.code, 0) + count
    return counts


# -- can VM X start on host Y? -------------------------------------------------------------------------------------


def start_answers(questions: list[tuple[VirtualMachine, Host]]) -> list[tuple[bool, str]]:
    """rules.start_answer for many (VM, host) questions at once: three queries, whatever their number."""
    return [(bool(verdict), why) for verdict, why in start_verdicts(questions)]


def start_verdicts(questions: list[tuple[VirtualMachine, Host]]) -> list[tuple[bool | None, str]]:
    """rules.start_verdict for many questions at once (None: it cannot be told): three queries."""
    host_ids = {host.pk for _vm, host in questions}
    states = {s.host_id: s for s in HostInventory.objects.filter(host__in=host_ids)}
    pairs = {pair for vm, _host in questions for pair in vm.guardian_pairs}
    encryptions = {encryption for _signing, encryption in pairs}
    held = set(
        Certificate.objects.filter(host__in=host_ids, thumbprint__in=encryptions, has_private_key=True).values_list(
            "host_id", "thumbprint"
        )
    )
    names = display_names(pairs)

    def held_on(host: Host) -> Callable[[str], bool]:
        return lambda thumbprint: (host.pk, thumbprint) in held

    def name_of(pair: Pair) -> str:
        return names[pair] if pair in names else _("a guardian")

    return [rules.start_verdict(vm, host, states.get(host.pk), held_on(host), name_of) for vm, host in questions]


def known_guardians(pairs: Iterable[Pair]) -> dict[Pair, KnownGuardian]:
    wanted = set(pairs)
    rows = KnownGuardian.objects.filter(signing_thumbprint__in={s for s, _ in wanted})
    return {g.pair: g for g in rows if g.pair in wanted}


def display_names(pairs: Iterable[Pair]) -> dict[Pair, str]:
    return {pair: rules.shown_name(g.display_name, g.subject) for pair, g in known_guardians(pairs).items()}


# -- guardians ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealedVm:
    """One of the first VMs sealed to a guardian, as its row links it: no VM or host row is loaded for it."""

    pk: int
    name: str
    host: str
    owner: bool  # whether the guardian is the VM's owner


@dataclass
class GuardianRow:
    """A known guardian as the guardians page (and a VM's page) shows it."""

    guardian: KnownGuardian
    hosts_with_keys: list[Host] = field(default_factory=list)
    hosts_without_keys: list[Host] = field(default_factory=list)
    sealed: int = 0  # VMs whose key protector lists it
    first_sealed: list[SealedVm] = field(default_factory=list)
    resets: list[Guardian] = field(default_factory=list)  # its rows on hosts that need a reset

    @property
    def actions(self) -> list[Action]:
        """Escrow a pair the vault lacks from a host that has its keys; reset it where it is broken."""
        found: list[Action] = []
        if not self.guardian.escrowed and self.hosts_with_keys:
            found += actions.escrow(self.hosts_with_keys[0], self.guardian.pair)
        for row in self.resets:
            found += actions.reset(row.host, row.name)
        return found

    @property
    def vault_url(self) -> str:
        return actions.vault_entry_url(self.guardian.vault_entry_id)


# What a row shows of a host (a link with its name): loading no more than that (and SealedVm for VMs) keeps a page
# of guardians, each with its hosts and VMs, from decoding every VM's JSON columns and every host's settings.
ROW_HOST = ("host__id", "host__name")


def guardian_rows(guardians: list[KnownGuardian], first_vms: int = 5) -> list[GuardianRow]:
    """Rows for a page of guardians: four queries, whatever the page holds."""
    rows = {g.pk: GuardianRow(g) for g in guardians}
    holdings = KeyHolding.objects.filter(guardian__in=rows).select_related("host").order_by("host__name")
    holdings = holdings.only("guardian_id", "has_private_keys", *ROW_HOST)
    for holding in holdings:
        row = rows[holding.guardian_id]
        (row.hosts_with_keys if holding.has_private_keys else row.hosts_without_keys).append(holding.host)
    listed = KeyProtectorEntry.objects.filter(guardian__in=rows, listed=True)
    for guardian_id, count in listed.order_by().values_list("guardian_id").annotate(n=Count("pk")):
        rows[guardian_id].sealed = count
    if first_vms:
        ranked = listed.annotate(
            rank=Window(RowNumber(), partition_by=[F("guardian_id")], order_by=[F("vm__name"), F("vm__host__name")])
        )
        first = ranked.filter(rank__lte=first_vms).order_by("guardian_id", "rank")
        for guardian_id, vm_id, name, host, owner in first.values_list(
            "guardian_id", "vm_id", "vm__name", "vm__host__name", "owner"
        ):
            rows[guardian_id].first_sealed.append(SealedVm(vm_id, name, host, owner))
    pairs = {g.pair: g.pk for g in guardians}
    broken = Guardian.objects.filter(needs_reset=True, signing_thumbprint__in={s for s, _ in pairs})
    for guardian in broken.select_related("host").only(
        "name", "signing_thumbprint", "encryption_thumbprint", *ROW_HOST
    ):
        if guardian.identity in pairs:
            rows[pairs[guardian.identity]].resets.append(guardian)
    return [rows[g.pk] for g in guardians]


def guardians_matching(query: str = "", escrow: str = "", keys: str = "") -> QuerySet[KnownGuardian]:
    """The guardians page's filters, done by the database: a name or thumbprint, escrowed or not, keys or none."""
    found = KnownGuardian.objects.order_by("sort_name", "signing_thumbprint")
    if query:
        needle = query.strip()
        found = found.filter(
            Q(sort_name__contains=needle.lower())
            | Q(signing_thumbprint__startswith=needle.upper())
            | Q(encryption_thumbprint__startswith=needle.upper())
        )
    if escrow in ("yes", "no"):
        found = found.filter(escrowed=escrow == "yes")
    if keys == "none":
        found = found.filter(key_host_count=0)
    elif keys == "one":
        found = found.filter(key_host_count=1)
    return found


def guardian_by_key(key: str) -> KnownGuardian | None:
    signing, _, encryption = key.partition("-")
    return KnownGuardian.objects.filter(signing_thumbprint=signing, encryption_thumbprint=encryption).first()


# -- VMs ------------------------------------------------------------------------------------------------------------


def vms_matching(
    query: str = "", host: int | None = None, risk: str = "", starts: str = "", guardian: KnownGuardian | None = None
) -> QuerySet[VirtualMachine]:
    """The VM list's filters, done by the database."""
    found = VirtualMachine.objects.select_related("host", "facts").order_by("name", "host__name", "pk")
    if query:
        found = found.filter(name__icontains=query.strip())
    if host is not None:
        found = found.filter(host=host)
    if risk in rules.VM_RISKS:
        found = found.filter(facts__risk=risk)
    elif risk == "any":
        found = found.filter(facts__risk__gt="")
    if starts == "no":
        found = found.filter(facts__startable=False)
    if guardian is not None:
        found = found.filter(key_protector_entries__guardian=guardian)
    return found


@dataclass
class SealedGuardian:
    """One guardian a VM's key protector lists, as the VM's page shows it."""

    pair: Pair
    known: KnownGuardian | None
    owner: bool
    hosts_with_keys: list[Host] = field(default_factory=list)

    @property
    def vault_url(self) -> str:
        return actions.vault_entry_url(self.known.vault_entry_id) if self.known else ""


def sealed_guardians(vm: VirtualMachine) -> list[SealedGuardian]:
    """The guardians the VM's key protector lists, with where their keys are: two queries."""
    known = known_guardians(vm.guardian_pairs)
    ids = [g.pk for g in known.values()]
    keys: dict[int, list[Host]] = defaultdict(list)
    holdings = KeyHolding.objects.filter(guardian__in=ids, has_private_keys=True).select_related("host")
    for holding in holdings.order_by("host__name"):
        keys[holding.guardian_id].append(holding.host)
    found = []
    for pair in vm.guardian_pairs:
        guardian = known.get(pair)
        found.append(SealedGuardian(pair, guardian, pair == vm.owner_pair, keys[guardian.pk] if guardian else []))
    return found


def start_hosts(vm: VirtualMachine) -> list[Host]:
    """The hosts that can start the VM, by name (its page's summary above the host-by-host answers)."""
    if not vm.protected:
        return []
    ids = [g.pk for g in known_guardians(vm.guardian_pairs).values()]
    holdings = KeyHolding.objects.filter(guardian__in=ids, starts_vms=True).select_related("host")
    return sorted({h.host for h in holdings}, key=lambda host: host.name)


# -- hosts ----------------------------------------------------------------------------------------------------------


def guardian_actions(host: Host, guardians: list[Guardian]) -> dict[int, list[Action]]:
    """For the guardian rows of a host: reset the broken, escrow from here what the vault lacks. Two queries."""
    pairs = {g.identity for g in guardians}
    known = known_guardians(pairs)
    held = set(
        KeyHolding.objects.filter(
            host=host, has_private_keys=True, guardian__in=[g.pk for g in known.values()]
        ).values_list("guardian__signing_thumbprint", "guardian__encryption_thumbprint")
    )
    found: dict[int, list[Action]] = {}
    for guardian in guardians:
        identity = known.get(guardian.identity)
        if guardian.needs_reset:
            found[guardian.pk] = actions.reset(host, guardian.name)
        elif identity is not None and guardian.identity in held and not identity.escrowed:
            found[guardian.pk] = actions.escrow(host, identity.pair)
        else:
            found[guardian.pk] = []
    return found


def host_actions(host: Host) -> list[Action]:
    """Escrow every pair whose private keys the host holds, in one job; restore every VM the vault can bring back,
    in one job; turn the vTPM off for a selection of its VMs."""
    held = KeyHolding.objects.filter(host=host, has_private_keys=True).exists()
    found = actions.escrow_all(host) if held else []
    if restorable_vms(host):
        found += actions.restore_all(host)
    if VirtualMachine.objects.filter(host=host, tpm_enabled=True).exists():
        found += actions.vtpm_off_selection(host)
    return found


def restorable_vms(host: Host) -> list[str]:
    """The host's VMs the stored analysis says start nowhere while the vault holds a pair they are sealed to: the
    rows "Restore…" is offered on (those marked lost or retired left out)."""
    rows = VirtualMachine.objects.filter(host=host, facts__risk="vm_cannot_start", facts__escrowed=True)
    return list(rows.exclude(marks.vm_marked()).order_by("name").values_list("name", flat=True))


# -- escrow ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EscrowCoverage:
    """How many vTPM VMs the vault can bring back: `escrowed` of `total` have a pair of their key protector in the
    vault; `lost` have no copy of any of their guardians' private keys anywhere the console sees (no host, not the
    vault), so no escrow can cover them: only an upload of a backup can. The percent is of the others."""

    total: int
    escrowed: int
    lost: int

    @property
    def recoverable(self) -> int:
        return self.total - self.lost

    @property
    def percent(self) -> int:
        """Escrowed of the recoverable, rounded down (99% until the last one is in), 100 when none is recoverable."""
        return 100 if not self.recoverable else self.escrowed * 100 // self.recoverable


def escrow_coverage() -> EscrowCoverage:
    """One aggregate query over the VMs' stored facts, whatever the size of the lab."""
    vtpm = VirtualMachine.objects.filter(Q(tpm_enabled=True) | Q(shielded=True), has_key_protector=True)
    counts = vtpm.aggregate(
        total=Count("pk"),
        escrowed=Count("pk", filter=Q(facts__escrowed=True)),
        lost=Count("pk", filter=Q(facts__escrowed=False, facts__key_hosts=0)),
    )
    return EscrowCoverage(counts["total"], counts["escrowed"], counts["lost"])


def unescrowed_holdings() -> list[KeyHolding]:
    """Each guardian the vault lacks whose private keys a host holds (by its last good inventory), once, with the
    first such host by name: what the automatic escrow policy copies into the vault. One query."""
    rows = (
        KeyHolding.objects.filter(guardian__escrowed=False, has_private_keys=True, host__inventory__stale=False)
        .select_related("guardian", "host")
        .order_by("guardian__sort_name", "guardian_id", "host__name")
    )
    first: dict[int, KeyHolding] = {}
    for holding in rows:
        first.setdefault(holding.guardian_id, holding)
    return list(first.values())
