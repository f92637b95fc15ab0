"""The live log in Japanese, in Chromium: the words static/joblog.js writes come from Django's JavaScript catalogue
(/jsi18n/, deferred before the script), and the socket's states from the viewer's language."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from console.models import Preferences
from jobs.models import Job, JobLogLine, JobState
from tests.plugins.browser import login

pytestmark = pytest.mark.e2e


def test_a_japanese_speaking_viewer_reads_the_live_log_in_japanese(
    browser_page: Any, live_console: Any, viewer: Any
) -> None:
    Preferences.objects.create(user=viewer, language="ja")
    job = Job.objects.create(kind="inventory_refresh", state=JobState.SUCCEEDED, requested_by_name="otto", last_seq=3)
    now = timezone.now()
    JobLogLine.objects.bulk_create(
        [
            JobLogLine(job=job, seq=1, at=now, level="info", text="one"),
            JobLogLine(job=job, seq=2, at=now, level="info", text="two"),
            JobLogLine(job=job, seq=3, at=now, level="error", text="three", link="/jobs/"),
        ]
    )
    page = browser_page
    login(page, live_console, viewer)
    page.goto(f"{live_console.url}/jobs/{job.pk}/")
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().ended")
    assert page.locator(".jl-status").inner_text() == "完了"
    assert page.locator(".jl-count").inner_text() == "3 行"
    assert page.locator(".jl-link").inner_text() == "修正ページを開く"
    assert page.locator(f'[data-job-state="{job.pk}"]').inner_text() == "成功"
