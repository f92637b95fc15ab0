"""The capture kit: every read-only operation of the catalog run against one host, with the host's answers kept as
received — the CLIXML of each output object, error record and pipeline state — in one JSON file.

A capture shows what a real host sends (`read_back` runs the console's parsers over it, `manage.py capture_host`
records one, `python -m hypervsim serve --capture FILE` answers from one). The file (FORMAT):

    {"format": "guardian-console-capture/1", "host": "HV01", "user": "LAB\\\\hvconsole", "recorded_at": "…",
     "anonymised": false,
     "operations": [{"operation": "GetVM", "arguments": {"vm_name": "Win11-A"},
                     "statements": [[{"cmdlet": "Get-VM", "parameters": {"Name": "Win11-A"}}]],
                     "powershell": ["Get-VM -Name 'Win11-A'"],
                     "messages": [{"type": "PIPELINE_OUTPUT", "clixml": "<Obj RefId=\\"0\\">…"}, …],
                     "outcome": "ok"}, …],
     "skipped": [{"operation": "ReadFileBytes", "why": "…"}]}

Parameter and argument values are JSON; a switch is {"switch": true} and bytes are {"base64": "…"}. Message types
are MS-PSRP's names (PIPELINE_OUTPUT, ERROR_RECORD, PIPELINE_STATE, WARNING_RECORD, …). Only read-only operations
are run: nothing on the host changes, and no private key is read (certificates are public; a key protector holds
its keys wrapped, which only a guardian's private key opens).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import ipaddress
import re
import struct
import typing
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from pypsrp.messages import Message, MessageType
from pypsrp.serializer import Serializer

from . import catalog
from .catalog.vms import exported_config_path
from .operation import Operation, PipelineResult, Switch, render_powershell
from .session import HostSession, collect_result

FORMAT = "guardian-console-capture/1"
PLACEHOLDERS = {"host": "HOST", "domain": "DOMAIN", "user": "USER"}
NOT_SAMPLED = {
    "ReadFileBytes": "it reads a file of the host: a capture takes no file (one could be a PFX with its private key)",
    "CompareMove": "it asks the host about a move to another host (Compare-VM -DestinationHost): that needs a second "
    "host and its trust",
}


# -- recording -------------------------------------------------------------------------------------------------


class Recording:
    """The capture of one host while it is being made: each operation sent once, its answer kept as received."""

    def __init__(self, session: HostSession, host: str, user: str) -> None:
        self.session = session
        self.capture: dict[str, Any] = {
            "format": FORMAT,
            "host": host,
            "user": user,
            "recorded_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "anonymised": False,
            "operations": [],
            "skipped": [],
        }

    def run(self, op: Operation[Any], follows: str = "") -> Any:
        """Send the operation (and its follow-up pipelines, as HostSession.run does), keep what came back and what
        the console made of it; the result, or None. A follow-up (the host reading key protectors it was sent back)
        is kept as the commands and answers only: it is rebuilt from the read it follows, not from arguments."""
        entry = {
            "operation": type(op).__name__,
            "follows": follows,
            "arguments": {} if follows else encode(arguments_of(op)),
            "statements": [[{"cmdlet": c.name, "parameters": encode(c.params)} for c in s] for s in op.statements()],
            "powershell": render_powershell(op),
            "messages": [],
            "outcome": "ok",
        }
        self.capture["operations"].append(entry)
        try:
            result = self.session.exchange(op)
            entry["messages"] = [{"type": kind, "clixml": clixml} for kind, clixml in result.received]
            parsed = op.read(result)
        except Exception as err:  # the capture keeps going: what failed is part of what the host sends
            entry["outcome"] = f"{type(err).__name__}: {err}"
            return None
        follow_up = op.follow_up(parsed)
        return parsed if follow_up is None else self.run(follow_up, follows=follows or type(op).__name__)

    def skip(self, operation: type[Operation[Any]] | str, why: str) -> None:
        name = operation if isinstance(operation, str) else operation.__name__
        self.capture["skipped"].append({"operation": name, "why": why})


def record_host(session: HostSession, host: str, user: str) -> dict[str, Any]:
    """Every read-only operation of the catalog against the session's host, with arguments sampled from the host's
    own answers (a VM name from its inventory, …); operations that cannot be sampled are listed as skipped."""
    recording = Recording(session, host, user)
    _record_samples(recording)
    done = {entry["operation"] for entry in recording.capture["operations"] + recording.capture["skipped"]}
    for cls in sorted(read_only_operations(), key=lambda c: c.__name__):
        if cls.__name__ in done:
            continue
        if cls.__name__ in NOT_SAMPLED:
            recording.skip(cls, NOT_SAMPLED[cls.__name__])
        elif _needs_arguments(cls):
            recording.skip(cls, "it needs arguments the capture kit has no sample for")
        else:
            recording.run(cls())
    return recording.capture


def read_only_operations() -> list[type[Operation[Any]]]:
    return [cls for cls in catalog.operations() if cls.read_only]


def _record_samples(recording: Recording) -> None:
    run = recording.run
    run(catalog.TestConnection(require_local=False))
    inventory = run(catalog.ReadHostInventory())
    run(catalog.ReadHostInventory(vm_details=False))
    vms = inventory.vms if inventory is not None else []
    run(catalog.GetGuardians())
    run(catalog.ListShieldedCertificates())
    vm_host = run(catalog.GetVmHost())
    run(catalog.TestPath(vm_host.virtual_machine_path if vm_host and vm_host.virtual_machine_path else "C:\\"))
    if not vms:
        for cls in (catalog.ReadVmDetails, catalog.GetVM, catalog.GetVmSecurity, catalog.CompareVM):
            recording.skip(cls, "the host has no VM to ask about")
        recording.skip(catalog.GrantKeyProtectorAccess, "the host has no VM with a key protector")
        return
    details = run(catalog.ReadVmDetails([vm.name for vm in vms])) or {}
    sealed = next((vm for vm in vms if details.get(vm.name) and details[vm.name].tpm_enabled), vms[0])
    run(catalog.GetVM(vms[0].name))
    security = run(catalog.GetVmSecurity(sealed.name))
    options = catalog.ImportOptions(exported_config_path(vms[0].path, vms[0].vm_id), copy=True, generate_new_id=True)
    run(catalog.CompareVM(options))
    _record_grant(recording, security, inventory.guardians if inventory is not None else [])


def _record_grant(recording: Recording, security: Any, guardians: list[catalog.GuardianFacts]) -> None:
    """Granting a guardian access computes a new key protector in memory (the VM keeps its own): sampled with a
    VM's protector and a guardian of the host that has its private signing key."""
    owner = next((g for g in guardians if g.has_private_signing_key), None)
    if security is None or not security.has_key_protector or owner is None:
        why = "no VM with a key protector, or no guardian with its private signing key, on this host"
        recording.skip(catalog.GrantKeyProtectorAccess, why)
        return
    recording.run(catalog.GrantKeyProtectorAccess(security.key_protector, owner.name))


