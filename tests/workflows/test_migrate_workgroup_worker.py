"""The workgroup migration as a job, started as the wizard starts it and run by a real Celery worker against two
simulated workgroup hosts (NTLM sessions, the second hop refused as on Windows): it moves the VM, and with wrong
share credentials it fails with the remedy and the mapping removed. The share account's password travels only as a
PSCredential: it is in no job log line, parameter, result, audit event, job page, log download or wizard page."""

from __future__ import annotations

from typing import Any

import pytest

from console.models import AuditEvent
from jobs.models import JobState
from jobs.services import create_job
from tests.hosts.test_vault_support import assert_no_secret
from tests.plugins.jobs import wait_for_job
from tests.plugins.users import client_for
from tests.plugins.worlds import ACCOUNT, FOLDER, PASSWORD, SHARE, ntlm_pair, serve_source_share
from tests.workflows.test_reset_worker import assert_nothing_secret, log_of

pytestmark = pytest.mark.worker

PARAMS = {"method": "pull", "unseal": "authorise", "start": True, "source_after": "off", "share": SHARE}


@pytest.fixture
def workgroup(transactional_db: None, sim_lab: Any, registered_host: Any) -> Any:
    lab = ntlm_pair(sim_lab, registered_host)
    serve_source_share(lab)
    return lab


def wizard_page(user: Any, lab: Any) -> str:
    choose = {"form": "1", "host": lab.source_host.pk, "target": lab.target_host.pk, "vm": "Win11-B", "preview": "1"}
    page = client_for(user).get("/jobs/new/migrate/", choose | PARAMS | {"start": "on"}).content.decode()
    assert 'data-method="pull" data-runnable="yes"' in page and 'id="migrate-submit"' in page
    assert "New-PSDrive -Name" in page and "Get-Credential -UserName &#x27;HV01\\vmshare&#x27;" in page
    return page


def test_the_workgroup_job_moves_the_vm_and_the_share_password_is_nowhere(
    celery_worker_process: Any, workgroup: Any, operator: Any
) -> None:
    page = wizard_page(operator, workgroup)
    hosts = [workgroup.source_host, workgroup.target_host]
    job = wait_for_job(create_job(operator, "migrate_vm", hosts=hosts, vms=["Win11-B"], params=PARAMS))
    assert job.state == JobState.SUCCEEDED, job.error
    assert workgroup.hosts[1].model.vm("Win11-B").state == "Running"
    assert "Remove the mapping" in log_of(job)
    assert AuditEvent.objects.get(action="vm.migrated").detail["method"] == "pull"
    assert_nothing_secret(operator, job, PASSWORD, workgroup.hosts[0].password)
    assert_no_secret(PASSWORD, page)


def test_wrong_share_credentials_fail_the_job_with_the_remedy_and_no_password_anywhere(
    celery_worker_process: Any, workgroup: Any, operator: Any
) -> None:
    workgroup.hosts[0].model.shares["vmexports"].accounts = {ACCOUNT: "rotated-on-the-host"}
    hosts = [workgroup.source_host, workgroup.target_host]
    job = wait_for_job(create_job(operator, "migrate_vm", hosts=hosts, vms=["Win11-B"], params=PARAMS))
    assert job.state == JobState.FAILED
    assert "The user name or password is incorrect." in job.error and "(Hosts › Lab shares)" in job.error
    assert "The VM is on HV01 (Off)" in job.error
    sent = [c["cmdlet"] for c in workgroup.hosts[1].command_log]
    assert sent.count("New-PSDrive") == 1 and sent.index("New-PSDrive") < sent.index("Remove-PSDrive")
    assert workgroup.hosts[0].model.files.snapshot(FOLDER) == {}  # the export was removed again
    assert_nothing_secret(operator, job, PASSWORD, "rotated-on-the-host")
