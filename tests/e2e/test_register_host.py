"""In Chromium: an admin logs in, registers a simulated Hyper-V host through the form, and tests the connection."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.browser import ARTIFACTS, login

pytestmark = pytest.mark.e2e


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"register_host-{name}.png"), full_page=True)


# Database work happens in fixtures listed before `browser_page`: once Playwright's loop runs in this thread, Django
# refuses ORM calls from it.


@pytest.fixture
def host_with_wrong_password(sim_host: Any, registered_host: Any) -> Any:
    return registered_host(sim_host(scenario="healthy"), auth="ntlm", password="not-the-password")


def test_an_admin_registers_a_simulated_host_and_the_connection_test_goes_green(
    live_console: Any, admin: Any, sim_host: Any, browser_page: Any
) -> None:
    sim = sim_host(scenario="healthy")
    page = browser_page
    login(page, live_console, admin)

    page.goto(f"{live_console.url}/hosts/prepare/")
    assert page.locator("pre.powershell").count() >= 4
    shoot(page, "0-prepare")
    page.goto(f"{live_console.url}/hosts/")
    page.click("text=Register a host")
    page.fill("input[name=name]", sim.name)
    page.fill("input[name=address]", sim.address)
    page.check("input[name=transport][value=http]")
    page.fill("input[name=port]", str(sim.port))
    page.select_option("select[name=auth]", "ntlm")
    page.fill("input[name=username]", sim.user)
    page.fill("input[name=password]", sim.password)
    shoot(page, "1-form")
    with page.expect_navigation():
        page.click("#save-host")
    assert "/hosts/" in page.url and "registered" in page.inner_text(".messages")

    with page.expect_navigation():
        page.click("#test-connection")
    shoot(page, "2-tested")
    assert page.locator("#last-test .badge.ok").inner_text() == "connected"
    assert sim.name in page.inner_text(".messages .msg-success")
    assert sim.password not in page.content()
    page.goto(f"{live_console.url}/hosts/")
    assert page.locator("table.grid .badge.ok").inner_text() == "reachable"
    assert "connection test just now" in page.inner_text("table.grid td.contact")
    shoot(page, "3-list")


def test_a_wrong_password_shows_the_401_message_in_red(
    live_console: Any, admin: Any, host_with_wrong_password: Any, browser_page: Any
) -> None:
    host = host_with_wrong_password
    page = browser_page
    login(page, live_console, admin)
    page.goto(f"{live_console.url}/hosts/{host.pk}/")
    with page.expect_navigation():
        page.click("#test-connection")
    shoot(page, "4-wrong-password")
    assert "401 Unauthorized" in page.inner_text(".messages .msg-error")
    assert page.locator("#last-test .badge.bad").inner_text() == "401 Unauthorized"
    explanation = page.inner_text("#last-test .error")  # the error once, then what to do
    # Counted as "HTTP 401", not "401": the simulator's random port may contain those digits (CI saw :40151).
    assert explanation.count("HTTP 401") == 1 and "Unauthorized" not in explanation
    assert "Check the user name" in explanation
