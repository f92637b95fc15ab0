"""Keeping secrets and install paths out of job logs and error messages, whatever a host or a library writes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hosts.models import Host

MASK = "********"

# "password=...", "pfx_password: x", "-Password 'x'" ... whatever follows a secret-sounding word.
SECRET_ASSIGNMENT = re.compile(
    r"(?i)(\b[\w-]*(?:password|passwd|pwd|secret|token|passphrase)[\"']?\s*[=:]\s*|-\w*password\s+)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
)
PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)
# Long base64 runs are PFX bytes or keys far more often than anything a person needs to read in a log.
BASE64_BLOB = re.compile(r"[A-Za-z0-9+/]{200,}={0,2}")
# Local paths: any absolute POSIX path of two or more components ("/opt/guardian-console/var/vault/key.bin", a
# site-packages file) says where and how the console is installed, so it never reaches people. A path is only taken
# where it starts on its own: not the path of a URL ("http://h:5985/wsman/x"), not after a drive or provider
# ("C:/x/y", "Cert:/LocalMachine/My"), not inside a word or a base64 run. Windows paths ("C:\ProgramData\...",
# "\\LAB\share") are the hosts' paths, which users need to read, and have no forward slashes to match.
LOCAL_PATH = re.compile(r"(?<![\w.:/\\~+%@-])(?:/[\w.@+~%-]+){2,}/?")


class Redactor:
    """Masks known secret values and secret-looking text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Mask these values too from now on (a job's log pump thread may be redacting meanwhile: the list is
        replaced whole, never changed in place)."""
        # Longest first, so a secret containing another is masked whole. Very short values would mask noise.
        known = set(self.secrets) | {s for s in secrets if s and len(s) >= 4}
        self.secrets = sorted(known, key=len, reverse=True)

    @classmethod
    def for_hosts(cls, hosts: Iterable[Host]) -> Redactor:
        secrets = []
        for host in hosts:
            try:
                secrets.append(host.get_password())
            except Exception:  # noqa: BLE001,S112 - an unreadable password cannot leak either
                continue
        return cls(secrets)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = PRIVATE_KEY_BLOCK.sub("[private key removed]", text)
        text = BASE64_BLOB.sub("[binary data removed]", text)
        return SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + MASK, text)


def clean_exception(exc: BaseException) -> str:
    """A one-line, path-free, secret-free message for people; the traceback stays in the worker's own log."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # Secrets and blobs first: a base64 run has slashes and must go whole, not cut into "paths".
    return LOCAL_PATH.sub("[path]", Redactor().redact(text))[:500]
