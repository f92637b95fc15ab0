"""Refresh a host's inventory: two pipelines on one session whatever the number of VMs (the second asks the host who
may unseal each VM whose key protector it has not read before, and is left out when there is none), saved in one
transaction together with the update of the stored analysis that the change affects (facts.py).

An unreachable host (or one that answers garbage, or drops the connection half-way) keeps its last inventory,
marked stale with the time and the error: nothing is half-saved, because nothing is written until every read has
come back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from django.db import connection, models, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from hosts.crypto import SecretError
from hosts.models import Host
from hosts.remoting import HostSession
from hosts.remoting.catalog.inventory import HostInventoryFacts, VmDetails, read_inventory
from hosts.remoting.catalog.keyprotectors import KnownProtectors
from hosts.remoting.errors import RemotingError
from hosts.remoting.keyprotector import GuardianRef, KeyProtectorInfo

from . import facts, rules
from .models import Certificate, Guardian, HostInventory, VirtualMachine

logger = logging.getLogger(__name__)
LogFn = Callable[[str, str], None]
Row = TypeVar("Row", bound=models.Model)


@dataclass
class RefreshOutcome:
    ok: bool
    error: str = ""
    requests: int = 0
    kind: str = ""  # the RemotingError kind of a failure ("" when ok)
    host: str = ""

    def __str__(self) -> str:
        return f"{self.host}: refreshed" if self.ok else f"{self.host}: {self.error}"


@dataclass
class HostReading:
    inventory: HostInventoryFacts
    details: dict[str, VmDetails]


def read_host(session: HostSession, known: KnownProtectors | None = None) -> HostReading:
    """A refresh's reads on an open session: two pipelines, more only when needed (see read_inventory); the host
    reads only the key protectors that are not `known`."""
    inventory = read_inventory(session, known)
    return HostReading(inventory, inventory.details)


def known_key_protectors(host: Host) -> KnownProtectors:
    """The key protectors of the host's VMs whose guardians the host itself named at the last refresh, by the
    SHA-256 of their bytes: the same bytes name the same guardians, so they need not be sent to it again."""
    known: KnownProtectors = {}
    rows = VirtualMachine.objects.filter(host=host).exclude(kp_sha256="")
    for digest, owner, guardians in rows.values_list("kp_sha256", "kp_owner_thumbprints", "kp_guardian_thumbprints"):
        refs = [_guardian_ref(g) for g in guardians]
        known[digest] = KeyProtectorInfo(present=True, guardians=refs, owner=_guardian_ref(owner) if owner else None)
    return known


def _guardian_ref(stored: dict[str, str]) -> GuardianRef:
    return GuardianRef(stored.get("signing", ""), stored.get("encryption", ""), stored.get("subject", ""))


def refresh_host(host: Host, session: HostSession | None = None, log: LogFn | None = None) -> RefreshOutcome:
    """Read the host and replace its inventory; on failure keep the last one, marked stale. Never raises for a
    host's fault: the outcome says what happened."""
    say: LogFn = log or (lambda text, level: None)
    own_session = session is None
    try:
        if session is None:
            session = HostSession(host.connection_spec(), log=log)
        before = 0 if own_session else session.request_count
        try:
            if own_session:
                session.open()
            reading = read_host(session, known_key_protectors(host))
        finally:
            requests = session.request_count - before
            if own_session:
                session.close()
                requests = session.request_count - before
        save_reading(host, reading, requests)
    except RemotingError as err:
        return _failed(host, str(err), err.kind, say, session)
    except SecretError as err:
        return _failed(host, str(err), "secret", say, session)
    except Exception as err:  # a bug or the database: still no 500 page and no half-saved inventory
        logger.exception("Inventory refresh of %s failed", host)
        # Stored as the host's error (last_error, shown to everyone): English, like the remoting errors it sits with.
        return _failed(host, f"The refresh failed unexpectedly ({type(err).__name__}).", "unexpected", say, session)
    # The log lines are the job's, written in its requester's language (jobs/runner.py).
    if not reading.inventory.store_exists:
        say(
            _("%(host)s: the 'Shielded VM Local Certificates' store does not exist yet (no vTPM enabled so far)")
            % {"host": host},
            "info",
        )
    words = {"host": host, "vms": len(reading.inventory.vms), "requests": requests}
    say(_("Inventory of %(host)s refreshed: %(vms)d VMs, %(requests)d WinRM requests") % words, "info")
    return RefreshOutcome(ok=True, requests=requests, host=str(host))


