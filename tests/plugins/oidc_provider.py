"""Fixture: a real OpenID Connect provider process on loopback (tests/oidc_provider/, django-oauth-toolkit), with its
own SQLite database and an RSA signing key made at start, the console registered as a client and people in groups.

It knows two redirect URIs: the Django test client's (http://testserver/oidc/callback/) and the single sign-on
console's that tests/plugins/sso.py serves on `sso_console_port`.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.oidc_provider.__main__ import PASSWORD, PEOPLE
from tests.plugins.worker import ARTIFACTS, REPO, ConsoleProcess, free_port, wait_for

CLIENT_ID = "guardian-console"
ROLE_GROUPS = "admin:gc-admins,operator:gc-ops,viewer:gc-view"
__all__ = ["PASSWORD", "PEOPLE", "Provider"]


@dataclass
class Provider:
    """The running provider: its issuer URL, the console's client credentials, and changes to people's groups."""

    url: str
    client_secret: str
    env: dict[str, str]
    process: ConsoleProcess

    @property
    def issuer(self) -> str:
        return f"{self.url}/o"

    def set_groups(self, name: str, groups: list[str]) -> None:
        """Change someone's groups at the provider, as its administrator would."""
        run_provider_command(self.env, "set-groups", name, *groups)

    def console_env(self) -> dict[str, str]:
        """The CONSOLE_OIDC_* settings that point the console at this provider (as its discovery document says)."""
        return {
            "CONSOLE_OIDC_PROVIDER_NAME": "Test IdP",
            "CONSOLE_OIDC_ISSUER": self.issuer,
            "CONSOLE_OIDC_AUTHORIZATION_ENDPOINT": f"{self.issuer}/authorize/",
            "CONSOLE_OIDC_TOKEN_ENDPOINT": f"{self.issuer}/token/",
            "CONSOLE_OIDC_USERINFO_ENDPOINT": f"{self.issuer}/userinfo/",
            "CONSOLE_OIDC_JWKS_ENDPOINT": f"{self.issuer}/.well-known/jwks.json",
            "CONSOLE_OIDC_CLIENT_ID": CLIENT_ID,
            "CONSOLE_OIDC_CLIENT_SECRET": self.client_secret,
            "CONSOLE_OIDC_ROLE_GROUPS": ROLE_GROUPS,
        }

    def sign_in(self, session: requests.Session, name: str, password: str = PASSWORD) -> None:
        """Log in at the provider's own login page, as a person at a browser would."""
        login = f"{self.url}/accounts/login/"
        page = session.get(login, timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None, page.text[:500]
        answer = session.post(
            login,
            data={"csrfmiddlewaretoken": token.group(1), "username": name, "password": password, "next": "/"},
            headers={"Referer": login},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 302, f"sign-in at the provider as {name}: {answer.status_code}"

    def authorize(self, session: requests.Session, authorize_url: str) -> str:
        """Follow the console's authorization request as the signed-in person: the redirect back to the console."""
        answer = session.get(authorize_url, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, f"authorize: {answer.status_code} {answer.text[:500]}"
        return str(answer.headers["Location"])


def provider_env(data_dir: Path, url: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.oidc_provider.settings",
        OP_DATA_DIR=str(data_dir),
        OP_ISSUER=f"{url}/o",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
    )
    return env


def run_provider_command(env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "-m", "tests.oidc_provider", *args]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:1])} at the test provider failed:\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def sso_console_port() -> int:
    """The port the single sign-on console will listen on: the provider must know its redirect URI first."""
    return free_port()


@pytest.fixture(scope="session")
def oidc_provider(sso_console_port: int) -> Iterator[Provider]:
    data_dir = Path(tempfile.mkdtemp(prefix="console-oidc-provider-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = provider_env(data_dir, url)
    client_secret = secrets.token_urlsafe(32)
    redirects = ["http://testserver/oidc/callback/", f"http://127.0.0.1:{sso_console_port}/oidc/callback/"]
    run_provider_command(
        env, "init", "--client-id", CLIENT_ID, "--client-secret", client_secret,
        *(arg for uri in redirects for arg in ("--redirect-uri", uri)),
    )  # fmt: skip
    process = ConsoleProcess(
        name="oidc-provider",
        args=[sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
        env=env,
        log_path=ARTIFACTS / "logs" / f"oidc-provider-{port}.log",
    )
    process.start()

    def answering() -> Any:
        if not process.alive():
            raise RuntimeError(f"the test provider exited at start:\n{process.output()[-3000:]}")
        try:
            return requests.get(f"{url}/o/.well-known/openid-configuration", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_for(answering, 60, "test provider start", process.log_path)
    yield Provider(url=url, client_secret=client_secret, env=env, process=process)
    process.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
