"""The stored analysis, kept up to date when an inventory or the vault changes, so pages read it instead of
recomputing the whole lab on every request.

Stored (models.py): per known guardian (a certificate pair) its names, where its keys are (KeyHolding), which VMs'
key protectors name it (KeyProtectorEntry), its expiry and escrow; per VM whether some host can start it, its risk
and what fixing that takes (VmFacts); per guardian row whether it needs a reset. Not stored, because a cheap indexed
query gives them as they are at the moment of asking: expiring certificates (they follow the clock), HGS mode and
stale inventories (a host's own state).

`update(hosts, pairs)` recomputes what a change of those hosts' rows, or of those pairs in the vault, can affect:
1. the guardians to look at again: those stored as held on the hosts or named by their VMs (the view before the
   change) and those the hosts' rows name now (guardian rows, store certificates, key protectors);
2. the key-protector entries of the hosts' VMs;
3. those guardians' facts — and so the VMs to look at again: the hosts' own, and those sealed to a guardian whose
   VM-relevant facts changed (which hosts hold its keys or start VMs with them, escrow, expiry);
4. those VMs' facts, and the guardian rows of the hosts (needs_reset depends on the owners of VMs on the same host).
Updates run one at a time — each locks the LabAnalysis row inside the transaction of the change it follows — so
concurrent refreshes of several hosts each read the rows and facts the others committed before them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from hosts.models import Host
from hosts.vault.models import EscrowedPair

from . import rules
from .models import (
    Certificate,
    Guardian,
    HostInventory,
    KeyHolding,
    KeyProtectorEntry,
    KnownGuardian,
    LabAnalysis,
    VirtualMachine,
    VmFacts,
)
from .news import risks_appeared
from .rules import Pair

CHUNK = 500  # ids per IN (…) list: well under every database's limit on query parameters
T = TypeVar("T")

_quiet: ContextVar[bool] = ContextVar("inventory_facts_quiet", default=False)


@contextmanager
def batched() -> Iterator[None]:
    """Inside, writes to inventory rows do not update the analysis row by row (signals.py): the caller updates it
    once for all of them, as a refresh does."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


def quiet() -> bool:
    return _quiet.get()


def lock() -> None:
    """Serialise updates of the analysis until the current transaction ends (call inside transaction.atomic)."""
    if not LabAnalysis.objects.select_for_update().filter(pk=1).exists():
        LabAnalysis.objects.get_or_create(pk=1)  # the migration creates it; a flushed test database may not have it
        LabAnalysis.objects.select_for_update().filter(pk=1).exists()


def chunks(items: Iterable[T]) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class UpdateStats:
    """What one update looked at, and its time: the refresh's log and the benchmark print it."""

    hosts: int = 0
    guardians: int = 0
    guardians_changed: int = 0
    vms: int = 0
    vms_changed: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"analysis updated in {self.seconds * 1000:.0f} ms: {self.guardians} guardians looked at "
            f"({self.guardians_changed} changed), {self.vms} VMs ({self.vms_changed} changed)"
        )


# -- what a change can affect ---------------------------------------------------------------------------------------


def touched_pairs(hosts: set[int]) -> set[Pair]:
    """The guardians the stored analysis places on these hosts or names in their VMs' key protectors. Taken before
    rows are deleted too: a deleted VM's entries go with it (a refresh and signals.py pass them to `update`)."""
    if not hosts:
        return set()
    held = KnownGuardian.objects.filter(holdings__host__in=hosts).order_by()
    named = KnownGuardian.objects.filter(entries__vm__host__in=hosts).order_by()
    fields = ("signing_thumbprint", "encryption_thumbprint")
    return set(held.values_list(*fields)) | set(named.values_list(*fields))


def vm_pairs(vm: VirtualMachine) -> list[Pair]:
    owner = vm.owner_pair
    return vm.guardian_pairs + ([owner] if owner else [])