def _failed(host: Host, error: str, kind: str, say: LogFn, session: HostSession | None) -> RefreshOutcome:
    words = {"host": host, "error": error}
    say(_("Inventory of %(host)s not refreshed: %(error)s — its last inventory is kept, marked stale") % words, "error")
    mark_stale(host, error, kind)
    requests = session.request_count if session is not None else 0
    return RefreshOutcome(ok=False, error=error, requests=requests, kind=kind, host=str(host))


# SQLite's deferred transactions fail at once ("database is locked") when two connections that have both read
# try to write; parallel refreshes in one process therefore take turns to save. PostgreSQL needs no such care.
_sqlite_writes = threading.Lock()


@contextmanager
def _saving() -> Iterator[None]:
    if connection.vendor == "sqlite":
        with _sqlite_writes, transaction.atomic():
            yield
    else:
        with transaction.atomic():
            yield


def mark_stale(host: Host, error: str, kind: str = "") -> None:
    """Keep what we knew, say it is stale, and why (which changes no stored fact: they follow the last good read)."""
    now = timezone.now()
    with _saving(), facts.batched():
        state, _ = HostInventory.objects.select_for_update().get_or_create(host=host)
        state.stale = True
        state.last_error = error[:2000]
        state.error_kind = kind
        state.attempted_at = now
        state.save(update_fields=["stale", "last_error", "error_kind", "attempted_at"])


def save_reading(host: Host, reading: HostReading, requests: int = 0) -> facts.UpdateStats:
    """Make the host's inventory rows what was just read, and the stored analysis what they now mean: all or
    nothing. Saves take turns (the analysis lock, taken first), so concurrent refreshes each build on the others'."""
    with _saving(), facts.batched():
        facts.lock()
        before = facts.touched_pairs({host.pk})  # the VMs that vanish take their key-protector entries with them
        if not _save_rows(host, reading, requests):
            return facts.UpdateStats()  # the same host as last time: nothing the analysis reads has changed
        return facts.update({host.pk}, touched=before)


def _save_rows(host: Host, reading: HostReading, requests: int) -> bool:
    """Write the host's rows; whether anything the analysis reads changed (a row, or whether its keys count)."""
    inventory = reading.inventory
    now = timezone.now()
    state, _ = HostInventory.objects.select_for_update().get_or_create(host=host)
    counted_before = rules.can_start_here(state)
    state.facts = {**inventory.facts.as_dict(), "store_exists": inventory.store_exists}
    state.mode = inventory.facts.mode
    state.refreshed_at = state.attempted_at = now
    state.stale = False
    state.last_error = state.error_kind = ""
    state.problems = inventory.problems + [p for d in reading.details.values() for p in d.problems]
    state.requests = requests
    state.live_migration_enabled = inventory.facts.live_migration_enabled
    state.save()
    changed = rules.can_start_here(state) != counted_before
    private = {c.thumbprint for c in inventory.certificates if c.has_private_key}
    changed |= _sync(Certificate, host, _certificates(host, inventory), lambda c: c.thumbprint)
    guardians = [
        Guardian(
            host=host,
            name=g.name[:200],
            signing_thumbprint=g.signing_thumbprint,
            encryption_thumbprint=g.encryption_thumbprint,
            signing_subject=g.signing_subject[:500],
            encryption_subject=g.encryption_subject[:500],
            has_private_signing_key=g.has_private_signing_key,
            has_private_encryption_key=g.encryption_thumbprint in private,
        )
        for g in inventory.guardians
    ]
    changed |= _sync(Guardian, host, guardians, lambda g: (g.signing_thumbprint, g.encryption_thumbprint, g.name))
    # A VM is the same VM as long as Hyper-V gives it the same id (a rename keeps its page); without an id, its name.
    changed |= _sync(VirtualMachine, host, _vm_rows(host, reading), lambda vm: vm.vm_id or f"name:{vm.name}")
    return changed