def _needs_arguments(cls: type[Operation[Any]]) -> bool:
    return any(
        f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    )


# -- values as JSON -----------------------------------------------------------------------------------------------


def arguments_of(op: Operation[Any]) -> dict[str, Any]:
    return {f.name: getattr(op, f.name) for f in dataclasses.fields(op) if f.init}  # type: ignore[arg-type]


def encode(value: Any) -> Any:
    """A parameter or argument value as JSON: switches and bytes marked, dataclasses as their fields."""
    if isinstance(value, Switch):
        return {"switch": True}
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


def decode(value: Any, hint: Any = None) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])
    if isinstance(value, dict) and dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        return hint(**{name: decode(item, hints.get(name)) for name, item in value.items()})
    return value


# -- reading a capture back ---------------------------------------------------------------------------------------


def operation_of(entry: dict[str, Any]) -> Operation[Any]:
    """The catalog operation an entry recorded, with its arguments."""
    cls = next(c for c in catalog.operations() if c.__name__ == entry["operation"])
    hints = typing.get_type_hints(cls)
    return cls(**{name: decode(value, hints.get(name)) for name, value in entry["arguments"].items()})


def result_of(entry: dict[str, Any]) -> PipelineResult:
    """The recorded messages unpacked as pypsrp unpacks them on the wire, collected as a live session collects them."""
    serializer = Serializer()
    output: list[Any] = []
    events: list[tuple[str, Any]] = []
    terminating: list[Any] = []
    for message in entry["messages"]:
        unpacked: Any = Message.unpack(_wire(message["type"], message["clixml"]), serializer).data
        if message["type"] == "PIPELINE_OUTPUT":
            output.append(unpacked.data)
            events.append(("output", unpacked.data))
        elif message["type"] == "ERROR_RECORD":
            events.append(("error", unpacked))
        elif message["type"] == "PIPELINE_STATE" and unpacked.error_record is not None:
            terminating.append(unpacked.error_record)
    return collect_result(output, events, terminating)