def _pairs_now(hosts: set[int], vms: list[VirtualMachine]) -> tuple[set[Pair], set[Pair]]:
    """(pairs the hosts' rows name, known pairs with a certificate in their stores) as the rows are now."""
    named = {pair for vm in vms for pair in vm_pairs(vm)}
    guardians = (
        Guardian.objects.filter(host__in=hosts).order_by().values_list("signing_thumbprint", "encryption_thumbprint")
    )
    named |= {pair for pair in guardians if pair != ("", "")}
    thumbprints = set(Certificate.objects.filter(host__in=hosts).order_by().values_list("thumbprint", flat=True))
    stored: set[Pair] = set()
    for batch in chunks(thumbprints):
        rows = KnownGuardian.objects.filter(
            Q(signing_thumbprint__in=batch) | Q(encryption_thumbprint__in=batch)
        ).order_by()
        stored |= set(rows.values_list("signing_thumbprint", "encryption_thumbprint"))
    return named, stored


def _known(pairs: set[Pair], create: set[Pair]) -> dict[Pair, KnownGuardian]:
    """The known guardians of `pairs`, those of `create` made when missing."""
    found: dict[Pair, KnownGuardian] = {}
    for batch in chunks(sorted({signing for signing, _ in pairs | create})):
        for guardian in KnownGuardian.objects.filter(signing_thumbprint__in=batch).order_by():
            if guardian.pair in pairs | create:
                found[guardian.pair] = guardian
    missing = [KnownGuardian(signing_thumbprint=s, encryption_thumbprint=e) for s, e in create - set(found)]
    for guardian in KnownGuardian.objects.bulk_create(missing, batch_size=CHUNK):
        found[guardian.pair] = guardian
    if missing and any(g.pk is None for g in found.values()):  # backends that do not return ids on bulk insert
        return _known(pairs | create, set())
    return found


# -- the update -----------------------------------------------------------------------------------------------------


def update(hosts: Iterable[int] = (), pairs: Iterable[Pair] = (), touched: set[Pair] | None = None) -> UpdateStats:
    """Recompute what a change of these hosts' inventory rows, or of these pairs in the vault, can affect.
    `touched`: touched_pairs(hosts) taken before the change in this transaction, when the caller has it."""
    started = time.perf_counter()
    host_ids, extra = set(hosts), set(pairs)
    with transaction.atomic():
        lock()
        vms = [
            vm for batch in chunks(sorted(host_ids)) for vm in VirtualMachine.objects.filter(host__in=batch).order_by()
        ]
        named, stored = _pairs_now(host_ids, vms)
        known = _known(extra | (touched_pairs(host_ids) if touched is None else touched) | stored, named)
        _rebuild_entries(host_ids, vms, known)
        stats = UpdateStats(hosts=len(host_ids), guardians=len(known))
        changed = _rebuild_guardians(known)
        stats.guardians_changed = len(changed)
        vm_ids = {vm.pk for vm in vms} | _sealed_to(changed)
        new_risks: list[tuple[int, str]] = []
        stats.vms = len(vm_ids)
        stats.vms_changed = _rebuild_vm_facts(vm_ids, {vm.pk: vm for vm in vms}, new_risks)
        broken = _mark_resets(host_ids, vms)
        LabAnalysis.objects.filter(pk=1).update(updated_at=timezone.now(), updates=F("updates") + 1)
        if new_risks or broken:
            risks_appeared.send(sender=VmFacts, vm_risks=new_risks, guardians=broken)
    stats.seconds = time.perf_counter() - started
    return stats


def rebuild() -> UpdateStats:
    """The whole analysis from the inventory rows (after a migration, or to repair by hand)."""
    with transaction.atomic():
        lock()
        KnownGuardian.objects.filter(entries__isnull=True, holdings__isnull=True).delete()
        pairs = set(KnownGuardian.objects.values_list("signing_thumbprint", "encryption_thumbprint"))
        return update(Host.objects.values_list("pk", flat=True), pairs)


def _sealed_to(guardian_ids: set[int]) -> set[int]:
    found: set[int] = set()
    for batch in chunks(sorted(guardian_ids)):
        found |= set(KeyProtectorEntry.objects.filter(guardian__in=batch).values_list("vm_id", flat=True))
    return found


# -- 2. key-protector entries ---------------------------------------------------------------------------------------


