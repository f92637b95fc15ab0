"""A job speaks the language of whoever asked for it: a reset started from the page by an admin who chose Japanese
logs, titles its steps and sums up in Japanese, for every reader; its outline matches the steps it recorded."""

from __future__ import annotations

from typing import Any

import pytest

from console.models import Preferences
from jobs.models import Job, JobLogLine, JobState
from jobs.runner import execute
from tests.plugins.users import client_for

GUARDIAN = "UntrustedGuardian"


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.hosts.test_vault_support")
def test_a_reset_asked_for_in_japanese_logs_and_sums_up_in_japanese(
    sim_host: Any, registered_host: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This test runs the job in-process: no task, so no worker another test left running takes it first.
    monkeypatch.setattr("jobs.models.send_run_task", lambda job_id: None)
    host = registered_host(sim_host("deleted-certs"))
    Preferences.objects.update_or_create(user=admin, defaults={"language": "ja"})
    response = client_for(admin).post("/jobs/new/reset/", {"host": host.pk, "guardian": GUARDIAN})
    job = Job.objects.get()
    assert response.status_code == 302 and job.language == "ja"
    assert execute(job.pk) == JobState.SUCCEEDED
    job.refresh_from_db()
    lines = list(JobLogLine.objects.filter(job=job).order_by("seq").values_list("text", flat=True))
    logged = "\n".join(lines)
    assert f"から「{GUARDIAN}」を削除しました" in job.summary and "TPM の変更は再び機能します" in job.summary
    assert f"▶ {host.name} で「{GUARDIAN}」にシールドされているものを読み取る" in lines
    assert "にシールドされています: どこにもエスクローされていません" in logged
    assert f"元に戻すには: /jobs/new/reset/undo/?job={job.pk}" in lines
    assert job.results["next_label"] == "このリセットを元に戻す…"
    assert "Removed" not in job.summary and "To undo" not in logged
    # The outline is made in the job's language too, so its planned steps are the ones the run recorded.
    steps = job.progress().steps
    assert [step.state for step in steps] == ["done"] * 4
    assert steps[0].title == f"{host.name} で「{GUARDIAN}」にシールドされているものを読み取る"
