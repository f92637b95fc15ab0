"""Fill the database with a large, realistic lab: `manage.py generate_lab --hosts 200 --vms-per-host 50 --seed 1`.

Hosts are registered as people register them, their inventories saved through the refresh's own code path
(`save_reading`, which also updates the stored analysis), pairs escrowed through the vault's (`store_pair`, real PFX
files): so what the pages show of a generated lab is what they would show of a real one. Each host gets a current
UntrustedGuardian; some were rotated (the old pair still in the store), reinstalled (the old pair lost, maybe in
the vault), lost their private keys, import a neighbour's pair (with or without its private keys), run in HGS mode,
failed their last refresh or were never read. VMs are sealed to their host's guardian, to an older one, to a
neighbour's; some have no vTPM, a few an unreadable key protector. Jobs with their logs and audit events fill the
history. The same seed makes the same lab (only the key material differs).
"""

from __future__ import annotations

import datetime as dt
import random
import warnings
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, pkcs12
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone, translation
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from console.models import AuditEvent
from hosts.inventory.refresh import HostReading, mark_stale, save_reading
from hosts.models import Host
from hosts.remoting.catalog.host import HostFacts
from hosts.remoting.catalog.inventory import CertificateFacts, GuardianFacts, HostInventoryFacts, VmDetails, VmFacts
from hosts.remoting.keyprotector import GuardianRef, KeyProtectorInfo, thumbprint
from hosts.vault.models import EscrowedPair
from hosts.vault.services import store_pair
from jobs.models import Job, JobLogLine, JobState

# How hosts differ, by weight; the first hosts take one of each in this order, so a 4-host lab shows them all.
HOST_KINDS = {"healthy": 62, "reinstalled": 8, "deleted_certs": 4, "rotated": 14, "hgs": 2, "stale": 4, "never": 1}
FIRST_KINDS = ["healthy", "reinstalled", "deleted_certs", "rotated", "stale", "hgs", "never"]
JOB_KINDS = ["inventory_refresh"] * 6 + ["escrow_guardian", "escrow_host", "import_guardian", "restore_vm"]
AUDIT_ACTIONS = ["login", "host.test_connection", "host.update", "vault.download", "job.create", "logout"]
PEOPLE = ["ada", "otto", "vera", "lab-operator", ""]
PFX_PASSWORD = "Generated-Lab-Pfx-7q"  # noqa: S105 - the generated lab's own, printed nowhere


# -- key material: real certificates, so the vault's checks pass and thumbprints are what Windows would show --------


class Keys:
    """Two RSA keys shared by every generated guardian: generating keys is the slow part, and nothing in the
    console depends on two guardians having different keys (their certificates, and so thumbprints, differ)."""

    def __init__(self) -> None:
        self.signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.encryption = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Material:
    """A guardian's two certificates as Hyper-V generates them."""

    name: str
    host: str  # where Hyper-V generated it
    signing: x509.Certificate
    encryption: x509.Certificate

    @property
    def pair(self) -> tuple[str, str]:
        return (
            thumbprint(self.signing.public_bytes(Encoding.DER)),
            thumbprint(self.encryption.public_bytes(Encoding.DER)),
        )

    @property
    def ref(self) -> GuardianRef:
        return GuardianRef(*self.pair, subject=subject_of(self.signing))


def subject_of(cert: x509.Certificate) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Windows' CNs exceed X.520's 64 characters
        return cert.subject.rfc4514_string()


def certificate(key: rsa.RSAPrivateKey, role: str, name: str, host: str, born: dt.datetime, days: int) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cn = f"Shielded VM {role} Certificate ({name}) ({host})"
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)])
    signing = role == "Signing"
    usage = x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=not signing,
        data_encipherment=not signing,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(born)
        .not_valid_after(born + dt.timedelta(days=days))
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )


def guardian(keys: Keys, name: str, host: str, born: dt.datetime, days: int) -> Material:
    return Material(
        name,
        host,
        certificate(keys.signing, "Signing", name, host, born, days),
        certificate(keys.encryption, "Encryption", name, host, born, days),
    )


