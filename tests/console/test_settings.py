"""An operator deploys the console: production refuses to start on a missing or default secret, and says which."""

from __future__ import annotations

import os
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
