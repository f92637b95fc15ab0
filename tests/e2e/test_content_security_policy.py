"""In Chromium with the Content-Security-Policy enforced (the other browser tests bypass it for their own in-page
probes): the pages still work — logging in, the live log over its websocket, a host picker that submits itself —
and the browser reports no violation."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from hosts.models import Host
from jobs.models import Job, JobLogLine, JobState
from tests.plugins.browser import login

pytestmark = [pytest.mark.e2e, pytest.mark.enforce_csp]


# Database work happens in fixtures listed before `browser_page`: once Playwright's loop runs in this thread, Django
# refuses ORM calls from it.


@pytest.fixture
def finished_job(operator: Any) -> Job:
    job = Job.objects.create(kind="inventory_refresh", state=JobState.SUCCEEDED, requested_by=operator)
    now = timezone.now()
    JobLogLine.objects.bulk_create(
        JobLogLine(job=job, seq=seq, at=now, level="info", text=f"policy line {seq}") for seq in range(1, 6)
    )
    Job.objects.filter(pk=job.pk).update(last_seq=5, finished_at=now)
    return job


@pytest.fixture
def idle_host(db: None) -> Host:
    host = Host(name="HV-CSP", address="127.0.0.1", port=9, transport="http", auth="negotiate", username="lab")
    host.set_password("not-used-here-4411")
    host.full_clean()
    host.save()
    return host


def test_the_console_works_under_its_own_policy(
    live_console: Any, operator: Any, finished_job: Job, idle_host: Host, browser_page: Any
) -> None:
    page = browser_page
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text))
    page.on("pageerror", lambda error: complaints.append(str(error)))

    login(page, live_console, operator)
    response = page.goto(f"{live_console.url}/jobs/{finished_job.pk}/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.locator(".jl-row", has_text="policy line 5").wait_for()  # joblog.js, its websocket, its styles
    assert page.locator(".jl-view").evaluate("view => getComputedStyle(view).overflowY") == "auto"

    page.goto(f"{live_console.url}/jobs/new/escrow/")
    with page.expect_navigation():
        page.select_option("select[data-autosubmit]", str(idle_host.pk))  # console.js submits the picker's form
    assert f"host={idle_host.pk}" in page.url

    violations = [text for text in complaints if "Content Security Policy" in text]
    assert not violations, violations


def test_the_api_docs_work_under_the_consoles_policy(live_console: Any, viewer: Any, browser_page: Any) -> None:
    """Swagger UI from the console's own static files (drf-spectacular-sidecar), its start-up script a file: it
    lists the API's operations, and the browser reports no violation of the unchanged policy."""
    page = browser_page
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text))
    page.on("pageerror", lambda error: complaints.append(str(error)))
    login(page, live_console, viewer)
    response = page.goto(f"{live_console.url}/api/docs/")
    assert "style-src 'self'" in response.headers["content-security-policy"]
    page.locator("#operations-jobs-jobs_start").wait_for()
    violations = [text for text in complaints if "Content Security Policy" in text]
    assert not violations, violations
