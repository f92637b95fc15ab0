"""Automatic escrow: with the policy on, a guardian that appears on a host is in the vault after the next scheduled
refresh, escrowed by the console's own account, without anyone pressing a button; and never twice at once."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from console.models import AuditEvent
from hosts.inventory.reading import escrow_coverage
from hosts.inventory.refresh import refresh_host
from hosts.vault.models import EscrowedPair
from hypervsim.certs import guardian_pair
from jobs.models import Job, JobLogLine, JobState
from jobs.tasks import escrow_policy, refresh_all_inventory
from jobs.workflows.escrow.policy import escrow_missing, service_user
from tests.hosts.test_vault_support import assert_no_secret, temp_pfx_left
from tests.plugins.jobs import wait_for_job
from tests.plugins.users import client_for, make_user

POLICY_USER = "escrow-policy"


def add_guardian(sim: Any, name: str) -> tuple[str, str]:
    """A guardian made on the host after the console last looked (as New-HgsGuardian -GenerateCertificates would)."""
    signing, encryption = guardian_pair(name, sim.model.name, key_label=f"policy/{name}")
    with sim.model.changing():
        sim.model.add_guardian(name, signing, encryption)
    return signing.thumbprint, encryption.thumbprint


def scheduled_refresh() -> Job:
    """What beat does every INVENTORY_REFRESH_SECONDS, then the refresh job to its end."""
    job_id = refresh_all_inventory()
    assert job_id is not None
    return wait_for_job(Job.objects.get(pk=job_id))


def policy_jobs(refresh: Job) -> list[Job]:
    return [wait_for_job(Job.objects.get(pk=pk)) for pk in refresh.results.get("escrow_jobs", [])]


@pytest.fixture
def policy_worker(celery_worker_process: Any, settings: Any) -> Any:
    """The session's worker replaced by one started with the policy on (it is deployment configuration: the worker
    reads it from its environment, as the web process does)."""
    settings.ESCROW_POLICY = True
    celery_worker_process.stop()  # the next test's fixture starts the usual one again
    return celery_worker_process.pool.start_another(CONSOLE_ESCROW_POLICY="1")


@pytest.mark.worker
def test_a_new_guardian_is_in_the_vault_after_the_next_scheduled_run(
    policy_worker: Any, transactional_db: None, sim_host: Any, registered_host: Any
) -> None:
    sim = sim_host("healthy")
    registered_host(sim)
    first = scheduled_refresh()
    assert first.state == JobState.SUCCEEDED, first.error
    [escrow] = policy_jobs(first)
    assert escrow.state == JobState.SUCCEEDED, escrow.error
    assert escrow.requested_by is not None and escrow.requested_by.username == POLICY_USER
    assert EscrowedPair.objects.count() == 1

    signing, encryption = add_guardian(sim, "Lab-Extra")
    second = scheduled_refresh()
    [new] = policy_jobs(second)  # only the new guardian: the first is in the vault already
    assert new.state == JobState.SUCCEEDED, new.error
    pair = EscrowedPair.objects.get(signing_thumbprint=signing, encryption_thumbprint=encryption)
    assert pair.guardian_name == "Lab-Extra" and pair.created_by is not None
    assert pair.created_by.username == POLICY_USER and temp_pfx_left(sim) == []

    third = scheduled_refresh()
    assert policy_jobs(third) == []  # nothing left to escrow: no job at all
    runs = AuditEvent.objects.filter(action="escrow_policy.run").order_by("pk")
    assert [e.username for e in runs] == [POLICY_USER, POLICY_USER]
    assert [e.detail["jobs"] for e in runs] == [[escrow.pk], [new.pk]]
    escrows = AuditEvent.objects.filter(action="vault.escrow", username=POLICY_USER)
    assert escrows.count() == 2
    password = pair.open()[2]
    lines = " ".join(JobLogLine.objects.filter(job__in=[escrow, new, second]).values_list("text", flat=True))
    audit = " ".join(str(e.detail) for e in AuditEvent.objects.all())
    assert_no_secret(password, lines, audit, str(new.params), str(new.results))
    page = client_for(make_user("ada", "admin")).get("/").content.decode()
    assert 'id="escrow-coverage"' in page and "Escrow coverage: 100%" in page
    assert escrow_coverage().escrowed == escrow_coverage().total == 3  # healthy's three vTPM VMs


# -- without a worker: what the policy decides ------------------------------------------------------------------


def test_policy_off_starts_nothing(db: None, settings: Any, sim_host: Any, registered_host: Any) -> None:
    settings.ESCROW_POLICY = False
    host = registered_host(sim_host("healthy"))
    assert refresh_host(host).ok
    assert escrow_missing("test") == [] and escrow_policy() == []
    assert Job.objects.count() == 0 and not get_user_model().objects.filter(username=POLICY_USER).exists()
    assert not AuditEvent.objects.filter(action="escrow_policy.run").exists()


def test_no_second_job_while_one_is_queued_for_the_same_guardian(
    db: None, settings: Any, sim_host: Any, registered_host: Any
) -> None:
    settings.ESCROW_POLICY = True
    sim = sim_host("healthy")
    host = registered_host(sim)
    add_guardian(sim, "Second")
    assert refresh_host(host).ok
    first = escrow_missing("schedule")
    assert sorted(job.params["guardian_name"] for job in first) == ["Second", "UntrustedGuardian"]
    assert all(job.state == JobState.QUEUED and job.hosts.get() == host for job in first)
    assert escrow_missing("schedule") == [] and escrow_policy() == []  # both still queued: nothing new
    Job.objects.filter(pk=first[0].pk).update(state=JobState.FAILED)
    [again] = escrow_missing("schedule")  # a failed attempt is tried again at the next run
    assert again.params["signing_thumbprint"] == first[0].params["signing_thumbprint"]


def test_the_service_user_is_an_operator_that_cannot_log_in(db: None, settings: Any) -> None:
    user = service_user()
    assert user.username == POLICY_USER and not user.has_usable_password()
    assert user.has_perm("console.run_jobs") and not user.has_perm("console.download_vault")
    user.set_password("set-by-hand-0123")
    user.save()
    again = service_user()  # the next run takes it away again, and the login page refuses it
    assert not again.has_usable_password() and not again.check_password("set-by-hand-0123")
    response = Client().post("/login/", {"username": POLICY_USER, "password": "set-by-hand-0123"})
    assert "_auth_user_id" not in response.client.session


def test_an_admin_pauses_the_policy_by_deactivating_its_account(
    db: None, settings: Any, sim_host: Any, registered_host: Any
) -> None:
    settings.ESCROW_POLICY = True
    host = registered_host(sim_host("healthy"))
    assert refresh_host(host).ok
    user = service_user()
    user.is_active = False
    user.save()
    assert escrow_missing("schedule") == [] and Job.objects.count() == 0
    user.is_active = True
    user.save()
    assert len(escrow_missing("schedule")) == 1


@pytest.mark.worker
def test_policy_off_a_scheduled_refresh_escrows_nothing(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any
) -> None:
    registered_host(sim_host("healthy"))
    refresh = scheduled_refresh()  # the session's worker: the policy is off, as by default
    assert refresh.state == JobState.SUCCEEDED and "escrow_jobs" not in refresh.results
    assert list(Job.objects.values_list("kind", flat=True)) == ["inventory_refresh"]
    assert EscrowedPair.objects.count() == 0


def test_unreachable_holder_gets_no_job(db: None, settings: Any, sim_host: Any, registered_host: Any) -> None:
    settings.ESCROW_POLICY = True
    sim = sim_host("healthy")
    host = registered_host(sim)
    assert refresh_host(host).ok
    sim.down()
    assert not refresh_host(host).ok  # stale now: its last inventory is kept, but the job could not reach it
    assert escrow_missing("schedule") == []
