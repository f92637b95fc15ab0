"""In Chromium: an admin registers a simulated host, tests it, refreshes the inventories of the three seed
scenarios (healthy, reinstalled, deleted certificates) in jobs and sees each one's risks on the dashboard, each
with the action that fixes it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.plugins.browser import ARTIFACTS, login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def risk_count(page: Any, code: str) -> int:
    return int(page.locator(f'[data-risk="{code}"] .count').inner_text())


def refresh_in_browser(page: Any, url: str) -> None:
    """Refresh is a job: the button opens the job's page, whose live log says when it is done."""
    page.goto(url)
    with page.expect_navigation():
        page.click("#refresh-inventory")
    assert re.search(r"/jobs/\d+/$", page.url)
    page.wait_for_function("!document.getElementById('job-summary').hidden", timeout=30_000)
    assert page.inner_text("#job-summary") == "Refreshed 1 of 1 host"
    page.goto(url)


def test_the_dashboard_shows_the_risks_of_the_three_seed_scenarios(
    celery_worker_process: Any,
    browser_page: Any,
    live_console: Any,
    admin: Any,
    sim_host: Any,
    registered_host: Any,
) -> None:
    healthy = sim_host(scenario="healthy", name="HV01")
    reinstalled = registered_host(sim_host(scenario="reinstalled", name="HV02"), name="HV02")
    deleted = registered_host(sim_host(scenario="deleted-certs", name="HV03"), name="HV03")
    page = browser_page
    login(page, live_console, admin)

    page.goto(f"{live_console.url}/hosts/new/")
    page.fill("input[name=name]", healthy.name)
    page.fill("input[name=address]", healthy.address)
    page.check("input[name=transport][value=http]")
    page.fill("input[name=port]", str(healthy.port))
    page.select_option("select[name=auth]", "ntlm")
    page.fill("input[name=username]", healthy.user)
    page.fill("input[name=password]", healthy.password)
    with page.expect_navigation():
        page.click("main form button[type=submit]")  # not the top bar's "Log out" button
    assert "registered" in page.inner_text(".messages")
    with page.expect_navigation():
        page.click("#test-connection")
    assert page.locator("#last-test .badge.ok").count() == 1
    hv01_url = page.url
    refresh_in_browser(page, hv01_url)
    shoot(page, "1-hv01-refreshed")
    assert "Win11-A" in page.inner_text("#host-vms")

    refresh_in_browser(page, f"{live_console.url}/hosts/{reinstalled.pk}/")
    refresh_in_browser(page, f"{live_console.url}/hosts/{deleted.pk}/")
    shoot(page, "2-hv03-refreshed")

    page.goto(f"{live_console.url}/")
    shoot(page, "3-dashboard")
    assert risk_count(page, "single_copy") == 3  # HV01's VMs: keys there only, not escrowed
    assert risk_count(page, "vm_cannot_start") >= 4  # HV02's orphans and HV03's VMs without keys
    assert risk_count(page, "guardian_without_keys") == 1  # HV03's UntrustedGuardian
    text = page.inner_text("#risk-single_copy")
    assert "one reinstall away from loss" in text
    assert "TPM changes will fail" in page.inner_text("#risk-guardian_without_keys")
    for name in ("HV01", "HV02", "HV03"):
        assert page.locator(f'#dashboard-hosts tr[data-host="{name}"] .badge.ok').count() == 1

    assert page.locator('#risk-guardian_without_keys a[data-action="reset"]').count() == 1
    with page.expect_navigation():
        page.click('#risk-vm_cannot_start a[data-action="rescue"] >> nth=0')  # no backup anywhere: no restore
    assert "/jobs/new/rescue/?host=" in page.url and "Page not found" not in page.content()
    shoot(page, "3b-rescue-from-a-risk")

    page.goto(f"{live_console.url}/")
    page.click("#risk-vm_cannot_start a >> nth=0")
    page.wait_for_url(re.compile(r".*/vms/\d+/$"))
    shoot(page, "4-vm-cannot-start")
    assert "can start on no registered host" in page.content()
    assert page.locator("#can-start .badge.ok").count() == 0
    assert healthy.password not in page.content()
