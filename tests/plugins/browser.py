"""Fixtures: Chromium pages through Playwright's sync API, and logging in through the real login form.

One Playwright driver and one headless Chromium serve the whole test session; each test gets a fresh browser context
(cookies, storage, offline switch) and page. Browser tests must be plain (sync) test functions: Playwright's sync API
cannot run inside a running event loop. On failure a screenshot of the page is saved under test-artifacts/.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Generator, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.users import PASSWORD

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# A phone's screen: every page must fit its width.
PHONE = {"width": 390, "height": 844}
# The elements that reach past the right edge of the screen, for the failure message.
WIDEST = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > innerWidth + 1)
  .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""


# The visible text of the page, without what is never translated (commands, paths, names marked translate="no").
VISIBLE_TEXT = """(() => {
  const skip = el => el.closest('code, pre, kbd, samp, script, style, [translate="no"], [hidden]');
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const parts = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement && !skip(node.parentElement) && node.parentElement.offsetParent !== null) {
      parts.push(node.textContent.trim());
    }
  }
  return parts.filter(Boolean);
})()"""
# Three English words in a row: a sentence or label nobody translated. Names of things (HV03, Win11-A,
# UntrustedGuardian, Hyper-V, PowerShell) are single words and pass.
ENGLISH_RUN = re.compile(r"\b[A-Za-z]{2,}\b[ ,]+\b[a-z]{2,}\b[ ,]+\b[a-z]{2,}\b")
# What Windows itself says, quoted (「The key protector could not be unwrapped」), is shown as Windows says it.
QUOTED = re.compile(r"「[^」]*」|“[^”]*”|'[^']*'")
# Lines the host itself wrote into the job log (its progress stream): a Japanese Windows writes them in Japanese.
HOST_SAYS = {"Preparing modules for first use."}


def untranslated(page: Any) -> list[str]:
    """The texts of the page that hold English nobody translated (for pages shown in another language)."""
    shown = [text for text in page.evaluate(VISIBLE_TEXT) if text not in HOST_SAYS]
    return [text for text in shown if ENGLISH_RUN.search(QUOTED.sub("", text))]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass
class Chromium:
    """The session's Playwright driver and browser.

    Between its calls Playwright's sync API leaves its event loop marked as running in this thread, and resumes that
    loop on the next call. Left marked for the whole session, it would make every later async test refuse to start
    its own loop and Django refuse the sync database calls of every later test; so the loop is marked only while a
    browser test runs."""

    playwright: Any
    loop: asyncio.AbstractEventLoop
    browser: Any = None

    def enter_test(self) -> None:
        asyncio._set_running_loop(self.loop)

    def leave_test(self) -> None:
        asyncio._set_running_loop(None)


@pytest.fixture(scope="session")
def _chromium() -> Iterator[Chromium]:
    """Started by the first browser test of the session, stopped at its end."""
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    chromium = Chromium(playwright, asyncio.get_running_loop())
    try:
        chromium.browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        chromium.leave_test()
        yield chromium
        chromium.enter_test()
        chromium.browser.close()
    finally:
        playwright.stop()  # its loop stops running, and is closed


@pytest.fixture
def browser_page(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, _chromium: Chromium) -> Iterator[Any]:
    """A fresh browser context and page of the session's Chromium for one test (10 s default timeout)."""
    # While Playwright's loop is marked as running, Django would refuse the test's own (synchronous, same-thread)
    # database calls. They are safe here; allow them for this test only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    _chromium.enter_test()
    # wait_for_function and evaluate compile the test's strings inside the page, which the console's
    # Content-Security-Policy (no eval) refuses: the page bypasses the policy unless the test is marked
    # `enforce_csp` (and then keeps to locators and clicks, as tests/e2e/test_content_security_policy.py does).
    bypass_csp = request.node.get_closest_marker("enforce_csp") is None
    # `@pytest.mark.browser_locale("ja-JP")`: the browser's language (its Accept-Language), as a Japanese user's.
    locale = request.node.get_closest_marker("browser_locale")
    context = _chromium.browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp, **({"locale": locale.args[0]} if locale else {})
    )
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        yield page
        save_screenshot_if_failed(request, page)
    finally:
        context.close()
        _chromium.leave_test()


def save_screenshot_if_failed(request: pytest.FixtureRequest, page: Any) -> None:
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)[-150:]
        with suppress(Exception):  # a crashed page has nothing to show
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def login(page: Any, live_console: Any, user: Any, password: str = PASSWORD) -> None:
    """Log in through the login form as `user` (the users fixtures all share PASSWORD)."""
    page.goto(f"{live_console.url}/login/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    if "/login/" in page.url:
        raise AssertionError(f"login as {user.get_username()} failed")


@pytest.fixture
def browser_login() -> Any:
    """The `login(page, live_console, user)` helper as a fixture, for tests that prefer fixtures to imports."""
    return login
