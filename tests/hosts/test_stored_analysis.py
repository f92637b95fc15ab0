"""The stored analysis is the from-scratch one, whatever happened to the lab and in whatever order.

A small random lab lives through random stories — refreshes of hosts whose guardians, certificates and VMs changed
(an escrow, an import of another host's pair, a guardian reset, deleted certificates, a reinstall, a VM moved to
another host, HGS mode), vault uploads and deletions, failed refreshes, rows written by hand, hosts deleted — and
after every step what the pages read (facts.py, reading.py) must equal what `Inventory()` computes from the rows.
Then the same with refreshes of several hosts at once, on threads, as a fleet refresh does.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import threading
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from hosts.inventory import facts, reading
from hosts.inventory.analysis import Inventory
from hosts.inventory.models import Certificate, Guardian, KnownGuardian, VirtualMachine, VmFacts
from hosts.inventory.refresh import HostReading, mark_stale, save_reading
from hosts.inventory.rules import Risk
from hosts.models import Host
from hosts.remoting.catalog.host import HostFacts
from hosts.remoting.catalog.inventory import CertificateFacts, GuardianFacts, HostInventoryFacts, VmDetails
from hosts.remoting.catalog.inventory import VmFacts as VmReading
from hosts.remoting.keyprotector import GuardianRef, KeyProtectorInfo
from hosts.vault.models import EscrowedPair

Pair = tuple[str, str]
_serial = count(1)
TODAY = timezone.now()  # certificates' dates count from here: a refresh of an unchanged host reads the same ones


# -- a lab as the hosts hold it -------------------------------------------------------------------------------------


@dataclass
class SimGuardian:
    name: str
    pair: Pair
    private: bool = True  # both private keys in the store
    expires_in: int = 3650  # days


@dataclass
class SimVm:
    vm_id: str
    name: str
    pairs: list[Pair]  # the key protector's rows; the first is the owner
    tpm: bool = True
    readable: bool = True
    generation: int = 2


@dataclass
class SimHost:
    name: str
    mode: str = "Local"
    guardians: list[SimGuardian] = field(default_factory=list)
    loose: dict[str, tuple[bool, int]] = field(default_factory=dict)  # certificates without a guardian row
    vms: list[SimVm] = field(default_factory=list)


def new_pair() -> Pair:
    n = next(_serial)
    return (f"{n:038X}5A", f"{n:038X}E0")


def subject(role: str, guardian: str, host: str) -> str:
    return f"CN=Shielded VM {role} Certificate ({guardian}) ({host})"


def reading_of(sim: SimHost) -> HostReading:
    """What a refresh would read from the host, in the shapes the remoting layer returns."""
    now = TODAY
    certificates: dict[str, CertificateFacts] = {}
    for g in sim.guardians:
        for thumbprint, role in zip(g.pair, ("Signing", "Encryption"), strict=True):
            if thumbprint:
                certificates[thumbprint] = CertificateFacts(
                    thumbprint,
                    subject(role, g.name, sim.name),
                    now - dt.timedelta(days=30),
                    now + dt.timedelta(days=g.expires_in),
                    g.private,
                )
    for thumbprint, (private, days) in sim.loose.items():
        certificates.setdefault(
            thumbprint, CertificateFacts(thumbprint, "", None, now + dt.timedelta(days=days), private)
        )
    guardians = [
        GuardianFacts(g.name, g.private, g.pair[0], g.pair[1], subject("Signing", g.name, sim.name))
        for g in sim.guardians
    ]
    details = {}
    for vm in sim.vms:
        refs = [GuardianRef(s, e, subject("Signing", "UntrustedGuardian", f"old-{s[:4]}")) for s, e in vm.pairs]
        kp = KeyProtectorInfo(present=bool(vm.pairs), guardians=refs if vm.readable else [], owner=None)
        if vm.readable and refs:
            kp.owner = refs[0]
        kp.readable = vm.readable
        details[vm.name] = VmDetails(vm.name, True, vm.tpm, False, kp, True)
    inventory = HostInventoryFacts(
        facts=HostFacts(computer_name=sim.name, os_caption="Windows Server 2022", mode=sim.mode),
        guardians=guardians,
        certificates=list(certificates.values()),
        vms=[VmReading(vm.name, vm.vm_id, "Off", vm.generation) for vm in sim.vms],
        details=details,
        details_complete=True,
    )
    return HostReading(inventory, details)


# -- the stories ----------------------------------------------------------------------------------------------------


class Lab:
    def __init__(self, rng: random.Random, hosts: int = 4) -> None:
        self.rng = rng
        self.sims: dict[str, SimHost] = {}
        self.hosts: dict[str, Host] = {}
        self.retired: list[Pair] = []  # guardians no host holds any more: reinstalled hosts' old ones
        for _ in range(hosts):
            self.add_host()

    def add_host(self) -> None:
        name = f"HV{next(_serial):03}"
        host = Host(name=name, address=f"{name.lower()}.lab.example", username="labadmin")
        host.set_password("Passw0rd!lab")
        host.save()
        sim = SimHost(name, guardians=[SimGuardian("UntrustedGuardian", new_pair())])
        for i in range(self.rng.randint(0, 4)):
            sim.vms.append(SimVm(f"id-{next(_serial)}", f"VM-{i}", [sim.guardians[0].pair]))
        self.sims[name], self.hosts[name] = sim, host
        if self.rng.random() < 0.8:
            self.refresh(name)

    def refresh(self, name: str) -> None:
        save_reading(self.hosts[name], reading_of(self.sims[name]), requests=3)

    def pairs_anywhere(self) -> list[Pair]:
        held = [g.pair for sim in self.sims.values() for g in sim.guardians]
        return held + self.retired

    def pick(self) -> SimHost:
        return self.sims[self.rng.choice(sorted(self.sims))]

    # each story changes the lab, then refreshes what changed (or writes rows the way others do)

    def import_pair(self) -> None:
        target, pair = self.pick(), self.rng.choice(self.pairs_anywhere())
        target.guardians.append(SimGuardian(f"Imported-{pair[0][-6:]}", pair, private=self.rng.random() < 0.8))
        self.refresh(target.name)

    def grant(self) -> None:
        """A VM's key protector gets another guardian row (Grant-HgsKeyProtectorAccess)."""
        sim = self.pick()
        if sim.vms:
            vm, pair = self.rng.choice(sim.vms), self.rng.choice(self.pairs_anywhere())
            if pair not in vm.pairs:  # granting a guardian the key protector has already changes nothing
                vm.pairs.append(pair)
            self.refresh(sim.name)

    def reinstall(self) -> None:
        sim = self.pick()
        self.retired += [g.pair for g in sim.guardians]
        sim.guardians = [SimGuardian("UntrustedGuardian", new_pair())]
        sim.loose.clear()
        self.refresh(sim.name)

    def delete_certificates(self) -> None:
        sim = self.pick()
        for g in sim.guardians:
            g.private = self.rng.random() < 0.3
        self.refresh(sim.name)

    def reset(self) -> None:
        """Remove-HgsGuardian, then a TPM enabled creates a fresh UntrustedGuardian; its certificates stay."""
        sim = self.pick()
        for g in [g for g in sim.guardians if not g.private]:
            sim.guardians.remove(g)
            sim.loose.update({t: (False, g.expires_in) for t in g.pair})
        if not any(g.name == "UntrustedGuardian" for g in sim.guardians):
            sim.guardians.append(SimGuardian("UntrustedGuardian", new_pair()))
        self.refresh(sim.name)

    def new_vm(self) -> None:
        sim = self.pick()
        pairs = [self.rng.choice([g.pair for g in sim.guardians] or self.pairs_anywhere())]
        tpm, readable = self.rng.random() < 0.85, self.rng.random() < 0.9
        sim.vms.append(SimVm(f"id-{next(_serial)}", f"VM-{next(_serial)}", pairs, tpm, readable))
        self.refresh(sim.name)

    def migrate(self) -> None:
        source, target = self.pick(), self.pick()
        if source.vms and source is not target:
            vm = source.vms.pop(self.rng.randrange(len(source.vms)))
            target.vms.append(vm)
            self.refresh(source.name)
            self.refresh(target.name)

    def remove_vm(self) -> None:
        sim = self.pick()
        if sim.vms:
            sim.vms.pop(self.rng.randrange(len(sim.vms)))
            self.refresh(sim.name)

    def expire(self) -> None:
        sim = self.pick()
        if sim.guardians:
            self.rng.choice(sim.guardians).expires_in = self.rng.choice([-10, 100, 400])
            self.refresh(sim.name)

    def hgs_mode(self) -> None:
        sim = self.pick()
        sim.mode = "HostGuardianService" if sim.mode == "Local" else "Local"
        self.refresh(sim.name)

    def unreachable(self) -> None:
        mark_stale(self.hosts[self.pick().name], "10.0.0.9:5985 refused the connection", "refused")

    def escrow(self) -> None:
        pair = self.rng.choice(self.pairs_anywhere())
        if not EscrowedPair.objects.filter(signing_thumbprint=pair[0], encryption_thumbprint=pair[1]).exists():
            now = timezone.now()
            EscrowedPair.objects.create(
                signing_thumbprint=pair[0],
                encryption_thumbprint=pair[1],
                guardian_name=self.rng.choice(["", "UntrustedGuardian (old)"]),
                not_before=now,
                not_after=now,
            )

    def drop_from_vault(self) -> None:
        entry = EscrowedPair.objects.order_by("?").first()
        if entry is not None:
            entry.delete()

    def by_hand(self) -> None:
        """Rows written outside a refresh (an admin, a shell): the analysis follows them too."""
        host = self.hosts[self.pick().name]
        choice = self.rng.randrange(3)
        if choice == 0:
            vm = VirtualMachine.objects.filter(host=host).first()
            if vm is not None:
                vm.kp_guardian_thumbprints = []
                vm.kp_owner_thumbprints = {}
                vm.has_key_protector = False
                vm.save()
        elif choice == 1:
            cert = Certificate.objects.filter(host=host).first()
            if cert is not None:
                cert.delete()
        else:
            last = VirtualMachine.objects.filter(host=host).order_by("pk").last()
            if last is not None:
                last.delete()

    def delete_host(self) -> None:
        if len(self.sims) > 2:
            name = self.rng.choice(sorted(self.sims))
            self.hosts.pop(name).delete()
            self.sims.pop(name)

    STORIES = (
        "import_pair",
        "grant",
        "reinstall",
        "delete_certificates",
        "reset",
        "new_vm",
        "migrate",
        "remove_vm",
        "expire",
        "hgs_mode",
        "unreachable",
        "escrow",
        "drop_from_vault",
        "by_hand",
        "delete_host",
        "add_host",
    )

    def step(self) -> str:
        story = self.rng.choice(self.STORIES)
        getattr(self, story)()
        return story


