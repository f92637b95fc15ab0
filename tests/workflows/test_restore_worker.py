"""The guardian jobs end to end: pages create them, a real Celery worker runs them against a simulated host."""

from __future__ import annotations

from typing import Any

import pytest

from console.models import AuditEvent
from hosts.vault.models import EscrowedPair
from jobs.models import Job, JobLogLine, JobState
from jobs.services import create_job
from tests.hosts.test_vault_support import assert_no_secret, temp_pfx_left
from tests.plugins.jobs import wait_for_job
from tests.plugins.sim import reinstalled_with_backup_in_vault
from tests.plugins.users import client_for

pytestmark = pytest.mark.worker


def everything_shown(job: Job) -> str:
    lines = " ".join(JobLogLine.objects.filter(job=job).values_list("text", flat=True))
    audit = " ".join(str(e.detail) for e in AuditEvent.objects.all())
    return f"{lines} {job.summary} {job.error} {job.params} {job.results} {audit}"


def escrow_params(sim: Any) -> dict[str, str]:
    guardian = sim.model.guardian("UntrustedGuardian")
    return {"signing_thumbprint": guardian.signing.thumbprint, "encryption_thumbprint": guardian.encryption.thumbprint}


def test_restore_job_brings_the_vm_back_after_reinstall(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any, admin: Any
) -> None:
    sim, host, _pair, password = reinstalled_with_backup_in_vault(sim_host, registered_host, admin)
    job = wait_for_job(create_job(admin, "restore_vm", hosts=[host], vms=["Win11-A"]))
    assert job.state == JobState.SUCCEEDED, job.error
    assert sim.model.vm("Win11-A").state == "Running"
    assert temp_pfx_left(sim) == []
    assert_no_secret(password, everything_shown(job))
    pages = client_for(admin)
    for url in (f"/jobs/{job.pk}/", f"/jobs/{job.pk}/log.txt", "/audit/", "/vault/"):
        response = pages.get(url)
        assert response.status_code == 200, url
        chunks = getattr(response, "streaming_content", None) if response.streaming else None
        body = b"".join(chunks if chunks is not None else [response.content]).decode()
        assert_no_secret(password, body)
        assert_no_secret("PRIVATE KEY", body)


def test_escrow_job_puts_the_healthy_guardian_in_the_vault(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any, operator: Any
) -> None:
    sim = sim_host("healthy")
    host = registered_host(sim)
    params = {**escrow_params(sim), "guardian_name": "UntrustedGuardian"}
    job = wait_for_job(create_job(operator, "escrow_guardian", hosts=[host], params=params))
    assert job.state == JobState.SUCCEEDED, job.error
    pair = EscrowedPair.objects.get()
    assert job.results["vault_entry"] == pair.pk and temp_pfx_left(sim) == []
    _signing, _encryption, password = pair.open()
    assert_no_secret(password, everything_shown(job))


def test_escrow_job_fails_clearly_when_the_keys_are_gone(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any, operator: Any
) -> None:
    sim = sim_host("deleted-certs")
    host = registered_host(sim)
    job = wait_for_job(create_job(operator, "escrow_guardian", hosts=[host], params=escrow_params(sim)))
    assert job.state == JobState.FAILED
    assert "cannot be escrowed" in job.error and EscrowedPair.objects.count() == 0


def test_import_job_cut_off_mid_way_fails_clearly_and_a_second_run_finishes(
    celery_worker_process: Any, transactional_db: None, sim_host: Any, registered_host: Any, admin: Any
) -> None:
    sim, host, pair, password = reinstalled_with_backup_in_vault(sim_host, registered_host, admin)
    sim.faults.drop_on_cmdlet = "Import-PfxCertificate"
    job = wait_for_job(create_job(admin, "import_guardian", hosts=[host], params={"vault_entry": pair.pk}))
    assert job.state == JobState.FAILED
    assert "Run the import again" in job.error and "vault entry is unchanged" in job.error
    assert temp_pfx_left(sim) == [] and EscrowedPair.objects.get().open()[2] == password
    sim.faults.clear()
    again = wait_for_job(create_job(admin, "import_guardian", hosts=[host], params={"vault_entry": pair.pk}))
    assert again.state == JobState.SUCCEEDED, again.error
    assert sim.model.guardian(again.results["guardian_name"]) is not None
    assert_no_secret(password, everything_shown(job), everything_shown(again))