def pfx(key: rsa.RSAPrivateKey, cert: x509.Certificate) -> bytes:
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2000)  # what Windows' Export-PfxCertificate uses
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(PFX_PASSWORD.encode())
    )
    return pkcs12.serialize_key_and_certificates(b"guardian", key, cert, None, encryption)


# -- the lab's plan -------------------------------------------------------------------------------------------------


@dataclass
class HostPlan:
    """One host as generated: what it is, its guardians, and who its neighbour is."""

    index: int
    name: str
    kind: str
    current: Material
    old: Material | None = None  # the guardian before a rotation or a reinstall
    imports: list[tuple[Material, bool]] = field(default_factory=list)  # a neighbour's pair, with private keys?
    host: Host | None = None


class LabPlan:
    def __init__(self, hosts: int, vms_per_host: int, seed: int, prefix: str) -> None:
        self.rng = random.Random(seed)
        self.vms_per_host = vms_per_host
        self.now = timezone.now().replace(microsecond=0)
        keys = Keys()
        self.keys = keys
        self.hosts = [self._plan_host(i, f"{prefix}{i + 1:03}", keys) for i in range(hosts)]
        for plan in self.hosts:
            self._plan_imports(plan)

    def _kind(self, index: int) -> str:
        if index < len(FIRST_KINDS):
            return FIRST_KINDS[index]
        return self.rng.choices(list(HOST_KINDS), weights=list(HOST_KINDS.values()))[0]

    def _plan_host(self, index: int, name: str, keys: Keys) -> HostPlan:
        kind = self._kind(index)
        lifetime = self.rng.choices([3650, 300, 120, 20], weights=[92, 4, 3, 1])[0]
        born = self.now - dt.timedelta(days=self.rng.randint(30, 900), minutes=index)
        plan = HostPlan(index, name, kind, guardian(keys, "UntrustedGuardian", name, born, lifetime))
        if kind in ("rotated", "reinstalled"):
            plan.old = guardian(keys, "UntrustedGuardian", name, born - dt.timedelta(days=400), 3650)
        return plan

    def _plan_imports(self, plan: HostPlan) -> None:
        if len(self.hosts) < 2:
            return
        neighbour = self.hosts[(plan.index + 1) % len(self.hosts)]
        roll = self.rng.random()
        if roll < 0.2:
            plan.imports.append((neighbour.current, True))  # a migration target: the neighbour's keys, here too
        elif roll < 0.35:
            plan.imports.append((neighbour.current, False))  # Import-HgsGuardian: public keys only

    def neighbour(self, plan: HostPlan) -> HostPlan:
        return self.hosts[(plan.index + 1) % len(self.hosts)]


# -- what a refresh of a planned host reads -------------------------------------------------------------------------


def store_of(plan: HostPlan) -> tuple[list[GuardianFacts], list[CertificateFacts]]:
    private = plan.kind != "deleted_certs"
    held: list[tuple[Material, bool, bool]] = [(plan.current, private, True)]  # (material, private keys, row)
    if plan.kind == "rotated" and plan.old is not None:
        held.append((plan.old, True, False))  # Remove-HgsGuardian leaves the certificates in the store
    held += [(material, keys, True) for material, keys in plan.imports]
    guardians, certificates = [], []
    for material, keys, row in held:
        if row:
            name = material.name if material is plan.current else f"{material.host}-guardian"
            guardians.append(GuardianFacts(name, keys, *material.pair, subject_of(material.signing)))
        for cert in (material.signing, material.encryption):
            certificates.append(
                CertificateFacts(
                    thumbprint(cert.public_bytes(Encoding.DER)),
                    subject_of(cert),
                    cert.not_valid_before_utc,
                    cert.not_valid_after_utc,
                    keys,
                )
            )
    return guardians, certificates


def sealed_to(lab: LabPlan, plan: HostPlan) -> list[GuardianRef]:
    """The guardians a new VM of the host is sealed to, owner first."""
    rng = lab.rng
    if plan.old is not None and rng.random() < 0.55:
        refs = [plan.old.ref]  # made before the rotation or the reinstall
    elif rng.random() < 0.04:
        refs = [lab.neighbour(plan).current.ref]  # moved here from the neighbour without re-keying
    else:
        refs = [plan.current.ref]
    if rng.random() < 0.1:
        refs.append(lab.neighbour(plan).current.ref)  # Grant-HgsKeyProtectorAccess to the neighbour
    return refs


