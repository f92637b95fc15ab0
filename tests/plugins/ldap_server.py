"""Fixture: a real OpenLDAP server (Debian's slapd) with a throwaway directory, for the LDAP sign-in tests.

slapd runs as a child process on a free loopback port, from a slapd.conf written into a temporary folder (an mdb
database there too), and is loaded with ldapadd (ldap-utils): people under ou=people, groups (groupOfNames) under
ou=groups. `make test` installs slapd and ldap-utils; nothing here is skipped when they are missing.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.plugins.worker import free_port

SLAPD = shutil.which("slapd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/slapd"
SUFFIX = "dc=guardian,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "slapd-root-Passw0rd"
BIND_DN = f"cn=console,ou=services,{SUFFIX}"  # the console's own (read-only) account, as a real deployment has
BIND_PASSWORD = "console-bind-Passw0rd"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
PASSWORD = "directory-Passw0rd-42"  # every person's password in the directory
# Group → members; the console maps gc-admins → admin, gc-ops → operator, gc-view → viewer. "dora" is in no group
# that gives a role; "ada" has the name of a local account in the tests (users fixtures).
MEMBERS = {"gc-admins": ["lars"], "gc-ops": ["olga"], "gc-view": ["vince"], "printers": ["dora"]}
PEOPLE_NAMES = ["lars", "olga", "vince", "dora", "ada"]
ROLE_GROUPS = "admin:gc-admins,operator:gc-ops,viewer:gc-view"

SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {dir}/data
access to attrs=userPassword by self read by anonymous auth by * none
access to * by dn.exact="{bind_dn}" read by self read by * none
"""


def person(uid: str) -> str:
    return (
        f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid.title()} Tester\n"
        f"sn: Tester\ngivenName: {uid.title()}\nmail: {uid}@guardian.test\nuserPassword: {PASSWORD}\n"
    )


def member_lines(members: list[str]) -> str:
    # groupOfNames needs at least one member: an empty group keeps the organisation's own entry in it
    lines = [f"member: uid={uid},{PEOPLE}" for uid in members] or [f"member: {SUFFIX}"]
    return "\n".join(lines) + "\n"


def group(name: str, members: list[str]) -> str:
    return f"dn: cn={name},{GROUPS}\nobjectClass: groupOfNames\ncn: {name}\n" + member_lines(members)


def directory_ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Guardian test\ndc: guardian\n",
        *(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n" for ou in ("people", "groups")),
        f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: {BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: console\n"
        f"userPassword: {BIND_PASSWORD}\n",
        *(person(uid) for uid in PEOPLE_NAMES),
        *(group(name, members) for name, members in MEMBERS.items()),
    ]
    return "\n".join(entries)


@dataclass
class Directory:
    """The running slapd: its URI, and changes to its groups as an administrator of the directory would make."""

    uri: str
    workdir: Path
    process: subprocess.Popen[bytes]
    members: dict[str, set[str]] = field(default_factory=lambda: {name: set(uids) for name, uids in MEMBERS.items()})

    def ldap_tool(self, tool: str, ldif: str) -> None:
        args = [tool, "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PASSWORD]
        subprocess.run(args, input=ldif.encode(), check=True, capture_output=True, timeout=30)

    def set_groups(self, uid: str, groups: list[str]) -> None:
        """Make `uid` a member of exactly these groups (of MEMBERS' groups)."""
        for name, members in self.members.items():
            members.discard(uid)
            if name in groups:
                members.add(uid)
            lines = member_lines(sorted(members))
            self.ldap_tool("ldapmodify", f"dn: cn={name},{GROUPS}\nchangetype: modify\nreplace: member\n{lines}-\n")

    def console_env(self) -> dict[str, str]:
        """The CONSOLE_LDAP_* settings that point the console at this directory."""
        return {
            "CONSOLE_LDAP_SERVER_URI": self.uri,
            "CONSOLE_LDAP_BIND_DN": BIND_DN,
            "CONSOLE_LDAP_BIND_PASSWORD": BIND_PASSWORD,
            "CONSOLE_LDAP_USER_SEARCH_BASE": PEOPLE,
            "CONSOLE_LDAP_GROUP_SEARCH_BASE": GROUPS,
            "CONSOLE_LDAP_ROLE_GROUPS": ROLE_GROUPS,
            "CONSOLE_LDAP_TIMEOUT_SECONDS": "3",
        }


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_slapd(workdir: Path) -> Directory:
    (workdir / "data").mkdir(mode=0o700)
    conf = workdir / "slapd.conf"
    conf.write_text(
        SLAPD_CONF.format(dir=workdir, suffix=SUFFIX, root_dn=ROOT_DN, root_password=ROOT_PASSWORD, bind_dn=BIND_DN)
    )
    port = free_port()
    log = (workdir / "slapd.log").open("wb")
    # -d keeps slapd in the foreground (a child we can stop); level 0 logs nothing but its start and errors.
    args = [SLAPD, "-d", "0", "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/"]
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"slapd did not start:\n{(workdir / 'slapd.log').read_text()[-3000:]}")
        time.sleep(0.05)
    directory = Directory(uri=f"ldap://127.0.0.1:{port}", workdir=workdir, process=process)
    directory.ldap_tool("ldapadd", directory_ldif())
    return directory


@pytest.fixture(scope="session")
def ldap_directory() -> Iterator[Directory]:
    """slapd on 127.0.0.1:<free port> with PEOPLE_NAMES in MEMBERS' groups (password PASSWORD), for the session."""
    workdir = Path(tempfile.mkdtemp(prefix="console-slapd-"))
    directory = start_slapd(workdir)
    yield directory
    directory.process.send_signal(signal.SIGTERM)
    try:
        directory.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        directory.process.kill()
    shutil.rmtree(workdir, ignore_errors=True)
