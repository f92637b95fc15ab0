"""A job's log is written in the language of whoever started it, the runner's own lines included: a Japanese-speaking
operator's job says who asked for it and how it ended in Japanese, whoever reads it later."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from console.models import Preferences
from jobs.kinds import JobContext, job_kind
from jobs.models import Job, JobLogLine, JobState
from jobs.runner import execute


@job_kind("test_says_little", label="Says little (test)", mutating=False, refresh_inventory=False)
def says_little(ctx: JobContext) -> str:
    return ""


@pytest.mark.django_db(transaction=True)
def test_a_job_started_by_a_user_whose_language_is_japanese_logs_the_runners_lines_in_japanese(
    operator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jobs.models.send_run_task", lambda job_id: None)  # this test runs the job in-process
    Preferences.objects.create(user=operator, language="ja")
    first = Job.objects.create(kind="test_says_little", requested_by=operator, state=JobState.SUCCEEDED)
    client = Client()
    client.force_login(operator)
    assert client.post(f"/jobs/{first.pk}/rerun/").status_code == 302  # "Run again", from a page in Japanese
    job = Job.objects.exclude(pk=first.pk).get()
    assert job.language == "ja"
    assert execute(job.pk) == JobState.SUCCEEDED
    texts = list(JobLogLine.objects.filter(job=job).order_by("seq").values_list("text", flat=True))
    assert texts == ["otto が Says little (test) を要求しました", "ジョブ終了（成功）"]


@pytest.mark.django_db
def test_the_job_pages_speak_the_readers_language(operator: Any) -> None:
    Preferences.objects.create(user=operator, language="ja")
    job = Job.objects.create(
        kind="inventory_refresh",
        requested_by=operator,
        requested_by_name="otto",
        state=JobState.SUCCEEDED,
        results={"failed_hosts": ["HV02"]},
    )
    client = Client()
    client.force_login(operator)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "ジョブ #" in page and "インベントリの更新" in page and ">成功</span>" in page
    assert "更新されていません（接続不可）: HV02。" in page and "ログのダウンロード" in page
    listing = client.get("/jobs/").content.decode()
    assert "すべての種類" in listing and ">成功</span>" in listing
