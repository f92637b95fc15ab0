"""Fixtures: simulated Hyper-V hosts (hypervsim) listening on loopback, stopped at teardown.

def test_x(sim_host):
    h = sim_host()                                   # healthy, HTTP + Negotiate with message encryption
    h = sim_host("fresh", https=True, auth="basic")  # Basic over HTTPS, h.ca_file is the lab CA
def test_y(sim_lab):
    lab = sim_lab(scenarios=["migration"])           # HV01 (source) and HV02 (target), one lab share
"""

from __future__ import annotations

import functools
import itertools
import shutil
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pypsrp.powershell
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hosts.remoting.catalog.vms import exported_config_path
from hosts.vault.services import store_pair
from hypervsim import Lab, SimHost, start_host, start_lab
from hypervsim.scenarios import previous_guardian_backup

LabT = TypeVar("LabT", bound=Lab)


@functools.cache
def exchange_key(public_exponent: int, key_size: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=public_exponent, key_size=key_size)


# pypsrp makes a new 2048-bit RSA key for every runspace pool that sends a SecureString (a password, a PFX password):
# ~70 ms of CPU each, hundreds of times in a run. The key only carries the session key the host sends back, so the
# test processes make one and reuse it; every exchange still runs (the simulated host encrypts to it, the pool
# decrypts). The console's own worker and daphne processes make theirs as in production.
pypsrp.powershell.rsa = types.SimpleNamespace(**{**vars(rsa), "generate_private_key": exchange_key})  # type: ignore[assignment]


def sim_wsman(h: SimHost, **overrides: Any) -> WSMan:
    """A pypsrp WSMan for a simulated host with its own transport and credentials (HTTPS trusts the lab CA)."""
    options: dict[str, Any] = {
        "port": h.port,
        "path": "wsman",
        "ssl": h.https,
        "auth": h.auth,
        "username": h.user,
        "password": h.password,
        "cert_validation": h.ca_file if h.https else False,
        "operation_timeout": 5,
        "read_timeout": 10,
        "connection_timeout": 5,
    }
    options.update(overrides)
    return WSMan(options.pop("server", h.address), **options)


def sim_run(pool: RunspacePool, *statements: tuple[str, dict[str, Any]]) -> PowerShell:
    """Invoke one statement per (cmdlet, parameters) pair in one pipeline; returns the finished PowerShell."""
    ps = PowerShell(pool)
    for index, (name, params) in enumerate(statements):
        if index:
            ps.add_statement()
        ps.add_cmdlet(name)
        for key, value in params.items():
            ps.add_parameter(key, value)
    ps.invoke()
    return ps


def wait_for_command(h: SimHost, cmdlet: str, timeout: float = 5) -> dict[str, Any]:
    """The host's command log entry for `cmdlet`, once it has one: a client that got an error early (a refused
    Receive, a dropped connection) may hear of it before the host has finished the command."""
    deadline = time.monotonic() + timeout
    while not (entries := [entry for entry in h.command_log if entry["cmdlet"] == cmdlet]):
        assert time.monotonic() < deadline, f"{h.name} never ran {cmdlet}: {h.command_log}"
        time.sleep(0.02)
    return entries[-1]


@pytest.fixture
def sim_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SimHost]]:
    started: list[SimHost] = []
    numbers = itertools.count(1)

    def start(
        scenario: str = "healthy", https: bool = False, auth: str = "negotiate", name: str | None = None, **kw: Any
    ) -> SimHost:
        host_name = name or f"HV{next(numbers):02d}"
        state = tmp_path_factory.mktemp(f"sim-{host_name}")
        host = start_host(name=host_name, state_dir=state, scenario=scenario, auth=auth, https=https, **kw)
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


@pytest.fixture
def sim_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def start(
        hosts: int = 2, scenarios: list[str] | None = None, https: bool = False, auth: str = "negotiate", **kw: Any
    ) -> Lab:
        lab = start_lab(Path(tmp_path_factory.mktemp("sim-lab")), hosts, scenarios, https=https, auth=auth, **kw)
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()


def kind_to_the_second_hop(lab: LabT) -> LabT:
    """The lab with its hosts' `second_hop` switch off: the console's NTLM sessions then reach the lab share and
    each other, as no Windows host lets them. Only for stories about something else (unsealing, faults, Show
    PowerShell of the share and live methods) until the console's CredSSP and Kerberos sessions land (issue 10):
    tests/workflows/test_migrate_worlds.py (every method in every world) tells Windows' behaviour."""
    for sim in lab.hosts:
        sim.strict.second_hop = False
    return lab


def files_copied_to(lab: Lab, vm_id: str, share_folder: str, target_folder: str) -> str:
    """Copy a VM's exported files from the lab share into a folder of the target (as an administrator would before
    registering them in place); returns the path of its .vmcx there."""
    source, target = lab.hosts
    shutil.copytree(source.model.files.resolve(share_folder), target.model.files.resolve(target_folder))
    return exported_config_path(target_folder, vm_id)


def reinstalled_with_backup_in_vault(
    sim_host: Any, registered_host: Any, user: Any = None
) -> tuple[Any, Any, Any, str]:
    """HV02's story: a reinstalled host, registered, and the backup of its lost guardian uploaded to the vault (by
    `user`); (simulated host, Host, vault pair, PFX password)."""
    sim = sim_host("reinstalled")
    signing, encryption, password = previous_guardian_backup(sim)
    pair = store_pair(signing, encryption, password, user=user, origin="upload", allow_expired=True).pair
    return sim, registered_host(sim), pair, password