# -- stored versus from scratch -------------------------------------------------------------------------------------


def risk_key(risk: Risk) -> tuple[Any, ...]:
    return (
        risk.code,
        risk.subject,
        risk.explanation,
        risk.url,
        risk.host.pk if risk.host else None,
        risk.vm.pk if risk.vm else None,
        tuple((a.code, a.url) for a in risk.actions),
    )


def assert_same_analysis(context: str) -> None:
    now = timezone.now()
    inventory = Inventory()
    expected = sorted(risk_key(r) for r in inventory.risks())
    stored = sorted(risk_key(r) for r in reading.all_risks(now))
    assert stored == expected, f"risks differ after {context}"

    startable = dict(VmFacts.objects.values_list("vm_id", "startable"))
    assert startable == {vm.pk: inventory.startable_anywhere(vm) for vm in inventory.vms}, context

    known = {g.pair: g for g in KnownGuardian.objects.all()}
    assert set(known) == set(inventory.identities), f"guardian identities differ after {context}"
    rows = {row.guardian.pair: row for row in reading.guardian_rows(list(known.values()), first_vms=0)}
    for pair, identity in inventory.identities.items():
        guardian, row = known[pair], rows[pair]
        facts_now = (guardian.display_name, guardian.escrowed, guardian.vault_entry_id, guardian.not_after)
        assert facts_now == (identity.display_name, identity.escrowed, identity.vault_entry, identity.not_after), (
            f"{pair} after {context}"
        )
        assert {h.pk for h in row.hosts_with_keys} == {h.pk for h in identity.hosts_with_keys}, context
        assert {h.pk for h in row.hosts_without_keys} == {h.pk for h in identity.hosts_without_keys}, context
        assert row.sealed == len({vm.pk for vm in identity.sealed_vms}), context
        assert {(a.code, a.url) for a in row.actions} == {(a.code, a.url) for a in inventory.identity_actions(identity)}

    broken = {g.pk for g in inventory.broken_guardians()}
    assert set(Guardian.objects.filter(needs_reset=True).values_list("pk", flat=True)) == broken, context

    questions = [(vm, host) for vm in inventory.vms for host in inventory.hosts]
    assert reading.start_answers(questions) == [inventory.can_start(vm, host) for vm, host in questions], context
    for host in inventory.hosts:
        guardians = [g for g in inventory.guardians if g.host_id == host.pk]
        assert reading.guardian_actions(host, guardians) == {g.pk: inventory.guardian_actions(g) for g in guardians}
        assert reading.host_actions(host) == inventory.host_actions(host), context


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(12))
def test_the_stored_analysis_is_the_from_scratch_one_after_any_story(seed: int) -> None:
    rng = random.Random(seed)
    lab = Lab(rng)
    assert_same_analysis("the first refreshes")
    done = []
    for _ in range(30):
        done.append(lab.step())
        assert_same_analysis(" → ".join(done[-5:]))


