"""Every page costs the same number of queries in a small lab and in a large one: pages read the stored analysis
a page at a time, so neither the number of hosts, VMs, guardians, jobs nor audit events shows in their cost.

A generated 4 hosts × 4 VMs lab is measured, then a 50 × 50 lab is generated next to it and the same pages are
measured on its objects (a host of the same kind, a VM of it, a vault pair with VMs sealed to it).
Both labs are generated once for the module (generating is most of its time) and rolled back after its last test;
each test runs in a savepoint inside that transaction, as pytest-django's tests always do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from console.models import AuditEvent
from hosts.inventory.models import KeyProtectorEntry, VirtualMachine
from hosts.models import Host
from hosts.vault.models import EscrowedPair
from jobs.models import Job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(300)]


@dataclass
class Sample:
    """The objects of one generated lab that the per-object pages are measured on."""

    host: Host
    vm: VirtualMachine
    pair: EscrowedPair
    job: Job
    target: Host  # another host of the lab, where the VM could migrate
    sealed: VirtualMachine  # a VM sealed to the vault pair: what the restore page brings back


def generate(prefix: str, hosts: int, vms: int) -> Sample:
    call_command("generate_lab", hosts=hosts, vms_per_host=vms, seed=5, prefix=prefix, stdout=None)
    # A host with VMs at risk: an empty list costs one query less (Django does not ask for zero rows).
    at_risk = Host.objects.filter(name__startswith=prefix, vms__facts__risk="single_copy").order_by("name")
    host = at_risk.first() or Host.objects.get(name=f"{prefix}001")
    vm = VirtualMachine.objects.filter(host=host, has_key_protector=True, kp_readable=True).order_by("name").first()
    sealed = KeyProtectorEntry.objects.filter(vm__host__name__startswith=prefix).values("guardian__signing_thumbprint")
    pair = EscrowedPair.objects.filter(signing_thumbprint__in=sealed, source_host__name__startswith=prefix).first()
    job = Job.objects.filter(hosts=host).order_by("-pk").first()
    target = Host.objects.filter(name__startswith=prefix).exclude(pk=host.pk).order_by("name").first()
    assert vm is not None and pair is not None and job is not None and target is not None
    to_pair = KeyProtectorEntry.objects.filter(guardian__signing_thumbprint=pair.signing_thumbprint)
    restorable = VirtualMachine.objects.filter(key_protector_entries__in=to_pair, host__name__startswith=prefix)
    sealed_vm = restorable.order_by("host__name", "name").first()
    assert sealed_vm is not None
    return Sample(host, vm, pair, job, target, sealed_vm)


def pages(sample: Sample) -> dict[str, str]:
    return {
        "dashboard": "/",
        "hosts": "/hosts/",
        "hosts searched": f"/hosts/?q={sample.host.name[:2]}",
        "host": f"/hosts/{sample.host.pk}/",
        "guardians": "/guardians/",
        "guardians not escrowed": "/guardians/?escrow=no",
        "vms": "/vms/",
        "vms that start nowhere": "/vms/?starts=no",
        "vms searched": "/vms/?q=Win11&risk=any",
        "vms of a host": f"/vms/?host={sample.host.pk}",
        "vm": f"/vms/{sample.vm.pk}/",
        "risks": "/risks/?code=single_copy",
        "risks of a host": f"/risks/?code=single_copy&host={sample.host.pk}",
        "guardian": f"/guardians/{sample.pair.signing_thumbprint}-{sample.pair.encryption_thumbprint}/",
        "marks": "/marks/",
        "vault": "/vault/",
        "vault pair": f"/vault/{sample.pair.pk}/",
        "audit": "/audit/",
        "audit searched": "/audit/?q=ada",
        "audit filtered": "/audit/?actor=system&action=job.succeeded&object_type=job&since=2020-01-01&until=2099-12-31",
        "jobs": "/jobs/",
        "job": f"/jobs/{sample.job.pk}/",
        # The workflows' preflights, which read the host's last inventory and the stored analysis.
        "escrow_preflight": f"/jobs/new/escrow/?host={sample.host.pk}&guardian=all",
        "import_preflight": f"/jobs/new/import/?host={sample.host.pk}&pair={sample.pair.pk}",
        "restore_preflight": f"/jobs/new/restore/?host={sample.sealed.host_id}&vm={sample.sealed.name}",
        "reset_preflight": f"/jobs/new/reset/?host={sample.host.pk}",
        "reset_choose_host": "/jobs/new/reset/",
        "vtpm_preflight": f"/jobs/new/vtpm/?host={sample.host.pk}&vm={sample.vm.name}",
        "migrate_wizard": f"/jobs/new/migrate/?host={sample.host.pk}",
        "migrate_vm_chosen": f"/jobs/new/migrate/?host={sample.host.pk}&vm={sample.vm.name}&target={sample.target.pk}",
    }


def measure(client: Client, urls: dict[str, str]) -> dict[str, int]:
    counts = {}
    for name, url in urls.items():
        client.get(url)  # the first request of a page may fill caches (content types, sessions)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (name, url, response.status_code)
        counts[name] = len(queries)
    return counts


@dataclass
class Labs:
    small: Sample
    large: Sample


@pytest.fixture(scope="module")
def labs(django_db_setup: None, django_db_blocker: Any) -> Iterator[Labs]:
    """The two labs, generated in a transaction that the module's end rolls back (each test's own is nested in it)."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield Labs(small=generate("S", 4, 4), large=generate("L", 50, 50))
        transaction.set_rollback(True)


def test_every_page_costs_the_same_queries_at_4x4_and_at_50x50(labs: Labs, admin_client: Client) -> None:
    small = measure(admin_client, pages(labs.small))
    large = measure(admin_client, pages(labs.large))

    differ = {name: (small[name], large[name]) for name in small if small[name] != large[name]}
    assert not differ, f"queries at 4×4 vs 50×50: {differ}"


def test_long_lists_come_a_page_at_a_time(labs: Labs, admin_client: Client) -> None:
    assert VirtualMachine.objects.count() > 200 and AuditEvent.objects.count() > 200  # the large lab: 2,500 VMs
    first = admin_client.get("/vms/").content.decode()
    second = admin_client.get("/vms/?page=2").content.decode()
    assert 'rel="next"' in first and 'rel="prev"' in second
    assert first.count('<tr><td><a href="/vms/') == 100
    assert 'rel="next"' in admin_client.get("/audit/").content.decode()
