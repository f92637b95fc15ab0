"""Another user of the machine must not read the console's data: the database (with live session keys), its WAL,
the logs and the development keys are created private, and `make run` refuses a database an older run left open."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def development_env(var: Path) -> dict[str, str]:
    """A fresh development machine: nothing inherited from the test settings (secrets are generated under var/)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSOLE_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(CONSOLE_ENV="development", CONSOLE_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="console.settings")
    return env


def run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_data_directory_and_everything_in_it_is_private(tmp_path: Path) -> None:
    var = tmp_path / "var"
    result = run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], development_env(var))
    assert result.returncode == 0, result.stderr
    assert mode(var) == 0o700
    files = [path for path in var.rglob("*") if path.is_file()]
    assert {path.name for path in files} >= {"console.sqlite3", "secret_key", "encryption_key"}
    assert {path.name: oct(mode(path)) for path in files} == {path.name: "0o600" for path in files}


@pytest.mark.parametrize("entry", ["console.asgi", "console.celery", "console.settings"])
def test_every_console_process_starts_with_a_private_umask(tmp_path: Path, entry: str) -> None:
    code = f"import os, {entry}; print(oct(os.umask(0)))"
    result = run([sys.executable, "-c", code], development_env(tmp_path / "var"), timeout=60)
    assert result.stdout.strip() == "0o77", result.stderr


def test_make_run_refuses_a_database_others_can_read_and_says_how_to_fix_it(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    database = var / "console.sqlite3"
    database.write_bytes(b"")
    database.chmod(0o644)  # as an older run left it
    result = run([sys.executable, "manage.py", "runconsole", "--no-lab"], development_env(var), timeout=60)
    assert result.returncode != 0
    assert "Other users of this machine can read the console's database" in result.stderr
    assert f"chmod 600 {database}" in result.stderr
    assert not (var / "redis").exists()  # refused before starting anything
