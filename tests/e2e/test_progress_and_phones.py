"""In Chromium: a job's steps advance live on its page while the job list shows it appear and progress without a
reload, and it ends "partly failed"; every main page of a generated lab fits a 390 px phone (the navigation folds
behind "Menu", tables scroll inside their cards); the time zone chosen in "My account" is the one a job page shows;
the audit trail is filtered and exported as CSV."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from console.models import AuditEvent
from hosts.inventory.models import VirtualMachine
from hosts.models import Host
from hosts.vault.models import EscrowedPair
from jobs.kinds import JobContext, JobFailed, JobPartlyFailed, job_kind
from jobs.models import Job, JobState
from jobs.registry import PlannedStep, each
from jobs.services import create_job
from tests.plugins.browser import ARTIFACTS, PHONE, WIDEST, login
from tests.plugins.jobs import wait_for_job

WORKER_JOB_KINDS = True  # the worker process imports this module for the kind below

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_for_gate(ctx: JobContext, name: str) -> None:
    gate = Path(ctx.params["gates"]) / name
    while not gate.exists():
        ctx.check_cancelled()
        time.sleep(0.02)


def restore_like(job: Job) -> list[PlannedStep]:
    return [PlannedStep("Read the host"), *each([f"Restore VM '{vm}'" for vm in job.vms])]


@job_kind(
    "test_restore_like", label="Restore VMs (test)", mutating=False, refresh_inventory=False, outline=restore_like
)
def restore_like_kind(ctx: JobContext) -> str:
    """Each step waits for its gate file, so the browser sees it running; the VM named "broken" fails."""
    with ctx.step("Read the host"):
        wait_for_gate(ctx, "read")
    done, failed = [], []
    for vm in ctx.vms:
        try:
            with ctx.step(f"Restore VM '{vm}'"):
                wait_for_gate(ctx, vm)
                if vm == "broken":
                    raise JobFailed("'broken' has no key protector the vault can open.")
            done.append(vm)
        except JobFailed as exc:
            failed.append(str(exc))
    if failed:
        raise JobPartlyFailed(f"{', '.join(done)} restored", " | ".join(failed))
    return f"{', '.join(done)} restored"


def open_gate(gates: Path, name: str) -> None:
    (gates / name).write_text("go")


def test_live_progress_on_the_job_page_and_the_job_list_without_reload(
    browser_page: Any, live_console: Any, celery_worker_process: Any, operator: Any, tmp_path: Path
) -> None:
    listing = browser_page
    login(listing, live_console, operator)
    listing.goto(f"{live_console.url}/jobs/")
    listing.evaluate("window.notReloaded = true")  # gone if the page reloads
    listing.wait_for_function("document.querySelector('[data-joblist]') !== null")
    time.sleep(0.5)  # the list's websocket is open

    job = create_job(
        operator, "test_restore_like", vms=["Win11-A", "broken", "Win11-C"], params={"gates": str(tmp_path)}
    )
    row = listing.locator(f'#job-list a[href="/jobs/{job.pk}/"]')
    row.wait_for(timeout=15_000)  # the new job's row arrived by itself
    progress = listing.locator(f'[data-job-progress="{job.pk}"]')
    listing.wait_for_function(
        f"document.querySelector('[data-job-progress=\"{job.pk}\"]').textContent.startsWith('Step 1 of 4')",
        timeout=15_000,
    )
    assert progress.inner_text() == "Step 1 of 4: Read the host"

    detail = listing.context.new_page()
    detail.goto(f"{live_console.url}/jobs/{job.pk}/")
    steps = detail.locator("#job-steps li")
    assert steps.count() == 4
    assert detail.locator("#job-steps li[aria-current=step]").inner_text().startswith("Read the host")
    assert "to come" in steps.nth(3).inner_text() and "3 of 3" in steps.nth(3).inner_text()
    first_elapsed = detail.inner_text("#job-ran")
    assert re.fullmatch(r"\d+ s", first_elapsed), first_elapsed
    # The elapsed time counts up while it runs.
    detail.wait_for_function(f"document.getElementById('job-ran').textContent !== {first_elapsed!r}", timeout=5000)

    open_gate(tmp_path, "read")
    detail.wait_for_function("document.querySelector('#job-headline').textContent.includes('(1 of 3)')")
    assert detail.inner_text("#job-headline") == "Step 2 of 4: Restore VM 'Win11-A' (1 of 3)"
    assert "done" in steps.nth(0).inner_text()
    listing.wait_for_function(
        f"document.querySelector('[data-job-progress=\"{job.pk}\"]').textContent.includes('(1 of 3)')"
    )
    shoot(detail, "progress-1-job-page-running")
    shoot(listing, "progress-2-job-list-running")

    for name in ("Win11-A", "broken", "Win11-C"):
        open_gate(tmp_path, name)
    assert wait_for_job(job).state == JobState.PARTLY_FAILED
    badge = detail.locator(f'[data-job-state="{job.pk}"]').first
    detail.wait_for_function(f"document.querySelector('[data-job-state=\"{job.pk}\"]').textContent === 'partly failed'")
    assert "partly_failed" in (badge.get_attribute("class") or "")
    assert "failed" in steps.nth(2).inner_text() and "done" in steps.nth(3).inner_text()
    listing.wait_for_function(
        f"document.querySelector('#job-list [data-job-state=\"{job.pk}\"]').textContent === 'partly failed'"
    )
    row_text = f"#job-list tr:has(a[href='/jobs/{job.pk}/'])"
    listing.wait_for_function(
        f"document.querySelector(\"{row_text}\").textContent.includes('Win11-A, Win11-C restored')"
    )
    assert "no key protector the vault can open" in listing.inner_text(row_text)  # what failed, in the row
    assert listing.evaluate("window.notReloaded") is True
    assert progress.inner_text() == ""  # no current step once it ended
    shoot(detail, "progress-3-job-page-partly-failed")
    shoot(listing, "progress-4-job-list-partly-failed")


def seeded_lab() -> dict[str, str]:
    """A generated lab (3 hosts × 3 VMs, jobs, audit events, vault pairs): the main pages with real content."""
    call_command("generate_lab", hosts=4, vms_per_host=3, seed=5, prefix="PH", jobs_per_host=3, audit_per_host=5)
    host = Host.objects.order_by("name").first()
    vm = VirtualMachine.objects.order_by("name").first()
    pair = EscrowedPair.objects.order_by("pk").first()
    job = Job.objects.order_by("-pk").first()
    assert host and vm and pair and job
    return {
        "dashboard": "/",
        "hosts": "/hosts/",
        "host": f"/hosts/{host.pk}/",
        "prepare": "/hosts/prepare/",
        "shares": "/hosts/shares/",
        "new-host": "/hosts/new/",
        "escrow": f"/jobs/new/escrow/?host={host.pk}",
        "vtpm": f"/jobs/new/vtpm/?host={host.pk}",
        "guardians": "/guardians/",
        "vms": "/vms/",
        "vm": f"/vms/{vm.pk}/",
        "risks": "/risks/",
        "vault": "/vault/",
        "vault-pair": f"/vault/{pair.pk}/",
        "jobs": "/jobs/",
        "job": f"/jobs/{job.pk}/",
        "refresh": "/jobs/refresh/",
        "audit": "/audit/",
        "users": "/users/",
        "account": "/account/",
        "api-tokens": "/account/tokens/",
        "reset": f"/jobs/new/reset/?host={host.pk}",
        "migrate": f"/jobs/new/migrate/?host={host.pk}",
    }


def test_every_main_page_fits_a_390_px_phone(browser_page: Any, live_console: Any, admin: Any) -> None:
    pages = seeded_lab()
    page = browser_page
    page.set_viewport_size(PHONE)
    login(page, live_console, admin)
    too_wide = {}
    for name, path in pages.items():
        response = page.goto(f"{live_console.url}{path}")
        assert response is not None and response.status == 200, f"{name}: {path}"
        shoot(page, f"phone-{name}")
        width = page.evaluate("document.scrollingElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide[name] = (width, page.evaluate(WIDEST))
    assert not too_wide, f"pages wider than {PHONE['width']} px: {too_wide}"

    # The navigation is folded behind "Menu", and marks the current page.
    page.goto(f"{live_console.url}/jobs/")
    assert not page.locator("nav[aria-label=Main]").is_visible()
    page.click(".nav-toggle")
    assert page.get_attribute(".nav-toggle", "aria-expanded") == "true"
    assert page.locator("nav[aria-label=Main] a[aria-current=page]").inner_text() == "Jobs"
    shoot(page, "phone-menu-open")
    page.click("nav[aria-label=Main] >> text=Vault")
    assert page.url.endswith("/vault/")

    # Copy buttons put a PowerShell block on the clipboard; the log wraps long lines on request.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_console.url)
    page.goto(f"{live_console.url}{pages['prepare']}")
    page.locator(".copy-button").first.click()
    page.wait_for_function("document.querySelector('.copy-button').textContent === 'Copied'", timeout=5000)
    assert page.evaluate("navigator.clipboard.readText()").startswith("Enable-PSRemoting")
    page.goto(f"{live_console.url}{pages['job']}")
    page.wait_for_selector(".jl-row")  # the viewer (a deferred script) has replayed the log
    page.check(".jl-wrap")
    assert "jl-wrapped" in (page.get_attribute("[data-joblog]", "class") or "")
    assert page.evaluate("getComputedStyle(document.querySelector('.jl-row')).whiteSpace") == "pre-wrap"
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]


def test_the_time_zone_chosen_in_my_account_is_the_one_a_job_page_shows(
    browser_page: Any, live_console: Any, viewer: Any, operator: Any
) -> None:
    job = Job.objects.create(kind="inventory_refresh", state=JobState.SUCCEEDED, requested_by=operator)
    Job.objects.filter(pk=job.pk).update(created_at="2026-07-01T10:00:00Z")
    page = browser_page
    login(page, live_console, viewer)
    page.click("#my-account")
    page.select_option("select[name=time_zone]", "Asia/Tokyo")
    with page.expect_navigation():
        page.click("#account-form button[type=submit]")
    assert "Asia/Tokyo" in page.inner_text(".messages") or "Asia Tokyo" in page.inner_text(".messages")
    page.goto(f"{live_console.url}/jobs/{job.pk}/")
    shown = page.locator("#job-card time").first
    assert shown.inner_text() == "2026-07-01 19:00:00 JST"
    assert shown.get_attribute("title") == "2026-07-01 10:00:00 UTC"
    shoot(page, "time-zone-job-page")


def test_the_browser_zone_is_stored_for_a_new_user(browser_page: Any, live_console: Any, viewer: Any) -> None:
    context = browser_page.context.browser.new_context(timezone_id="America/Sao_Paulo", bypass_csp=True)
    try:
        page = context.new_page()
        login(page, live_console, viewer)
        page.wait_for_function("!document.body.hasAttribute('data-time-zone-unset')")
        page.goto(f"{live_console.url}/account/")
        assert page.input_value("select[name=time_zone]") == "America/Sao_Paulo"
    finally:
        context.close()


def test_the_audit_trail_is_filtered_and_exported_as_csv(
    browser_page: Any, live_console: Any, admin: Any, operator: Any
) -> None:
    host = Host.objects.create(name="HV03", address="hv03.lab.test", port=5985, transport="http", auth="ntlm")
    AuditEvent.record(operator, "vm.tpm_disable", host, vms=["Win11-A"])
    AuditEvent.record(admin, "guardian.reset", host, guardian_name="UntrustedGuardian")
    for n in range(3):
        AuditEvent.record(operator, "job.cancel", None, n=n)
    page = browser_page
    login(page, live_console, admin)
    page.goto(f"{live_console.url}/audit/")
    page.fill("#audit-filters input[name=actor]", operator.username)
    page.select_option("#audit-filters select[name=action]", "vm.tpm_disable")
    with page.expect_navigation():
        page.click("#audit-filters button[type=submit]")
    rows = page.locator("#audit-events tbody tr")
    assert rows.count() == 1
    assert rows.first.inner_text().endswith(f"{operator.username} turned the vTPM off for Win11-A on HV03")
    assert rows.first.locator("a").get_attribute("href") == f"/hosts/{host.pk}/"
    shoot(page, "audit-filtered")
    with page.expect_download() as download:
        page.click("#audit-csv")
    text = Path(download.value.path()).read_text()
    exported = list(csv.reader(io.StringIO(text)))
    assert [row[3] for row in exported[1:]] == ["vm.tpm_disable"]
    assert re.search(r"turned the vTPM off for Win11-A on HV03", exported[1][4])
    assert AuditEvent.objects.filter(action="audit.export", username=admin.username).count() == 1