@pytest.mark.django_db
def test_a_rebuild_from_the_rows_changes_nothing() -> None:
    lab = Lab(random.Random(99), hosts=5)
    for _ in range(20):
        lab.step()
    before = sorted(risk_key(r) for r in reading.all_risks())

    facts.rebuild()

    assert sorted(risk_key(r) for r in reading.all_risks()) == before
    assert_same_analysis("a rebuild")


@pytest.mark.django_db
def test_a_refresh_that_finds_the_host_unchanged_updates_nothing() -> None:
    lab = Lab(random.Random(7), hosts=6)
    name = next(n for n, sim in lab.sims.items() if sim.vms)
    lab.refresh(name)

    stats = save_reading(lab.hosts[name], reading_of(lab.sims[name]))

    assert stats.vms == stats.guardians == 0


@pytest.mark.django_db
def test_a_refresh_that_changes_no_fact_looks_only_at_the_hosts_vms() -> None:
    lab = Lab(random.Random(7), hosts=6)
    name = next(n for n, sim in lab.sims.items() if sim.vms)
    lab.refresh(name)
    lab.sims[name].vms[0].generation = 1  # a row changed, but nothing the analysis concludes

    stats = save_reading(lab.hosts[name], reading_of(lab.sims[name]))

    assert stats.guardians_changed == 0 and stats.vms_changed == 0
    assert stats.vms == len(lab.sims[name].vms)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("seed", range(3))