def read_back(entry: dict[str, Any]) -> Any:
    """What the console makes of a recorded answer: the operation's result, or the RemotingError it raises. Any
    other exception is a parser that cannot cope with what the host sent. A follow-up pipeline is read as the
    messages it holds (its operation is made from the read it follows)."""
    if entry.get("follows"):
        return result_of(entry)
    return operation_of(entry).read(result_of(entry))


def _wire(kind: str, clixml: str) -> bytes:
    """A PSRP message as it travels (MS-PSRP 2.2.1): destination client, its type, the pool and pipeline ids."""
    header = struct.pack("<II", 1, getattr(MessageType, kind)) + uuid.UUID(int=0).bytes_le * 2
    return header + b"\xef\xbb\xbf" + clixml.encode()


# -- anonymising --------------------------------------------------------------------------------------------------

# A text node of CLIXML and its element: <S N="Name">HV01</S>. Byte arrays (<BA>) are base64 and left alone.
_TEXT_NODE = re.compile(r"(<(?P<tag>[A-Za-z]+)(?:\s[^<>]*)?>)(?P<text>[^<]+)(?=</(?P=tag)>)")


def names_to_hide(host_names: Iterable[str], user: str, also: Iterable[str] = ()) -> dict[str, str]:
    """{name: placeholder} for the host's names (short, and FQDN with its domain), the account and its domain."""
    hidden: dict[str, str] = {}
    for name in filter(None, host_names):
        if _is_ip_address(name):
            hidden[name] = "192.0.2.1"  # TEST-NET-1: an address that is nobody's
            continue
        short, _dot, domain = name.partition(".")
        hidden[name] = PLACEHOLDERS["host"] + (f".{PLACEHOLDERS['domain']}" if domain else "")
        hidden[short] = PLACEHOLDERS["host"]
        if domain:
            hidden[domain] = PLACEHOLDERS["domain"]
    account_domain, account = _split_account(user)
    if account_domain and account_domain != ".":
        hidden[account_domain] = PLACEHOLDERS["domain"]
    if account:
        hidden[account] = PLACEHOLDERS["user"]
    for index, word in enumerate(filter(None, also), start=1):
        hidden[word] = f"NAME{index}"
    return {name: placeholder for name, placeholder in hidden.items() if len(name) >= 2}


def anonymise(capture: dict[str, Any], hidden: dict[str, str]) -> dict[str, Any]:
    """The capture with every hidden name replaced, in CLIXML text nodes and everywhere else; byte arrays and
    base64 values stay as they were (see README: certificates inside them still name the host)."""
    replace = _replacer(hidden)
    result = _walk(capture, replace)
    result["anonymised"] = True
    return result


def _walk(value: Any, replace: Callable[[str], str], key: str = "") -> Any:
    if isinstance(value, dict):
        if set(value) == {"base64"}:
            return value
        return {k: _walk(v, replace, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(item, replace) for item in value]
    if isinstance(value, str) and key == "clixml":
        return _TEXT_NODE.sub(lambda m: m.group(0) if m["tag"] == "BA" else m.group(1) + replace(m["text"]), value)
    if isinstance(value, str):
        return replace(value)
    return value


def _replacer(hidden: dict[str, str]) -> Callable[[str], str]:
    if not hidden:
        return lambda text: text
    names = sorted(hidden, key=len, reverse=True)  # an FQDN before its short name
    pattern = re.compile(
        r"(?<![A-Za-z0-9])(" + "|".join(re.escape(n) for n in names) + r")(?![A-Za-z0-9])", re.IGNORECASE
    )
    lowered = {name.lower(): placeholder for name, placeholder in hidden.items()}
    return lambda text: pattern.sub(lambda m: lowered[m.group(1).lower()], text)


def _split_account(user: str) -> tuple[str, str]:
    """('LAB', 'hvconsole') from LAB\\hvconsole, hvconsole@lab.example or .\\hvconsole ('.')."""
    if "\\" in user:
        domain, _sep, name = user.rpartition("\\")
        return domain, name
    if "@" in user:
        name, _sep, domain = user.partition("@")
        return domain, name
    return "", user


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