def _sync(model: type[Row], host: Host, rows: list[Row], key: Callable[[Row], Hashable]) -> bool:
    """Make the host's rows of `model` what was just read while keeping the rows (and so their pk, which pages and
    links use) of everything still there: update what changed, create what is new, delete only what vanished.
    Whether anything was written."""
    existing: dict[Hashable, Row] = {}
    duplicates: list[int] = []
    for row in model._default_manager.filter(host=host).order_by():
        if key(row) in existing:
            duplicates.append(row.pk)
        else:
            existing[key(row)] = row
    derived = getattr(model, "DERIVED_FIELDS", ())  # the analysis's columns: not read from the host
    fields = [
        f.name for f in model._meta.concrete_fields if not f.primary_key and f.name != "host" and f.name not in derived
    ]
    created, changed = [], []
    for row in rows:
        old = existing.pop(key(row), None)
        if old is None:
            created.append(row)
        elif any(getattr(old, f) != getattr(row, f) for f in fields):
            row.pk = old.pk
            changed.append(row)
    vanished = duplicates + [row.pk for row in existing.values()]
    if vanished:
        model._default_manager.filter(pk__in=vanished).delete()
    if changed:
        model._default_manager.bulk_update(changed, fields, batch_size=500)
    if created:
        model._default_manager.bulk_create(created, batch_size=500)
    return bool(vanished or changed or created)


def _certificates(host: Host, inventory: HostInventoryFacts) -> list[Certificate]:
    seen: dict[str, Certificate] = {}
    for c in inventory.certificates:
        if c.thumbprint and c.thumbprint not in seen:
            seen[c.thumbprint] = Certificate(
                host=host,
                thumbprint=c.thumbprint,
                subject=c.subject[:500],
                not_before=c.not_before,
                not_after=c.not_after,
                has_private_key=c.has_private_key,
            )
    return list(seen.values())


def _vm_rows(host: Host, reading: HostReading) -> list[VirtualMachine]:
    rows = []
    for vm in reading.inventory.vms:
        detail = reading.details.get(vm.name, VmDetails(vm.name))
        kp = detail.key_protector
        if detail.tpm_enabled and not detail.key_protector_read:  # a vTPM needs a key protector: it has one, unread
            kp = KeyProtectorInfo(present=True, readable=False)
        rows.append(
            VirtualMachine(
                host=host,
                vm_id=vm.vm_id[:64],
                name=vm.name[:200],
                state=vm.state[:32],
                generation=vm.generation,
                path=vm.path[:500],
                tpm_enabled=detail.tpm_enabled,
                shielded=detail.shielded,
                has_saved_state=vm.state.lower() == "saved",
                checkpoint_count=detail.checkpoint_count,
                has_key_protector=kp.present,
                kp_readable=kp.readable,
                kp_owner_thumbprints=kp.owner.as_dict() if kp.owner else {},
                kp_guardian_thumbprints=[g.as_dict() for g in kp.guardians],
                kp_sha256=detail.kp_sha256,
                details_read=detail.security_read and detail.key_protector_read,
                problems=detail.problems,
            )
        )
    return rows


def refresh_hosts(
    hosts: Iterable[Host], log_for: Callable[[Host], LogFn | None] | None = None, max_workers: int = 16
) -> dict[int, RefreshOutcome]:
    """Refresh several hosts at once (remote work is I/O-bound), one thread and one session per host.
    `log_for(host)` gives each host's log callable (a job prefixes lines with the host's name)."""
    targets = list(hosts)
    if not targets:
        return {}
    language = translation.get_language()  # a new thread starts in the default language, not the job's

    def one(host: Host) -> RefreshOutcome:
        try:
            with translation.override(language):
                return refresh_host(host, log=log_for(host) if log_for else None)
        finally:
            connection.close()  # each worker thread opened its own database connection

    with ThreadPoolExecutor(max_workers=min(max_workers, len(targets)), thread_name_prefix="refresh") as pool:
        outcomes = list(pool.map(one, targets))
    return {host.pk: outcome for host, outcome in zip(targets, outcomes, strict=True)}
