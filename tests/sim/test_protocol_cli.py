"""`python -m hypervsim serve|lab` start hosts that announce themselves as JSON lines and serve until killed."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hypervsim import cli, scenarios

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def spawn() -> Iterator[Any]:
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "hypervsim", *args]
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def announced(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else "no output"
    return dict(json.loads(line))


def computer_name(host: dict[str, Any]) -> str:
    url = host["url"]
    https = url.startswith("https")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    ca: Any = host.get("ca_file") or False
    client = WSMan(
        "127.0.0.1",
        port=port,
        ssl=https,
        auth=host["auth"],
        username=host["user"],
        password=host["password"],
        cert_validation=ca,
        operation_timeout=5,
    )
    with RunspacePool(client) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VMHost")
        return str(ps.invoke()[0].adapted_properties["Name"])


def test_serve_announces_one_host_and_stops_on_terminate(spawn: Any, tmp_path: Path) -> None:
    process = spawn(
        "serve",
        "--name",
        "HV05",
        "--state",
        str(tmp_path),
        "--scenario",
        "fresh",
        "--https",
        "--auth",
        "basic",
        "--user",
        "ops",
        "--password",
        "S3cret-pass",
    )
    host = announced(process)
    assert host["name"] == "HV05" and host["user"] == "ops" and host["password"] == "S3cret-pass"
    assert host["url"].startswith("https://127.0.0.1:") and Path(host["ca_file"]).read_text().startswith("-----BEGIN")
    assert computer_name(host) == "HV05"
    process.terminate()
    assert process.wait(10) == 0


def test_serve_stops_within_two_seconds_while_a_client_holds_an_idle_keep_alive_connection(spawn, tmp_path):
    process = spawn("serve", "--state", str(tmp_path), "--scenario", "fresh")
    host = announced(process)
    port = int(host["url"].rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
        idle.sendall(b"GET /wsman HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 405")  # answered; the connection stays open, idle
        asked = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert time.monotonic() - asked < 2


def test_lab_announces_each_host_sharing_one_share(spawn: Any, tmp_path: Path) -> None:
    process = spawn("lab", "--dir", str(tmp_path), "--hosts", "2", "--scenario", "healthy", "--scenario", "fresh")
    hosts = [announced(process), announced(process)]
    assert [h["name"] for h in hosts] == ["HV01", "HV02"]
    assert {computer_name(h) for h in hosts} == {"HV01", "HV02"}
    assert (tmp_path / "share").is_dir()


def test_lab_scenarios_may_follow_one_flag_or_repeat_it(tmp_path: Path) -> None:
    one_flag = cli._parser().parse_args(["lab", "--dir", str(tmp_path), "--scenario", "healthy", "fresh"])
    repeated = cli._parser().parse_args(["lab", "--dir", str(tmp_path), "--scenario", "healthy", "--scenario", "fresh"])
    mixed = ["lab", "--dir", str(tmp_path), "--scenario", "migration", "--scenario", "healthy", "fresh", "--hosts", "3"]
    assert one_flag.scenarios == repeated.scenarios == ["healthy", "fresh"]
    assert cli._parser().parse_args(mixed).scenarios == ["migration", "healthy", "fresh"]
    hosts = cli._start(one_flag)
    try:
        assert [(h.name, len(h.model.vms)) for h in hosts] == [("HV01", 4), ("HV02", 1)]
    finally:
        for h in hosts:
            h.stop()


def test_serve_refuses_basic_over_http(spawn: Any, tmp_path: Path) -> None:
    process = spawn("serve", "--state", str(tmp_path), "--auth", "basic")
    assert process.wait(30) == 2
    assert "only offered over HTTPS" in process.stderr.read()


def test_a_reinstalled_lab_host_announces_the_backup_of_its_lost_guardian(tmp_path: Path) -> None:
    args = cli._parser().parse_args(
        ["lab", "--dir", str(tmp_path), "--scenario", "healthy", "--scenario", "reinstalled"]
    )
    hosts = cli._start(args)
    try:
        healthy, reinstalled = (cli._announcement(h) for h in hosts)
        assert "backup_dir" not in healthy
        backup = Path(reinstalled["backup_dir"])
        assert backup == tmp_path / "share" / "backup" / "HV02"
        password = reinstalled["backup_password"].encode()
        signing, encryption, _ = scenarios.previous_guardian_backup(hosts[1])
        for name, expected in (("signing", signing), ("encryption", encryption)):
            data = (backup / f"UntrustedGuardian-{name}.pfx").read_bytes()
            key, cert, _ = pkcs12.load_key_and_certificates(data, password)
            assert key is not None and cert is not None
            assert cert == pkcs12.load_key_and_certificates(expected, password)[1]
    finally:
        for h in hosts:
            h.stop()