def test_hosts_refreshed_at_the_same_time_leave_the_analysis_right(seed: int) -> None:
    """Each round changes several hosts in ways that affect the others' VMs (keys of a guardian VMs elsewhere are
    sealed to appear or vanish), then refreshes them on threads at once, as refresh_hosts does."""
    rng = random.Random(seed)
    lab = Lab(rng, hosts=5)
    names = sorted(lab.sims)
    shared = lab.sims[names[0]].guardians[0].pair
    for name in names[1:]:  # every host's first VM also sealed to HV-first's guardian
        if lab.sims[name].vms:
            lab.sims[name].vms[0].pairs.append(shared)
        lab.refresh(name)
    for round_ in range(4):
        chosen = rng.sample(names, 3)
        for name in chosen:
            sim = lab.sims[name]
            if rng.random() < 0.5:
                sim.guardians.append(SimGuardian("Imported", shared, private=rng.random() < 0.5))
            else:
                sim.guardians = [g for g in sim.guardians if g.pair != shared or rng.random() < 0.3] or sim.guardians
                for g in sim.guardians:
                    g.private = rng.random() < 0.7
        start = threading.Barrier(len(chosen))
        errors: list[BaseException] = []

        def refresh(name: str, start: threading.Barrier = start, errors: list[BaseException] = errors) -> None:
            try:
                start.wait()
                lab.refresh(name)
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=refresh, args=(name,)) for name in chosen]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert_same_analysis(f"round {round_} of concurrent refreshes of {chosen}")


@pytest.mark.django_db
def test_check_analysis_says_when_the_stored_analysis_differs_and_rebuild_repairs_it() -> None:
    lab = Lab(random.Random(3), hosts=4)
    for _ in range(10):
        lab.step()
    out = io.StringIO()
    call_command("check_analysis", stdout=out)
    assert "matches a from-scratch one" in out.getvalue()
    VmFacts.objects.update(risk="")  # rows edited in the database behind the console's back

    with pytest.raises(CommandError, match="differs"):
        call_command("check_analysis", stdout=io.StringIO())
    call_command("check_analysis", "--rebuild", stdout=out)
    assert_same_analysis("check_analysis --rebuild")
