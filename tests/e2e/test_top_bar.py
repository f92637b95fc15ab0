"""In Chromium: the top bar is one line at 1280 px for an admin (who has the most entries), in English and in
Japanese; at 390 px its entries fold behind "Menu", My account and Log out among them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.browser import ARTIFACTS, login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
LINE = 20  # px: one line of the top bar's text (14 px type, line-height 1.45)
# Each visible entry of the top bar: its height and the middle of its line, in px.
ENTRIES = """[...document.querySelectorAll('.topbar a, .topbar button')]
  .filter(e => e.offsetParent !== null)
  .map(e => { const r = e.getBoundingClientRect();
              return {text: e.textContent.trim(), height: r.height, middle: (r.top + r.bottom) / 2}; })"""


def one_line(page: Any) -> list[str]:
    """What keeps the top bar from being one line: entries that wrap inside, or sit on another line."""
    entries = page.evaluate(ENTRIES)
    brand = entries[0]
    problems = [f"{e['text']!r} wraps ({e['height']:.0f} px high)" for e in entries if e["height"] > LINE * 1.5]
    problems += [f"{e['text']!r} is on another line" for e in entries if abs(e["middle"] - brand["middle"]) > 6]
    return problems


@pytest.mark.parametrize("language", ["en", "ja"])
def test_the_top_bar_is_one_line_at_1280_px(browser_page: Any, live_console: Any, admin: Any, language: str) -> None:
    page = browser_page
    page.set_extra_http_headers({"Accept-Language": language})
    page.set_viewport_size(DESKTOP)
    login(page, live_console, admin)
    assert page.get_attribute("html", "lang") == language
    assert page.locator("nav[aria-label] a").count() == 9  # an admin's: Users and Notifications too
    assert page.locator("#my-account").is_visible() and page.locator(".whoami button[type=submit]").is_visible()
    if language == "ja":
        assert page.inner_text("#my-account") == "マイ アカウント"
    assert not one_line(page), one_line(page)
    page.screenshot(
        path=str(ARTIFACTS / f"top-bar-1280-{language}.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 60}
    )


def test_on_a_phone_my_account_and_log_out_are_behind_the_menu(
    browser_page: Any, live_console: Any, admin: Any
) -> None:
    page = browser_page
    page.set_viewport_size(PHONE)
    login(page, live_console, admin)
    assert page.locator(".nav-toggle").is_visible() and not page.locator("#my-account").is_visible()
    page.click(".nav-toggle")
    assert page.locator("#my-account").is_visible() and page.locator(".whoami button[type=submit]").is_visible()
    with page.expect_navigation():
        page.click("#my-account")
    assert page.url.endswith("/account/")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