def vms_of(lab: LabPlan, plan: HostPlan) -> tuple[list[VmFacts], dict[str, VmDetails]]:
    rng = lab.rng
    vms, details = [], {}
    for j in range(lab.vms_per_host):
        os_name = rng.choice(["Win11", "Win11", "Srv2022", "Srv2025", "Win10"])
        name = f"{os_name}-{plan.name}-{j + 1:03}"
        tpm = rng.random() < 0.8
        generation = 2 if tpm or rng.random() < 0.5 else 1
        state = rng.choice(["Running", "Running", "Off", "Saved"])
        kp = KeyProtectorInfo(present=False)
        if tpm:
            refs = sealed_to(lab, plan)
            kp = KeyProtectorInfo(present=True, guardians=refs, owner=refs[0])
            if rng.random() < 0.01:
                kp = KeyProtectorInfo(present=True, readable=False)
        vm_id = f"{plan.index:08x}-{j:04x}-4000-8000-{rng.getrandbits(48):012x}"
        vms.append(VmFacts(name, vm_id, state, generation, f"D:\\Hyper-V\\{name}"))
        details[name] = VmDetails(name, True, tpm, False, kp, True, rng.choice([0, 0, 0, 1, 2]))
    return vms, details


def reading_of(lab: LabPlan, plan: HostPlan) -> HostReading:
    guardians, certificates = store_of(plan)
    vms, details = vms_of(lab, plan)
    facts = HostFacts(
        computer_name=plan.name,
        os_caption="Microsoft Windows Server 2022 Datacenter",
        os_version="10.0.20348",
        mode="HostGuardianService" if plan.kind == "hgs" else "Local",
    )
    inventory = HostInventoryFacts(facts, guardians, certificates, vms, details=details, details_complete=True)
    return HostReading(inventory, details)


# -- writing it -----------------------------------------------------------------------------------------------------


def register(plan: HostPlan) -> Host:
    address = f"{plan.name.lower()}.lab.example"
    host = Host(name=plan.name, address=address, auth="negotiate", username="LAB\\hvconsole")
    host.set_password(f"Generated-{plan.name}-Passw0rd")
    host.full_clean()
    host.save()
    return host


def refresh(lab: LabPlan, plan: HostPlan, host: Host) -> None:
    # The words a failed refresh stores, in the lab's language (as a real refresh writes its requester's).
    where = {"where": f"{host.address}:5985"}
    if plan.kind == "never":
        mark_stale(host, _("%(where)s did not accept a connection within the connect timeout.") % where, "timeout")
        return
    save_reading(host, reading_of(lab, plan), requests=8)
    if plan.kind == "stale":
        mark_stale(host, refused(host), "refused")


def refused(host: Host) -> str:
    where = {"where": f"{host.address}:5985"}
    return _("%(where)s refused the connection: nothing listens there, or a firewall rejects it.") % where


def escrow(lab: LabPlan) -> int:
    """Pairs in the vault: most current guardians, and the old pairs of most rotated or reinstalled hosts."""
    stored = 0
    for plan in lab.hosts:
        chosen = [plan.current] if lab.rng.random() < 0.7 else []
        if plan.old is not None and lab.rng.random() < 0.6:
            chosen.append(plan.old)
        for material in chosen:
            store_pair(
                pfx(lab.keys.signing, material.signing),
                pfx(lab.keys.encryption, material.encryption),
                PFX_PASSWORD,
                user=None,
                origin=EscrowedPair.ORIGIN_ESCROW,
                source_host=plan.host,
                allow_expired=True,
                expect_thumbprints=material.pair,
            )
            stored += 1
    return stored


