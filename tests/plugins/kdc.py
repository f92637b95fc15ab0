"""Fixture: a real MIT Kerberos KDC (Debian's krb5-kdc) with a throwaway realm, for the Kerberos tests.

krb5kdc runs as a child process on a free loopback port (TCP and UDP), its database made with kdb5_util and loaded
with kadmin.local in a temporary folder. Everything Kerberos reads goes through KRB5_CONFIG pointing at the realm's
own krb5.conf (never /etc/krb5.conf) and a KRB5CCNAME per test, set for the test run's process and inherited by
the processes it starts afterwards (a Celery worker started earlier in the session does not see the realm; the
Kerberos tests run the console's work in-process). The realm's names resolve on any machine: every simulated host
is reached as `localhost` (dns_canonicalize_hostname and rdns off, so the service principal is host/localhost as
the client names it).
`make test` installs krb5-kdc, krb5-admin-server and faketime; nothing here is skipped when they are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from hypervsim import DEFAULT_PASSWORD, DEFAULT_USER
from tests.plugins.worker import free_port

SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"
KRB5KDC = shutil.which("krb5kdc", path=SBIN) or "/usr/sbin/krb5kdc"
KDB5_UTIL = shutil.which("kdb5_util", path=SBIN) or "/usr/sbin/kdb5_util"
KADMIN_LOCAL = shutil.which("kadmin.local", path=SBIN) or "/usr/sbin/kadmin.local"
# libfaketime (Debian's faketime) preloaded into krb5kdc itself, so the process this plugin stops is the KDC (the
# faketime command would leave its child running when terminated).
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), "libfaketime.so.1")
REALM = "LAB.TEST"
HOST_NAME = "localhost"  # how the console names every simulated host: it resolves to 127.0.0.1 everywhere
# The service classes a client may ask for, as a Windows computer account has them: pypsrp asks for host/<name>
# (HOST, which Active Directory maps HTTP to), WinRM registers WSMAN/<name>, browsers ask for HTTP/<name>.
SERVICES = ("host", "HTTP", "WSMAN")
SPNS = tuple(f"{service}/{HOST_NAME}" for service in SERVICES)
USER = f"{DEFAULT_USER}@{REALM}"  # the simulated hosts' administrator, as a domain account
PASSWORD = DEFAULT_PASSWORD
MASTER_PASSWORD = "kdc-master-Passw0rd"  # noqa: S105 (a throwaway realm's)

KRB5_CONF = """\
[libdefaults]
 default_realm = {realm}
 dns_lookup_kdc = false
 dns_lookup_realm = false
 rdns = false
 dns_canonicalize_hostname = false
 udp_preference_limit = 1
 kdc_timeout = 2000
 max_retries = 1
 enforce_ok_as_delegate = true
[realms]
 {realm} = {{
  kdc = 127.0.0.1:{port}
 }}
[domain_realm]
 {host} = {realm}
"""

KDC_CONF = """\
[kdcdefaults]
 kdc_listen = 127.0.0.1:{port}
 kdc_tcp_listen = 127.0.0.1:{port}
[realms]
 {realm} = {{
  database_name = {dir}/principal
  key_stash_file = {dir}/stash
  acl_file = {dir}/kadm5.acl
  max_life = 10h
  max_renewable_life = 1d
 }}
[logging]
 kdc = FILE:{dir}/kdc.log
"""


@dataclass
class Kdc:
    """The running KDC: its realm's files, and the changes an administrator of the realm would make."""

    workdir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def krb5_conf(self) -> Path:
        return self.workdir / "krb5.conf"

    @property
    def keytab(self) -> Path:
        """The simulated hosts' service keys (host/, HTTP/ and WSMAN/localhost)."""
        return self.workdir / "hosts.keytab"

    @property
    def log(self) -> Path:
        return self.workdir / "kdc.log"

    def env(self) -> dict[str, str]:
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5_KDC_PROFILE": str(self.workdir / "kdc.conf")}

    def kadmin(self, *commands: str) -> str:
        """Run kadmin.local commands (one per line on its standard input); its output."""
        done = subprocess.run(
            [KADMIN_LOCAL, "-r", REALM],
            input="\n".join(commands).encode() + b"\n",
            capture_output=True,
            env=os.environ | self.env(),
            timeout=30,
            check=True,
        )
        return done.stdout.decode() + done.stderr.decode()

    def add_user(self, name: str, password: str) -> str:
        """A user principal that needs pre-authentication, as Active Directory's accounts do."""
        self.kadmin(f"addprinc -pw {password} +requires_preauth {name}")
        return f"{name}@{REALM}"

    def write_keytab(self) -> None:
        """New keys for the simulated hosts' service principals, in a keytab of their own (as a rejoin does)."""
        self.keytab.unlink(missing_ok=True)
        self.kadmin(f"ktadd -k {self.keytab} {' '.join(SPNS)}")

    @contextmanager
    def without(self, principal: str) -> Iterator[None]:
        """The principal deleted from the realm for the block (a name the realm does not know), made again after."""
        self.kadmin(f"delprinc -force {principal}")
        try:
            yield
        finally:
            self.kadmin(f"addprinc -randkey {principal}")
            self.write_keytab()

    def start(self, clock_offset: str = "") -> None:
        """krb5kdc in the foreground; with a clock offset ("+1h") under libfaketime, a KDC whose clock is wrong."""
        started = self._log_count("commencing operation")
        command = [KRB5KDC, "-n", "-r", REALM, "-P", str(self.workdir / "kdc.pid")]
        env = os.environ | self.env()
        if clock_offset:
            env |= {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": clock_offset}
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self._log_count("commencing operation") == started:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"krb5kdc did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def _log_count(self, text: str) -> int:
        return self.log.read_text().count(text) if self.log.exists() else 0

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @contextmanager
    def down(self) -> Iterator[None]:
        """The KDC stopped (nothing listens on its port) for the block, started again after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextmanager
    def clock_off_by(self, offset: str) -> Iterator[None]:
        """The KDC's clock `offset` away from everyone else's (e.g. "+1h") for the block."""
        self.stop()
        try:
            self.start(offset)
            yield
        finally:
            self.stop()
            self.start()


def create_realm(workdir: Path) -> Kdc:
    port = free_port()
    kdc = Kdc(workdir, port)
    values = {"realm": REALM, "port": port, "dir": workdir, "host": HOST_NAME}
    kdc.krb5_conf.write_text(KRB5_CONF.format(**values))
    (workdir / "kdc.conf").write_text(KDC_CONF.format(**values))
    (workdir / "kadm5.acl").write_text("")
    subprocess.run(
        [KDB5_UTIL, "create", "-s", "-r", REALM, "-P", MASTER_PASSWORD],
        env=os.environ | kdc.env(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    kdc.kadmin(*(f"addprinc -randkey {spn}" for spn in SPNS))
    kdc.write_keytab()
    kdc.add_user(DEFAULT_USER, PASSWORD)
    return kdc


@pytest.fixture(scope="session")
def kdc() -> Iterator[Kdc]:
    """One KDC for the test process (each pytest-xdist worker has its own), its krb5.conf in KRB5_CONFIG."""
    with tempfile.TemporaryDirectory(prefix="gc-kdc-") as workdir:
        realm = create_realm(Path(workdir))
        saved = {name: os.environ.get(name) for name in realm.env()}
        os.environ.update(realm.env())
        try:
            realm.start()
            yield realm
        finally:
            realm.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def kerberos(kdc: Kdc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kdc:
    """The realm for one test, with a credential cache of its own (nothing lands in the user's default cache)."""
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'krb5cc'}")
    return kdc
