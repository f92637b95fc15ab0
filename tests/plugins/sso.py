"""Fixtures: the console pointed at the real test servers for single sign-on (slapd and the OIDC provider).

- in this process (Django test client): `oidc_settings` / `ldap_settings` read console/settings.py afresh with the
  CONSOLE_OIDC_* / CONSOLE_LDAP_* environment a deployment would give, and apply what it makes for the test;
- in a browser: `sso_console`, a second daphne started with that environment (both sign-ins on).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.test import Client

from tests.plugins.ldap_server import Directory
from tests.plugins.oidc_provider import Provider
from tests.plugins.worker import REPO, LiveConsole, console_env, start_daphne, still_alive

SSO_PREFIXES = ("OIDC_", "AUTH_LDAP_", "LDAP_")
SSO_NAMES = {"AUTHENTICATION_BACKENDS", "LOGIN_REDIRECT_URL_FAILURE", "ADMIN_2FA"}


def console_settings(**env: str) -> dict[str, Any]:
    """What console/settings.py makes of this environment (on top of the test run's): its single sign-on and
    two-factor settings, read by a fresh copy of the module (the loaded one stays as it is)."""
    with mock.patch.dict(os.environ, env):
        spec = importlib.util.spec_from_file_location("console_settings_probe", REPO / "console" / "settings.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return {name: value for name, value in vars(module).items() if name.startswith(SSO_PREFIXES) or name in SSO_NAMES}


def apply(settings: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(settings, name, value)


@pytest.fixture
def oidc_settings(settings: Any, oidc_provider: Provider) -> Provider:
    """This test's console signs in through the test provider (OpenID Connect on, LDAP off)."""
    apply(settings, console_settings(**oidc_provider.console_env()))
    return oidc_provider


@pytest.fixture
def ldap_settings(settings: Any, ldap_directory: Directory) -> Directory:
    """This test's console signs in through the test slapd (LDAP on, OpenID Connect off)."""
    apply(settings, console_settings(**ldap_directory.console_env()))
    return ldap_directory


def oidc_callback(
    client: Client, provider: Provider, name: str, tamper: Any = None, start_at: str = "/oidc/authenticate/"
) -> Any:
    """Sign in to the console with the test client through the provider, as `name`: the console's callback response.
    `tamper(authorize_url) -> authorize_url` changes the request on its way to the provider."""
    start = client.get(start_at)
    assert start.status_code == 302, start
    authorize_url = tamper(start["Location"]) if tamper else start["Location"]
    with requests.Session() as browser:
        provider.sign_in(browser, name)
        back = urlsplit(provider.authorize(browser, authorize_url))
    assert back.path == "/oidc/callback/", back
    return client.get(back.path, dict(parse_qsl(back.query)))


@pytest.fixture(scope="session")
def _sso_daphne(
    django_db_setup: None, sso_console_port: int, oidc_provider: Provider, ldap_directory: Directory
) -> Iterator[LiveConsole]:
    env = console_env(**oidc_provider.console_env(), **ldap_directory.console_env())
    console = start_daphne("daphne-sso", sso_console_port, env)
    yield console
    console.process.stop()


@pytest.fixture
def sso_console(transactional_db: None, _sso_daphne: LiveConsole) -> LiveConsole:
    """The console served by daphne with both single sign-ons on: OIDC through `oidc_provider`, LDAP through
    `ldap_directory`; `.url`."""
    return still_alive(_sso_daphne)