def entries_of(vm: VirtualMachine, known: dict[Pair, KnownGuardian]) -> list[KeyProtectorEntry]:
    """The VM's key protector as rows: one per guardian it names, the owner marked (and added when not listed)."""
    owner = vm.owner_pair
    made: dict[Pair, KeyProtectorEntry] = {}
    for position, row in enumerate(vm.kp_guardian_thumbprints):
        pair = (row.get("signing", ""), row.get("encryption", ""))
        if pair not in made:
            made[pair] = KeyProtectorEntry(
                vm=vm,
                guardian=known[pair],
                position=position,
                owner=pair == owner,
                subject=str(row.get("subject", ""))[:500],
            )
    if owner and owner not in made:
        made[owner] = KeyProtectorEntry(vm=vm, guardian=known[owner], listed=False, owner=True, position=len(made))
    return list(made.values())


def _entry_key(entry: KeyProtectorEntry) -> tuple[Any, ...]:
    return (entry.vm_id, entry.guardian_id, entry.listed, entry.owner, entry.position, entry.subject)


def _rebuild_entries(hosts: set[int], vms: list[VirtualMachine], known: dict[Pair, KnownGuardian]) -> None:
    wanted = {_entry_key(e): e for vm in vms for e in entries_of(vm, known)}
    stale: list[int] = []
    for batch in chunks(sorted(hosts)):
        for entry in KeyProtectorEntry.objects.filter(vm__host__in=batch).order_by():
            if wanted.pop(_entry_key(entry), None) is None:
                stale.append(entry.pk)
    for ids in chunks(stale):
        KeyProtectorEntry.objects.filter(pk__in=ids).delete()
    KeyProtectorEntry.objects.bulk_create(list(wanted.values()), batch_size=CHUNK)


# -- 3. guardians ---------------------------------------------------------------------------------------------------


@dataclass
class _Place:
    """One host's side of a guardian while it is being recomputed."""

    names: list[str] = field(default_factory=list)
    thumbprints: set[str] = field(default_factory=set)  # its certificates in the host's store
    private: set[str] = field(default_factory=set)  # … with their private key


@dataclass
class _Lab:
    """The rows a guardian's facts are computed from, loaded once for all guardians of an update."""

    places: dict[Pair, dict[int, _Place]]
    host_names: dict[int, str]
    certificates: dict[str, list[tuple[int, datetime | None, str]]]  # thumbprint → (host, not_after, subject)
    startable: set[int]  # hosts whose own keys decide what starts there
    entry_subjects: dict[int, str]
    named: set[int]  # guardians some key protector names
    vault: dict[Pair, tuple[int, str]]


def _load_lab(known: dict[Pair, KnownGuardian]) -> _Lab:
    pairs = set(known)
    signings = sorted({s for s, _ in pairs})
    places: dict[Pair, dict[int, _Place]] = defaultdict(lambda: defaultdict(_Place))
    host_names: dict[int, str] = {}
    _place_guardian_rows(pairs, places, host_names)
    certificates, private = _store(sorted({t for pair in pairs for t in pair}), host_names)
    named, entry_subjects = _entries_of(known)
    for pair in pairs:
        for thumbprint in set(pair):
            for host_id, _not_after, _subject in certificates.get(thumbprint, []):
                place = places[pair][host_id]
                place.thumbprints.add(thumbprint)
                if host_id in private[thumbprint]:
                    place.private.add(thumbprint)
    return _Lab(
        places=places,
        host_names=host_names,
        certificates=certificates,
        startable=_startable_hosts(),
        entry_subjects=entry_subjects,
        named=named,
        vault=_vault(signings),
    )


def _place_guardian_rows(pairs: set[Pair], places: dict[Pair, dict[int, _Place]], host_names: dict[int, str]) -> None:
    """The hosts with a guardian row of each pair, and its names there (by host, then name)."""
    fields = ("host_id", "host__name", "name", "signing_thumbprint", "encryption_thumbprint")
    for batch in chunks(sorted({s for s, _ in pairs})):
        rows = Guardian.objects.filter(signing_thumbprint__in=batch).order_by("host__name", "name")
        for host_id, host_name, name, signing, encryption in rows.values_list(*fields):
            if (signing, encryption) in pairs:
                places[(signing, encryption)][host_id].names.append(name)
                host_names[host_id] = host_name


