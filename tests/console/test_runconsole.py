"""The first of the README's two commands: `make run` (manage.py runconsole) on a fresh var/ directory.

A new user runs it, reads the URL and the admin password it prints, and finds the demo lab registered and
refreshed. A child that dies is started again; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from console.settings import BASE_DIR


def read_until(process: subprocess.Popen[str], pattern: str, timeout: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"runconsole ended early: {''.join(lines)}")
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s: {''.join(lines)}")


def wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise AssertionError("timed out")


@pytest.fixture
def runconsole(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "CONSOLE_REDIS_PREFIX")}
    env.update(
        CONSOLE_ENV="development", CONSOLE_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="console.settings"
    )
    for name in ("CONSOLE_SECRET_KEY", "CONSOLE_ENCRYPTION_KEYS"):
        env.pop(name, None)  # a fresh machine: development secrets are generated under var/
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runconsole", "--port", "0"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    yield process, tmp_path / "var"
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def test_make_run_starts_the_console_with_a_refreshed_demo_lab_and_ctrl_c_stops_everything(
    runconsole: tuple[subprocess.Popen[str], Path],
) -> None:
    process, var = runconsole
    lines = read_until(process, r"Press Ctrl-C", timeout=90)
    output = "".join(lines)
    password = re.search(r"Log in as 'admin' with password: (\S+)", output)
    url = re.search(r"running at (http://127\.0\.0\.1:\d+/)", output)
    assert password and url, output
    assert "Demo lab: HV01, HV02, HV03, HV04, HV05, HV06" in output
    assert "Traceback" not in output

    with urllib.request.urlopen(url.group(1) + "login/", timeout=10) as response:  # noqa: S310 (loopback)
        assert response.status == 200

    assert "Automatic escrow is on" in output

    def refreshed_and_escrowed() -> bool:
        """The refresh, then the escrow jobs the policy started at its end (no click), all succeeded."""
        with sqlite3.connect(var / "console.sqlite3") as db:
            jobs = list(db.execute("select kind, state from jobs_job order by id"))
        kinds = [kind for kind, _state in jobs]
        done = all(state == "succeeded" for _kind, state in jobs)
        return done and kinds[:1] == ["inventory_refresh"] and "escrow_guardian" in kinds

    wait_for(refreshed_and_escrowed, timeout=90)
    with sqlite3.connect(var / "console.sqlite3") as db:
        covered = db.execute(
            "select count(*), sum(f.escrowed), sum(not f.escrowed and f.key_hosts = 0) from inventory_virtualmachine v "
            "join inventory_vmfacts f on f.vm_id = v.id where v.has_key_protector and (v.tpm_enabled or v.shielded)"
        ).fetchone()
        policy = {row[0] for row in db.execute("select requested_by_name from jobs_job where kind = 'escrow_guardian'")}
    total, escrowed, lost = covered
    # 100% of what is recoverable: HV02's and HV03's VMs have no copy of their keys anywhere (the backup of HV02's
    # lies in a file the banner names); every other vTPM VM is covered, by the service user, without a click.
    assert escrowed > 0 and escrowed == total - lost and lost > 0, covered
    assert policy == {"escrow-policy"}
    with sqlite3.connect(var / "console.sqlite3") as db:
        hosts = [row[0] for row in db.execute("select name from hosts_host order by name")]
        auth = dict(db.execute("select name, auth || ' over ' || transport from hosts_host"))
        vms = db.execute("select count(*) from inventory_virtualmachine").fetchone()[0]
        audited = [row for row in db.execute("select action, object_repr from console_auditevent order by id")]
        shares = {row[0]: row[1:] for row in db.execute("select path, account, password from hosts_labshare")}
    assert hosts == ["HV01", "HV02", "HV03", "HV04", "HV05", "HV06"]
    # Both worlds: the workgroup hosts with Negotiate (NTLM), the domain pair with CredSSP over verified HTTPS.
    assert (auth["HV01"], auth["HV05"], auth["HV06"]) == ("negotiate over http", *["credssp over https"] * 2)
    # Each workgroup host shares a folder with an account of its own, stored sealed for the migration wizard.
    account, sealed = shares["\\\\HV01\\VMExports"]
    assert account == "HV01\\vmshare" and sealed.startswith("v1:") and len(shares) == 5  # and \\LAB\share
    assert vms > 0
    # The admin and the demo hosts it made are in the audit trail like any other change.
    assert ("user.create", "admin") in audited
    assert {repr_ for action, repr_ in audited if action == "host.create"} >= {"HV01", "HV02", "HV03", "HV04"}

    # The data directory is the console's user's alone: the database (session keys), its WAL and the logs.
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    for path in [var / "console.sqlite3", var / "console.sqlite3-wal", *(var / "log").glob("*.log")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    # A child that dies is started again, and the terminal says so.
    worker = next(child for child in psutil.Process(process.pid).children() if "worker" in child.cmdline())
    worker.kill()
    said = "".join(read_until(process, r"worker restarted", timeout=30))
    assert "worker exited with code -9; starting it again in 1 s" in said
    wait_for(lambda: any("worker" in c.cmdline() for c in psutil.Process(process.pid).children()), timeout=10)

    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 6  # redis, the two labs, worker, beat, daphne
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert alive == []
