"""In Chromium set to Japanese: an admin who never chose a language gets the console in Japanese (the browser's
language), sees the deleted-certificates host's risk on the dashboard, opens the reset, reads the sealed VMs and
the unchanged PowerShell, resets the guardian and watches the job log written in Japanese; then chooses English in
"My account" and the same pages speak English, while the finished job's log stays in the words it was written in.

Every page of the journey is also read for English left untranslated: a run of three English words in the visible
text (outside <code>, <pre> and what is marked translate="no") fails the test."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hosts.inventory.refresh import refresh_host
from jobs.models import Job
from tests.plugins.browser import ARTIFACTS, login, untranslated

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.browser_locale("ja-JP"), pytest.mark.timeout(180)]


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"japanese-{name}.png"), full_page=True)


def test_the_dashboard_to_reset_journey_in_japanese(
    browser_page: Any, live_console: Any, celery_worker_process: Any, sim_host: Any, registered_host: Any, admin: Any
) -> None:
    sim = sim_host("deleted-certs", name="HV03")
    host = registered_host(sim, name="HV03")
    assert refresh_host(host).ok
    page = browser_page
    login(page, live_console, admin)

    page.goto(f"{live_console.url}/")
    assert page.get_attribute("html", "lang") == "ja"
    assert "ダッシュボード" in page.locator("nav").inner_text()
    assert "ガーディアン" in page.locator("main").inner_text()
    assert untranslated(page) == []
    shoot(page, "dashboard")

    page.goto(f"{live_console.url}/jobs/new/reset/")
    assert untranslated(page) == []
    with page.expect_navigation():
        page.click("#reset-offers a[href*='host=']")
    sealed = page.locator("#sealed-vms").inner_text()
    assert "Win11-A" in sealed and "エスクロー" in sealed
    page.click("details.show-powershell summary")
    assert "Remove-HgsGuardian -Name 'UntrustedGuardian'" in page.locator("pre.powershell").inner_text()
    assert untranslated(page) == []
    shoot(page, "reset-preflight")
    with page.expect_navigation():
        page.click("#reset-submit")

    job = Job.objects.get(kind="reset_guardian")
    assert job.language == "ja"
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().ended", timeout=60_000)
    job.refresh_from_db()
    assert job.state == "succeeded", job.error
    first_line = job.lines.order_by("seq")[0]
    assert re.search(r"[ぁ-んァ-ン一-龥]", first_line.text), first_line.text
    assert re.search(r"[ぁ-んァ-ン一-龥]", page.locator("#job-summary").inner_text())
    assert untranslated(page) == []
    shoot(page, "reset-job")
    assert sim.model.guardian("UntrustedGuardian") is None

    page.goto(f"{live_console.url}/account/")
    page.select_option("select[name=language]", "en")
    with page.expect_navigation():
        page.click("#account-form button[type=submit]")
    assert page.get_attribute("html", "lang") == "en"
    page.goto(f"{live_console.url}/jobs/{job.pk}/")
    assert "Dashboard" in page.locator("nav").inner_text()
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().ended", timeout=30_000)
    # A log is written once, in its requester's words.
    assert first_line.text in page.locator("section.joblog").inner_text()