def _store(
    thumbprints: list[str], host_names: dict[int, str]
) -> tuple[dict[str, list[tuple[int, datetime | None, str]]], dict[str, set[int]]]:
    """Where these certificates are: (host, expiry, subject) per thumbprint, and the hosts with its private key."""
    certificates: dict[str, list[tuple[int, datetime | None, str]]] = defaultdict(list)
    private: dict[str, set[int]] = defaultdict(set)
    fields = ("host_id", "host__name", "thumbprint", "has_private_key", "not_after", "subject")
    for batch in chunks(thumbprints):
        for host_id, host_name, thumbprint, has_private_key, not_after, subject in (
            Certificate.objects.filter(thumbprint__in=batch).order_by().values_list(*fields)
        ):
            certificates[thumbprint].append((host_id, not_after, subject))
            host_names[host_id] = host_name
            if has_private_key:
                private[thumbprint].add(host_id)
    return certificates, private


def _startable_hosts() -> set[int]:
    states = HostInventory.objects.only("host_id", "refreshed_at", "mode")
    return {state.host_id for state in states if rules.can_start_here(state)}


def _entries_of(known: dict[Pair, KnownGuardian]) -> tuple[set[int], dict[int, str]]:
    """Which guardians some key protector names; and per guardian, the subject the first VM (by name, then host)
    sealed to it embeds: what names a guardian no host holds any more."""
    named: set[int] = set()
    subjects: dict[int, str] = {}
    for batch in chunks(sorted(g.pk for g in known.values())):
        rows = (
            KeyProtectorEntry.objects.filter(guardian__in=batch)
            .order_by("vm__name", "vm__host__name", "position")
            .values_list("guardian_id", "listed", "subject")
        )
        for guardian_id, listed, subject in rows:
            named.add(guardian_id)
            if listed and subject:
                subjects.setdefault(guardian_id, subject)
    return named, subjects


def _vault(signings: list[str]) -> dict[Pair, tuple[int, str]]:
    found: dict[Pair, tuple[int, str]] = {}
    for batch in chunks(signings):
        rows = EscrowedPair.objects.filter(signing_thumbprint__in=batch).order_by("created_at")
        for s, e, pk, name in rows.values_list("signing_thumbprint", "encryption_thumbprint", "pk", "guardian_name"):
            found[(s, e)] = (pk, name or "")
    return found


def _holdings(guardian: KnownGuardian, lab: _Lab) -> list[KeyHolding]:
    signing, encryption = guardian.pair
    return [
        KeyHolding(
            guardian=guardian,
            host_id=host_id,
            names=place.names,
            has_private_keys=signing in place.private and encryption in place.private,
            holds_encryption_key=encryption in place.private,
            starts_vms=encryption in place.private and host_id in lab.startable,
        )
        for host_id, place in lab.places.get(guardian.pair, {}).items()
    ]


def _describe(guardian: KnownGuardian, holdings: list[KeyHolding], lab: _Lab) -> None:
    """Set the guardian's own facts: names, subject, expiry, escrow."""
    signing, encryption = guardian.pair
    certificates = lab.certificates.get(signing, []) + (
        lab.certificates.get(encryption, []) if encryption != signing else []
    )
    expiries = [not_after for _host, not_after, _subject in certificates if not_after]
    guardian.not_after = min(expiries, default=None)
    by_host_name = sorted(lab.certificates.get(signing, []), key=lambda c: lab.host_names.get(c[0], ""))
    fallback = next((subject for _host, _not_after, subject in by_host_name if subject), "")
    guardian.subject = (lab.entry_subjects.get(guardian.pk) or fallback)[:500]
    entry = lab.vault.get(guardian.pair)
    guardian.escrowed = entry is not None
    guardian.vault_entry_id, guardian.vault_name = entry if entry else (None, "")
    names = [name for holding in holdings for name in holding.names]
    guardian.display_name = rules.display_name(names, guardian.vault_name, guardian.subject)[:500]
    guardian.sort_name = guardian.display_name.lower()
    guardian.key_host_count = sum(1 for h in holdings if h.has_private_keys)


GUARDIAN_FIELDS = [
    "display_name",
    "sort_name",
    "subject",
    "not_after",
    "escrowed",
    "vault_entry",
    "vault_name",
    "key_host_count",
]


def _what_vms_see(guardian: KnownGuardian, holdings: Iterable[KeyHolding]) -> tuple[Any, ...]:
    """The facts of a guardian that a VM's facts depend on: when they change, its VMs are recomputed."""
    keys = frozenset(h.host_id for h in holdings if h.holds_encryption_key)
    starts = frozenset(h.host_id for h in holdings if h.starts_vms)
    return (keys, starts, guardian.escrowed, guardian.not_after)


