"""Reset, undo, vTPM and migration as jobs: created as the pages create them, run by a real Celery worker against
simulated hosts; no password or private key in any log line, result, page or audit event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from console.models import AuditEvent
from hosts.vault.models import EscrowedPair
from jobs.models import Job, JobLogLine, JobState
from jobs.services import create_job, rerun_preflight_url
from tests.hosts.test_vault_support import assert_no_secret
from tests.plugins.jobs import log_integrity, wait_for_job
from tests.plugins.sim import kind_to_the_second_hop
from tests.plugins.users import client_for
from tests.workflows.test_reset import lose_signing_key_but_keep_an_older_pair
from tests.workflows.test_restore_worker import everything_shown

pytestmark = pytest.mark.worker


def log_of(job: Job) -> str:
    return "\n".join(JobLogLine.objects.filter(job=job).order_by("seq").values_list("text", flat=True))


def pages_of(user: Any, job: Job) -> str:
    client = client_for(user)
    bodies = []
    for url in (f"/jobs/{job.pk}/", f"/jobs/{job.pk}/log.txt", "/audit/"):
        response = client.get(url)
        assert response.status_code == 200, url
        bodies.append(response.getvalue().decode())
    return " ".join(bodies)


def assert_nothing_secret(user: Any, job: Job, *secrets: str) -> None:
    # The worker writes the job's closing audit event with its final state, so the audit trail read here is complete.
    assert AuditEvent.objects.filter(action=f"job.{job.state}", object_id=str(job.pk)).exists()
    shown = everything_shown(job) + pages_of(user, job)
    for secret in (*secrets, "PRIVATE KEY"):
        assert_no_secret(secret, shown)


def test_reset_job_and_its_undo_on_the_deleted_certs_host(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any, admin: Any
) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    before = sim.model.guardian("UntrustedGuardian").signing.thumbprint
    params = {"guardian_name": "UntrustedGuardian"}
    reset = wait_for_job(create_job(admin, "reset_guardian", hosts=[host], params=params))
    assert reset.state == JobState.SUCCEEDED, reset.error
    assert sim.model.guardian("UntrustedGuardian") is None and "TPM changes work again" in reset.summary
    assert reset.results["removed_guardian"]["signing_thumbprint"] == before
    assert reset.results["next_url"] == f"/jobs/new/reset/undo/?job={reset.pk}"  # the job page's "Undo" button
    assert AuditEvent.objects.get(action="guardian.reset").detail["signing_thumbprint"] == before
    logged = log_of(reset)  # what the plan and the kind log through their loggers lands in the job's log
    assert "is sealed to it: NOT escrowed anywhere" in logged and "To undo: /jobs/new/" in logged
    undo = wait_for_job(create_job(admin, "undo_guardian_reset", hosts=[host], params={"reset_job": reset.pk}))
    assert undo.state == JobState.SUCCEEDED, undo.error
    assert sim.model.guardian("UntrustedGuardian").signing.thumbprint == before
    assert AuditEvent.objects.filter(action="guardian.reset_undone", username=admin.username).exists()
    assert_nothing_secret(admin, reset, sim.password)
    assert_nothing_secret(admin, undo, sim.password)
    # "Run again" of either goes back to its page, where the admin confirms again.
    assert rerun_preflight_url(reset) == f"/jobs/new/reset/?host={host.pk}&guardian=UntrustedGuardian"
    assert rerun_preflight_url(undo) == f"/jobs/new/reset/undo/?job={reset.pk}"


def test_reset_job_escrows_first_and_keeps_the_pfx_password_secret(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any, admin: Any
) -> None:
    sim = sim_host("healthy")
    lose_signing_key_but_keep_an_older_pair(sim)
    host = registered_host(sim)
    job = wait_for_job(create_job(admin, "reset_guardian", hosts=[host]))
    assert job.state == JobState.SUCCEEDED, job.error
    pair = EscrowedPair.objects.get()
    assert_nothing_secret(admin, job, pair.open()[2], sim.password)


def test_vtpm_job_turns_the_tpm_off_after_removing_a_saved_state(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any, admin: Any
) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    params = {"action": "disable", "confirmed": ["Win11-B", "Win11-C"], "remove_saved_state": ["Win11-C"]}
    job = wait_for_job(create_job(admin, "vtpm", hosts=[host], vms=["Win11-B", "Win11-C"], params=params))
    assert job.state == JobState.SUCCEEDED, job.error
    assert not sim.model.vm("Win11-B").tpm_enabled and not sim.model.vm("Win11-C").tpm_enabled
    assert sim.model.vm("Win11-C").state == "Off"
    assert AuditEvent.objects.get(action="vm.tpm_disable").detail["vms"] == ["Win11-B: TPM off", "Win11-C: TPM off"]
    assert "Discarded the saved state of 'Win11-C'" in log_of(job)
    assert_nothing_secret(admin, job, sim.password)


def test_migration_job_carries_the_owner_and_runs_the_vm_on_the_target(
    celery_worker_process: Any, transactional_db: None, sim_lab: Any, registered_host: Any, admin: Any
) -> None:
    # The worker's carry over the export method from NTLM sessions: not a second-hop story.
    lab = kind_to_the_second_hop(sim_lab(scenarios=["migration"]))
    source, target = (registered_host(h) for h in lab.hosts)
    # The target never held the owner's pair: carrying its keys there is an admin's migration.
    params = {"method": "export", "unseal": "carry", "start": True, "source_after": "off"}
    job = wait_for_job(create_job(admin, "migrate_vm", hosts=[source, target], vms=["Win11-B"], params=params))
    assert job.state == JobState.SUCCEEDED, job.error
    assert lab.hosts[1].model.vm("Win11-B").state == "Running"
    pair = EscrowedPair.objects.get()
    assert AuditEvent.objects.get(action="vm.migrated").detail["source"] == "HV01"
    placed = AuditEvent.objects.get(action="vault.placed")  # the carry put the owner's keys on HV02
    assert placed.object_id == str(pair.pk) and placed.detail["host"] == str(target) and placed.username == "ada"
    assert_nothing_secret(admin, job, pair.open()[2], lab.hosts[0].password)


def test_migration_job_with_the_target_down_changes_nothing(
    celery_worker_process: Any,
    transactional_db: None,
    sim_lab: Any,
    registered_host: Any,
    operator: Any,
    record_property: Callable[[str, object], None],
) -> None:
    lab = sim_lab(scenarios=["migration"])
    source, target = (registered_host(h) for h in lab.hosts)
    lab.hosts[1].down()
    job = wait_for_job(create_job(operator, "migrate_vm", hosts=[source, target], vms=["Win11-B"], params={}))
    lab.hosts[1].up()
    assert job.state == JobState.FAILED
    assert "Nothing was changed" in job.error and "HV02" in job.error
    assert lab.hosts[0].model.vm("Win11-B").state == "Off" and EscrowedPair.objects.count() == 0
    integrity = log_integrity(job)
    assert integrity["lost_lines"] == integrity["duplicated_lines"] == 0
    record_property("fault", {"case": "host down", **integrity})
