"""An operator deploys the console: production refuses to start on a missing or default secret, and says which."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parents[2]
GOOD_SECRET = "a-production-secret-key-that-is-long-and-random-0123456789"


def production_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """A clean production environment (nothing inherited from the test settings), with `overrides` applied;
    an override of None removes that variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSOLE_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="console.settings",
        CONSOLE_VAR_DIR=str(tmp_path),
        CONSOLE_SECRET_KEY=GOOD_SECRET,
        CONSOLE_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="console.example.com",
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def start_console(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What every process of the console does first: load the settings (daphne, celery and manage.py alike)."""
    code = "import django; django.setup(); from django.conf import settings; print('started', settings.HTTPS)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def start_console_with(env: dict[str, str], expression: str) -> subprocess.CompletedProcess[str]:
    """Load the settings as a console process does, and print `expression` (e.g. "settings.SECURE_SSL_REDIRECT")."""
    code = f"import django; django.setup(); from django.conf import settings; print(*[{expression}])"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "manage.py", *args]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_complete_production_environment_starts_with_secure_cookies(tmp_path: Path) -> None:
    result = start_console(production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started True"
    assert not (tmp_path / "secret_key").exists()  # production never invents a secret


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"CONSOLE_SECRET_KEY": None}, "CONSOLE_SECRET_KEY is missing"),
        ({"CONSOLE_SECRET_KEY": "changeme"}, "CONSOLE_SECRET_KEY is missing, a default"),
        ({"CONSOLE_SECRET_KEY": "django-insecure-" + "x" * 40}, "CONSOLE_SECRET_KEY is missing, a default"),
        ({"CONSOLE_SECRET_KEY": "too-short"}, "shorter than 32 characters"),
        ({"CONSOLE_SECRET_KEY": "a" * 40}, "CONSOLE_SECRET_KEY is too predictable"),
        ({"CONSOLE_SECRET_KEY": "abcdefgh" * 5}, "CONSOLE_SECRET_KEY is too predictable"),
        ({"CONSOLE_SECRET_KEY": "0101010110101010011001100101011010101001"}, "CONSOLE_SECRET_KEY is too predictable"),
        ({"CONSOLE_LOGIN_FAILURE_LIMIT": "five"}, "CONSOLE_LOGIN_FAILURE_LIMIT must be a number"),
        ({"CONSOLE_HSTS_SECONDS": "1.5"}, "CONSOLE_HSTS_SECONDS must be a whole number"),
        ({"CONSOLE_ENCRYPTION_KEYS": None}, "CONSOLE_ENCRYPTION_KEYS is missing"),
        ({"CONSOLE_ENCRYPTION_KEYS": "not-a-fernet-key"}, "CONSOLE_ENCRYPTION_KEYS entry #1 is not a Fernet key"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS is missing"),
        ({"CONSOLE_ENV": "staging"}, "CONSOLE_ENV must be 'production' or 'development'"),
    ],
)
def test_production_refuses_to_start_and_names_what_is_wrong(
    tmp_path: Path, overrides: dict[str, str | None], named: str
) -> None:
    result = start_console(production_env(tmp_path, **overrides))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr
    assert GOOD_SECRET not in result.stderr


def test_the_secret_key_is_never_accepted_as_an_encryption_key(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    result = start_console(production_env(tmp_path, CONSOLE_SECRET_KEY=key + "-padding", CONSOLE_ENCRYPTION_KEYS=key))
    assert result.returncode == 0, result.stderr  # different values: fine
    same = start_console(production_env(tmp_path, CONSOLE_SECRET_KEY=key, CONSOLE_ENCRYPTION_KEYS=key))
    assert same.returncode != 0 and "is CONSOLE_SECRET_KEY: use its own key" in same.stderr


def test_a_secret_may_come_from_a_file_as_container_secrets_do(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(GOOD_SECRET + "\n")
    result = start_console(production_env(tmp_path, CONSOLE_SECRET_KEY=None, CONSOLE_SECRET_KEY_FILE=str(secret_file)))
    assert result.returncode == 0, result.stderr


def test_random_keys_of_every_usual_alphabet_are_accepted_and_typed_ones_are_not() -> None:
    from console.settings import is_predictable

    for _ in range(200):
        assert not is_predictable(secrets.token_hex(16))  # 32 hex characters: the shortest key accepted
        assert not is_predictable(secrets.token_urlsafe(32))
    assert not is_predictable("test-secret-key-that-is-long-enough-0123456789abcdef")  # the test suite's
    typed_by_hand = ("a" * 40, "password" * 5, "01234567" * 5, "aaaabbbbccccdddd" * 2)
    for typed in typed_by_hand:
        assert is_predictable(typed), typed


def test_production_settings_pass_djangos_deployment_check_without_a_warning(tmp_path: Path) -> None:
    env = production_env(tmp_path, CONSOLE_SECRET_KEY=secrets.token_urlsafe(50))
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_behind_a_tls_proxy_the_deployment_check_passes_too(tmp_path: Path) -> None:
    env = production_env(tmp_path, CONSOLE_SECRET_KEY=secrets.token_urlsafe(50), CONSOLE_BEHIND_PROXY="1")
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0 and "no issues" in result.stdout, result.stdout + result.stderr


def test_https_means_a_redirect_and_a_year_of_hsts_including_subdomains(tmp_path: Path) -> None:
    names = "settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS"
    assert start_console_with(production_env(tmp_path), names).stdout.split() == ["True", "31536000", "True"]
    shorter = production_env(tmp_path, CONSOLE_HSTS_SECONDS="3600", CONSOLE_HSTS_INCLUDE_SUBDOMAINS="0")
    assert start_console_with(shorter, names).stdout.split() == ["True", "3600", "False"]
    # Behind a proxy Django reads the scheme from X-Forwarded-Proto, so the redirect stays on (no loop).
    proxied = production_env(tmp_path, CONSOLE_BEHIND_PROXY="1")
    expression = "settings.SECURE_SSL_REDIRECT, settings.SECURE_PROXY_SSL_HEADER"
    assert start_console_with(proxied, expression).stdout.strip() == "True ('HTTP_X_FORWARDED_PROTO', 'https')"
    plain = production_env(tmp_path, CONSOLE_HTTPS="0")
    assert start_console_with(plain, names).stdout.split() == ["False", "0", "True"]


def test_login_lockouts_come_from_the_environment(tmp_path: Path) -> None:
    env = production_env(tmp_path, CONSOLE_LOGIN_FAILURE_LIMIT="3", CONSOLE_LOGIN_LOCKOUT_MINUTES="2")
    result = start_console_with(env, "settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME")
    assert result.stdout.strip() == "3 0:02:00", result.stderr