def _holding_key(holding: KeyHolding) -> tuple[Any, ...]:
    names = tuple(holding.names)
    return (holding.host_id, names, holding.has_private_keys, holding.holds_encryption_key, holding.starts_vms)


def _guardian_values(guardian: KnownGuardian) -> tuple[Any, ...]:
    return tuple(getattr(guardian, "vault_entry_id" if f == "vault_entry" else f) for f in GUARDIAN_FIELDS)


def _rebuild_guardians(known: dict[Pair, KnownGuardian]) -> set[int]:
    """Recompute the guardians' facts and holdings, writing only what changed; drop the guardians nothing names
    any more. The ids of those whose VM-relevant facts changed."""
    if not known:
        return set()
    lab = _load_lab(known)
    ids = sorted(g.pk for g in known.values())
    before: dict[int, list[KeyHolding]] = defaultdict(list)
    for batch in chunks(ids):
        for holding in KeyHolding.objects.filter(guardian__in=batch).order_by():
            before[holding.guardian_id].append(holding)
    changed, rewritten, gone, holdings, moved = set(), [], [], [], []
    for guardian in known.values():
        seen_by_vms, values = _what_vms_see(guardian, before[guardian.pk]), _guardian_values(guardian)
        mine = _holdings(guardian, lab)
        if guardian.pk not in lab.named and not any(h.names for h in mine):
            gone.append(guardian.pk)  # neither a guardian row nor a key protector names it: not a guardian here
            continue
        _describe(guardian, mine, lab)
        if _guardian_values(guardian) != values:
            rewritten.append(guardian)
        if sorted(map(_holding_key, mine)) != sorted(map(_holding_key, before[guardian.pk])):
            moved.append(guardian.pk)
            holdings += mine
        if _what_vms_see(guardian, mine) != seen_by_vms:
            changed.add(guardian.pk)
    for batch in chunks([pk for pk in moved + gone if before[pk]]):
        KeyHolding.objects.filter(guardian__in=batch).delete()
    for batch in chunks(gone):
        KnownGuardian.objects.filter(pk__in=batch).delete()
    KnownGuardian.objects.bulk_update(rewritten, GUARDIAN_FIELDS, batch_size=CHUNK)
    KeyHolding.objects.bulk_create(holdings, batch_size=CHUNK)
    return changed


# -- 4. VMs and guardian rows ---------------------------------------------------------------------------------------


@dataclass
class _GuardianView:
    """A guardian as a VM's facts see it."""

    pair: Pair
    escrowed: bool
    not_after: datetime | None
    key_hosts: set[int] = field(default_factory=set)
    start_hosts: set[int] = field(default_factory=set)


def _guardian_views(vm_ids: list[int]) -> tuple[dict[int, list[_GuardianView]], dict[int, Host]]:
    """Per VM, the guardians its key protector lists (in order); and the hosts holding their keys."""
    entries = (
        KeyProtectorEntry.objects.filter(vm__in=vm_ids, listed=True)
        .order_by("vm_id", "position")
        .values_list("vm_id", "guardian_id")
    )
    by_vm: dict[int, list[int]] = defaultdict(list)
    for vm_id, guardian_id in entries:
        by_vm[vm_id].append(guardian_id)
    guardian_ids = sorted({g for ids in by_vm.values() for g in ids})
    views: dict[int, _GuardianView] = {}
    hosts: dict[int, Host] = {}
    for batch in chunks(guardian_ids):
        for g in KnownGuardian.objects.filter(pk__in=batch).order_by():
            views[g.pk] = _GuardianView(g.pair, g.escrowed, g.not_after)
        for holding in KeyHolding.objects.filter(guardian__in=batch, holds_encryption_key=True).select_related("host"):
            views[holding.guardian_id].key_hosts.add(holding.host_id)
            hosts[holding.host_id] = holding.host
            if holding.starts_vms:
                views[holding.guardian_id].start_hosts.add(holding.host_id)
    return {vm_id: [views[g] for g in ids if g in views] for vm_id, ids in by_vm.items()}, hosts


