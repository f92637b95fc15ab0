"""Single sign-on in Chromium, against the real servers the tests start: the OpenID Connect provider's own login page
(tests/oidc_provider/) and slapd behind the console's login form. A group change there changes the role shown in the
console's top bar at the next login."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.plugins.ldap_server import PASSWORD as DIRECTORY_PASSWORD
from tests.plugins.ldap_server import Directory
from tests.plugins.oidc_provider import PASSWORD as PROVIDER_PASSWORD
from tests.plugins.oidc_provider import Provider

pytestmark = pytest.mark.e2e


@pytest.fixture
def alice_back_in_gc_admins(oidc_provider: Provider) -> Iterator[None]:
    yield
    oidc_provider.set_groups("alice", ["gc-admins"])


@pytest.fixture
def lars_back_in_gc_admins(ldap_directory: Directory) -> Iterator[None]:
    yield
    ldap_directory.set_groups("lars", ["gc-admins"])


def who_is_in(page: Any) -> str:
    return str(page.locator(".whoami span").inner_text())


def log_out(page: Any) -> None:
    with page.expect_navigation():
        page.click(".whoami button[type=submit]")


def sign_in_with_provider(page: Any, console: Any, name: str | None) -> None:
    """The login page's button; at the provider, its own login form (`name` None: already signed in there)."""
    page.goto(f"{console.url}/login/")
    page.click("#oidc-sign-in")
    if name is not None:
        page.wait_for_selector("#op-username")
        page.fill("#op-username", name)
        page.fill("#op-password", PROVIDER_PASSWORD)
        page.click("#op-sign-in")
    page.wait_for_url(f"{console.url}/")


def test_sign_in_through_the_oidc_provider_and_a_group_change_there(
    sso_console: Any, oidc_provider: Provider, alice_back_in_gc_admins: None, browser_page: Any
) -> None:
    page = browser_page
    sign_in_with_provider(page, sso_console, "alice")
    assert who_is_in(page) == "alice · admin"
    assert page.locator("nav a", has_text="Users").count() == 1
    page.goto(f"{sso_console.url}/account/")
    assert page.locator("#change-my-password").count() == 0  # the provider keeps her password
    page.goto(f"{sso_console.url}/")

    oidc_provider.set_groups("alice", ["gc-view"])
    log_out(page)
    sign_in_with_provider(page, sso_console, None)  # still signed in at the provider: straight back
    assert who_is_in(page) == "alice · viewer"
    assert page.locator("nav a", has_text="Users").count() == 0


def test_someone_in_no_mapped_group_reads_why_on_the_login_page(
    sso_console: Any, oidc_provider: Provider, browser_page: Any
) -> None:
    page = browser_page
    page.goto(f"{sso_console.url}/login/")
    page.click("#oidc-sign-in")
    page.fill("#op-username", "dave")
    page.fill("#op-password", PROVIDER_PASSWORD)
    page.click("#op-sign-in")
    page.wait_for_url(f"{sso_console.url}/login/")
    assert "in none of the groups that give a role" in page.locator(".messages").inner_text()


def log_in_with_form(page: Any, console: Any, name: str, password: str) -> None:
    page.goto(f"{console.url}/login/")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")


def test_log_in_through_the_directory_and_a_group_change_there(
    sso_console: Any, ldap_directory: Directory, lars_back_in_gc_admins: None, browser_page: Any
) -> None:
    page = browser_page
    log_in_with_form(page, sso_console, "lars", DIRECTORY_PASSWORD)
    assert who_is_in(page) == "lars · admin"

    ldap_directory.set_groups("lars", ["gc-ops"])
    log_out(page)
    log_in_with_form(page, sso_console, "lars", DIRECTORY_PASSWORD)
    assert who_is_in(page) == "lars · operator"


def test_a_directory_user_outside_the_groups_reads_why(
    sso_console: Any, ldap_directory: Directory, browser_page: Any
) -> None:
    page = browser_page
    log_in_with_form(page, sso_console, "dora", DIRECTORY_PASSWORD)
    assert "/login/" in page.url
    assert "in none of the groups that give a role" in page.locator("#sign-in-refused").inner_text()
