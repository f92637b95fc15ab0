"""Two-factor in Chromium under the console's own Content-Security-Policy: an admin sets it up from the QR code page
(the code typed is computed from the secret shown, by django-otp's totp), keeps the recovery codes, and a later login
is asked for the app's code before the Users page. The live console runs with CONSOLE_ADMIN_2FA=optional (the
development default): an admin who set two-factor up is asked for it."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django_otp.oath import totp

from tests.plugins.browser import login

pytestmark = [pytest.mark.e2e, pytest.mark.enforce_csp]


def app_code(secret: str, steps_ahead: int = 0) -> str:
    return f"{totp(base64.b32decode(secret.replace(' ', '')), drift=steps_ahead):06d}"


def test_an_admin_sets_up_two_factor_and_is_asked_for_it_at_the_next_login(
    live_console: Any, admin: Any, browser_page: Any
) -> None:
    page = browser_page
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text))
    login(page, live_console, admin)
    page.click("#my-account")  # one's own pages are reached from My account, not the top bar
    page.click("#my-two-factor")
    page.locator("#two-factor-qr").wait_for()
    box = page.locator("#two-factor-qr").bounding_box()
    assert box is not None and box["width"] >= 150  # the QR code is drawn, from a data: image the policy allows
    secret = page.locator("#two-factor-secret").inner_text()
    page.fill("input[name=code]", app_code(secret))
    with page.expect_navigation():
        page.click("#confirm-two-factor")
    assert page.locator("#recovery-codes li").count() == 10

    page.context.clear_cookies()  # another day, another login
    login(page, live_console, admin)
    page.goto(f"{live_console.url}/users/")
    assert "/account/two-factor/verify/" in page.url
    page.fill("input[name=code]", app_code(secret, steps_ahead=1))  # the set-up's code was used already
    with page.expect_navigation():
        page.click("#verify-two-factor")
    assert page.url == f"{live_console.url}/users/"
    assert page.locator("h1", has_text="Users").count() == 1
    assert not [text for text in complaints if "Content Security Policy" in text]