def vm_facts(vm: VirtualMachine, guardians: list[_GuardianView], hosts: dict[int, Host]) -> VmFacts:
    """What the analysis concludes about a VM from the guardians its key protector lists."""
    facts = VmFacts(vm=vm, startable=not vm.protected)
    if not vm.protected or not vm.kp_readable:
        return facts
    key_hosts = set().union(*(g.key_hosts for g in guardians)) if guardians else set()
    facts.startable = any(g.start_hosts for g in guardians)
    facts.key_hosts = len(key_hosts)
    facts.escrowed = any(g.escrowed for g in guardians)
    facts.keys_expire_at = min((g.not_after for g in guardians if g.not_after), default=None)
    if not facts.startable:
        facts.risk = "vm_cannot_start"
    elif len(key_hosts) == 1 and not facts.escrowed:
        holder = next(iter(key_hosts))
        held = {g.pair[1] for g in guardians if holder in g.key_hosts}
        facts.risk, facts.holder = "single_copy", hosts[holder]
        facts.escrow_signing, facts.escrow_encryption = rules.pair_to_escrow(vm, held.__contains__)
    return facts


VM_FACT_FIELDS = [
    "startable",
    "risk",
    "key_hosts",
    "holder",
    "escrowed",
    "escrow_signing",
    "escrow_encryption",
    "keys_expire_at",
]


def _fact_values(facts: VmFacts) -> tuple[Any, ...]:
    return tuple(getattr(facts, "holder_id" if name == "holder" else name) for name in VM_FACT_FIELDS)


def _rebuild_vm_facts(vm_ids: set[int], loaded: dict[int, VirtualMachine], new_risks: list[tuple[int, str]]) -> int:
    """Recompute the VMs' facts (`loaded`: those already read), writing only those that changed; how many did.
    Adds (VM id, risk) to `new_risks` for each VM whose risk is new: it had none, or another one."""
    written = 0
    for batch in chunks(sorted(vm_ids)):
        missing = [pk for pk in batch if pk not in loaded]
        vms = [loaded[pk] for pk in batch if pk in loaded]
        vms += VirtualMachine.objects.filter(pk__in=missing).order_by() if missing else []
        views, hosts = _guardian_views(batch)
        existing = {f.pk: f for f in VmFacts.objects.filter(vm__in=batch)}
        created: list[VmFacts] = []
        changed: dict[tuple[Any, ...], list[int]] = defaultdict(list)  # new values → the VMs that now have them
        for vm in vms:
            facts = vm_facts(vm, views.get(vm.pk, []), hosts)
            old = existing.get(vm.pk)
            if facts.risk and (old is None or old.risk != facts.risk):
                new_risks.append((vm.pk, facts.risk))
            if old is None:
                created.append(facts)
            elif _fact_values(old) != _fact_values(facts):
                changed[_fact_values(facts)].append(vm.pk)
        VmFacts.objects.bulk_create(created, batch_size=CHUNK)
        # A change usually gives many VMs the same new facts (a guardian's keys lost: all its VMs start nowhere):
        # one UPDATE per distinct outcome, rather than a CASE per VM and column.
        for values, ids in changed.items():
            columns = ["holder_id" if name == "holder" else name for name in VM_FACT_FIELDS]
            VmFacts.objects.filter(pk__in=ids).update(**dict(zip(columns, values, strict=True)))
        written += len(created) + sum(len(ids) for ids in changed.values())
    return written


def _mark_resets(hosts: set[int], vms: list[VirtualMachine]) -> list[int]:
    """Set needs_reset of the hosts' guardian rows; the ids of those that have just come to need one."""
    owners: dict[int, set[Pair]] = defaultdict(set)
    for vm in vms:
        if vm.owner_pair:
            owners[vm.host_id].add(vm.owner_pair)
    flips: dict[bool, list[int]] = {True: [], False: []}
    for batch in chunks(sorted(hosts)):
        for guardian in Guardian.objects.filter(host__in=batch).order_by():
            needed = rules.needs_reset(guardian, owners[guardian.host_id])
            if needed != guardian.needs_reset:
                flips[needed].append(guardian.pk)
    for value, ids in flips.items():
        for batch in chunks(ids):
            Guardian.objects.filter(pk__in=batch).update(needs_reset=value)
    return flips[True]