def history(lab: LabPlan, jobs_per_host: int, audit_per_host: int) -> tuple[int, int]:
    """Finished jobs with a short log each, and audit events, spread over the last 90 days."""
    rng, hosts = lab.rng, [plan.host for plan in lab.hosts if plan.host is not None]
    jobs = []
    for _job in range(jobs_per_host * len(hosts)):
        host = rng.choice(hosts)
        created = lab.now - dt.timedelta(seconds=rng.randint(60, 90 * 86400))
        state = rng.choices([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED], weights=[85, 10, 5])[0]
        jobs.append(
            Job(
                kind=rng.choice(JOB_KINDS),
                host_names=[host.name],
                state=state,
                requested_by_name=rng.choice(PEOPLE),
                created_at=created,
                started_at=created + dt.timedelta(seconds=1),
                finished_at=created + dt.timedelta(seconds=rng.randint(3, 90)),
                summary=_("Done on %(host)s") % {"host": host.name} if state == JobState.SUCCEEDED else "",
                error=refused(host) if state == JobState.FAILED else "",
                language=get_language(),
                last_seq=4,
            )
        )
    jobs = Job.objects.bulk_create(jobs, batch_size=500)
    by_name = {host.name: host for host in hosts}
    links = [Job.hosts.through(job_id=job.pk, host_id=by_name[job.host_names[0]].pk) for job in jobs]
    Job.hosts.through.objects.bulk_create(links, batch_size=1000)
    lines = [
        JobLogLine(job=job, seq=seq, at=job.created_at, level="info", text=text)
        for job in jobs
        for seq, text in enumerate(
            [_("Job started"), f"→ Get-HgsGuardian ({job.host_names[0]})", _("Step done"), _("Job ended")], start=1
        )
    ]
    JobLogLine.objects.bulk_create(lines, batch_size=2000)
    return len(jobs), audit(lab, hosts, audit_per_host)


def audit(lab: LabPlan, hosts: list[Host], per_host: int) -> int:
    rng = lab.rng
    events = []
    for _event in range(per_host * len(hosts)):
        host = rng.choice(hosts)
        events.append(
            AuditEvent(
                username=rng.choice(PEOPLE),
                action=rng.choice(AUDIT_ACTIONS),
                object_type="host",
                object_id=str(host.pk),
                object_repr=host.name,
                detail={"address": host.address},
            )
        )
    made = AuditEvent.objects.bulk_create(events, batch_size=1000)
    # `at` is set on insert (auto_now_add): spread the events over 90 days afterwards, a day per statement.
    ids = [event.pk for event in made]
    per_day = max(1, len(ids) // 90)
    for day, start in enumerate(range(0, len(ids), per_day)):
        when = lab.now - dt.timedelta(days=90 - day, seconds=rng.randint(0, 86_000))
        AuditEvent.objects.filter(pk__in=ids[start : start + per_day]).update(at=when)
    return len(ids)


class Command(BaseCommand):
    help = "Fill the database with a large generated lab (hosts, inventories, vault pairs, jobs, audit events)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hosts", type=int, default=20)
        parser.add_argument("--vms-per-host", type=int, default=10)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--prefix", default="HV", help="host names are PREFIX001, PREFIX002, …")
        parser.add_argument("--jobs-per-host", type=int, default=25)
        parser.add_argument("--audit-per-host", type=int, default=100)
        parser.add_argument(
            "--language",
            default=settings.LANGUAGE_CODE,
            choices=[code for code, _name in settings.LANGUAGES],
            help="the language its jobs and failed refreshes were written in",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["hosts"] < 1 or options["vms_per_host"] < 0:
            raise CommandError("--hosts must be at least 1 and --vms-per-host at least 0.")
        lab = LabPlan(options["hosts"], options["vms_per_host"], options["seed"], options["prefix"])
        taken = Host.objects.filter(name__in=[plan.name for plan in lab.hosts]).values_list("name", flat=True)
        if taken:
            raise CommandError(f"Hosts {', '.join(sorted(taken)[:5])}… exist already: choose another --prefix.")
        with translation.override(options["language"]):
            for plan in lab.hosts:
                plan.host = register(plan)
            for plan in lab.hosts:
                assert plan.host is not None
                refresh(lab, plan, plan.host)
            pairs = escrow(lab)
            jobs, events = history(lab, options["jobs_per_host"], options["audit_per_host"])
        self.stdout.write(
            f"Generated {len(lab.hosts)} hosts with {len(lab.hosts) * lab.vms_per_host} VMs, {pairs} vault pairs, "
            f"{jobs} jobs and {events} audit events (seed {options['seed']})."
        )
