"""Simulated Hyper-V hosts speaking real WinRM/WSMan + PSRP over loopback sockets.

h = start_host(name="HV01", state_dir=tmp, scenario="healthy")   # listening when it returns
... pypsrp WSMan(h.address, port=h.port, ...) ...
h.faults.latency = 0.2; h.down(); h.up(); h.command_log; h.stop()
h.strict.depth_one = True                                          # as strict as Windows, per behaviour (strict.py)
h = start_host("HV01", tmp, capture="capture.json")               # answers recorded from a real host (capture.py)
h = start_host("HV01", tmp, keytab="hosts.keytab")                # Negotiate accepts Kerberos too (auth.py)
lab = start_lab(dir=tmp, hosts=2, scenarios=["migration"])        # hosts sharing lab.share
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hypervsim.auth import Account
from hypervsim.capture import Capture
from hypervsim.cmdlets import CMDLETS as _REGISTRY
from hypervsim.faults import Faults
from hypervsim.jea import Role, RoleSpec
from hypervsim.model import EDITIONS, HostModel, LabContext
from hypervsim.scenarios import ARRANGEMENTS
from hypervsim.server import HostRuntime, Listener, default_idle_timeout
from hypervsim.strict import Strictness
from hypervsim.tls import listener_certificate

__all__ = ["CMDLETS", "Lab", "SimHost", "Strictness", "start_host", "start_lab"]

CMDLETS: frozenset[str] = frozenset(_REGISTRY)
Configurations = Iterable[str] | Mapping[str, RoleSpec | None] | None
DEFAULT_USER = "labadmin"
DEFAULT_PASSWORD = "Passw0rd!sim"


class SimHost:
    """A running simulated host: where to reach it, how to log in, and handles for tests."""

    address = "127.0.0.1"

    def __init__(self, runtime: HostRuntime, listener: Listener, ca_file: Path | None) -> None:
        self._runtime, self._listener = runtime, listener
        self.ca_file = str(ca_file) if ca_file else None
        self._lock = threading.Lock()
        self._up = True

    @property
    def name(self) -> str:
        return self._runtime.name

    @property
    def port(self) -> int:
        return self._runtime.port

    @property
    def url(self) -> str:
        return self._runtime.url

    @property
    def user(self) -> str:
        return self._runtime.account.user

    @property
    def password(self) -> str:
        return self._runtime.account.password

    @property
    def auth(self) -> str:
        return self._runtime.scheme

    @property
    def https(self) -> bool:
        return self._runtime.tls is not None

    @property
    def model(self) -> HostModel:
        return self._runtime.model

    @property
    def faults(self) -> Faults:
        return self._runtime.faults

    @property
    def strict(self) -> Strictness:
        """Where this host is as strict as Windows; switches can be changed while it runs."""
        return self._runtime.model.strict

    @property
    def idle_timeout(self) -> float:
        """Seconds after which the host closes an idle keep-alive connection."""
        return self._runtime.idle_timeout

    @property
    def command_log(self) -> list[dict[str, Any]]:
        return self._runtime.command_log

    @property
    def request_count(self) -> int:
        return self._runtime.request_count

    @property
    def paced_replies(self) -> int:
        """Receive replies the host sent before its command ended with room left in them (see HostRuntime)."""
        return self._runtime.paced_replies

    @property
    def configurations(self) -> tuple[str, ...] | None:
        """The registered session configuration names; None when any name opens (the default)."""
        endpoints = self._runtime.endpoints
        return None if endpoints is None else tuple(endpoints)

    @property
    def opened_configurations(self) -> list[str]:
        """The session configuration name of every shell opened on this host, in order ("Microsoft.PowerShell")."""
        return self._runtime.opened_configurations

    @property
    def kerberos(self) -> bool:
        """Whether the host accepts Kerberos (it has a keytab)."""
        return self._runtime.account.kerberos

    def announcement(self) -> dict[str, Any]:
        """What the CLI prints for this host: enough to register it in the console."""
        line: dict[str, Any] = {"name": self.name, "url": self.url, "user": self.user, "password": self.password}
        line |= {"auth": self.auth} | ({"kerberos": True} if self.kerberos else {})
        if self._runtime.credssp is not None and self.model.credssp_server:
            line["credssp"] = True  # the listener also accepts CredSSP (HTTPS, the CredSSP server role on)
        return line | ({"ca_file": self.ca_file} if self.ca_file else {})

    def down(self) -> None:
        """Take the host off the network: the port is closed and open connections are reset."""
        with self._lock:
            if self._up:
                self._listener.close()
                self._up = False
                self.model.on_network = False

    def up(self) -> None:
        """Back on the network, on the same port."""
        with self._lock:
            if not self._up:
                self._listener.open(self._runtime.port)
                self._up = True
                self.model.on_network = True

    def stop(self) -> None:
        self.down()

    def __repr__(self) -> str:
        return f"<SimHost {self.name} {self.url}>"


@dataclass
class Lab:
    """Hosts started together; they see one lab share and find each other by computer name."""

    dir: Path
    share: Path
    context: LabContext
    hosts: list[SimHost] = field(default_factory=list)

    def host(self, name: str) -> SimHost:
        return next(h for h in self.hosts if h.name.casefold() == name.casefold())

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()


def start_host(
    name: str = "HV01",
    state_dir: Path | str | None = None,
    scenario: str = "healthy",
    auth: str = "negotiate",
    https: bool = False,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    port: int = 0,
    lab: Lab | None = None,
    configurations: Configurations = None,
    strict: Strictness | None = None,
    idle_timeout: float | None = None,
    edition: str | None = None,
    capture: Capture | Path | str | None = None,
    keytab: Path | str | None = None,
) -> SimHost:
    """Start one host listening on 127.0.0.1 (port 0: any free port). Its state persists in state_dir.

    configurations: the session configurations registered on the host, e.g. ("Microsoft.PowerShell",); a shell for
    any other name is refused as WinRM does (WSManFault 2150858811). None (default) opens any name. A mapping
    {name: role} makes JEA endpoints, a role being a list of VisibleCmdlets or {"VisibleCmdlets": [...],
    "VisibleFunctions": [...]}: only those commands (and JEA's default Select-Object and Get-Command) run there,
    others fail with CommandNotFoundException; a None value exposes every command.
    strict: where the host is as strict as Windows (default: Strictness.default()). idle_timeout: seconds after
    which an idle keep-alive connection is closed, as HTTP.sys does (120, or HYPERVSIM_IDLE_TIMEOUT when set).
    edition: "server" (Windows Server 2022, a new host's default) or "client" (Windows 11 Pro); None keeps the
    edition the host was saved with. capture: a capture file (manage.py capture_host) whose recorded answers the host
    gives instead of running the commands (hypervsim/capture.py). keytab: the host's service keys in a Kerberos
    realm (WSMAN/<name> and HTTP/<name> as the client names it); with one, Negotiate accepts Kerberos as well as NTLM,
    and a Kerberos logon may delegate where `model.delegation` allows (hypervsim/logon.py).
    """
    if auth not in ("negotiate", "basic"):
        raise ValueError(f"auth must be 'negotiate' or 'basic', not {auth!r}")
    if auth == "basic" and not https:
        raise ValueError("Basic authentication is only offered over HTTPS, as on a hardened Windows listener")
    if state_dir is None:
        if lab is None:
            raise ValueError("start_host needs a state_dir (or a lab to live in)")
        state_dir = lab.dir / name
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    context = lab.context if lab else LabContext(share=_directory(state_dir / "share"))
    model = HostModel.load_or_create(state_dir, name, scenario)
    model.attach(context)
    if edition is not None:
        with model.changing():
            model.present(EDITIONS[edition])
    if strict is not None:
        model.strict = strict
    tls = listener_certificate((lab.dir if lab else state_dir) / "tls", name) if https else None
    account = Account.create(user, password, state_dir, name, Path(keytab) if keytab else None)
    idle = default_idle_timeout() if idle_timeout is None else idle_timeout
    if capture is not None and not isinstance(capture, Capture):
        capture = Capture.load(capture)
    runtime = HostRuntime(model, context, account, auth, tls, _endpoints(configurations), idle, capture)
    listener = Listener(runtime)
    listener.open(port)
    host = SimHost(runtime, listener, tls.ca_file if tls else None)
    if lab is not None:
        lab.hosts.append(host)
    return host


def start_lab(
    dir: Path | str,
    hosts: int = 2,
    scenarios: list[str] | None = None,
    https: bool = False,
    auth: str = "negotiate",
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    configurations: Configurations = None,
    strict: Strictness | None = None,
    idle_timeout: float | None = None,
    edition: str | None = None,
    first: int = 1,
    keytab: Path | str | None = None,
) -> Lab:
    """Start hosts HV01, HV02, ... (from HV<first>) sharing `dir/share`. A scenario like "migration" seeds several
    hosts."""
    root = Path(dir)
    share = _directory(root / "share")
    lab = Lab(root, share, LabContext(share=share))
    seeds = [s for name in (scenarios or ["healthy"]) for s in ARRANGEMENTS.get(name, [name])]
    try:
        for index in range(max(hosts, len(seeds))):
            scenario = seeds[min(index, len(seeds) - 1)]
            name = f"HV{index + first:02d}"
            start_host(
                name, None, scenario, auth, https, user, password, lab=lab, configurations=configurations,
                strict=replace(strict) if strict else None, idle_timeout=idle_timeout, edition=edition,
                keytab=keytab,
            )  # fmt: skip
    except BaseException:
        lab.stop()
        raise
    return lab


def _endpoints(configurations: Configurations) -> dict[str, Role | None] | None:
    """{configuration name: its JEA role, None for all commands}, or None when any name opens."""
    if configurations is None:
        return None
    if isinstance(configurations, str):
        configurations = (configurations,)
    if not isinstance(configurations, Mapping):
        return {name: None for name in configurations}
    return {name: None if role is None else Role.of(role) for name, role in configurations.items()}


def _directory(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
