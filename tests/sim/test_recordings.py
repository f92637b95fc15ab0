"""The simulator's exchanges have the structure of real Windows exchanges recorded by pypsrp's test suite.

Compared: WSMan action order, PSRP message types, the property sets of APPLICATION_PRIVATE_DATA and of error
records, and the Receive timeout fault. Bytes, ids and timings differ by nature and are not compared.
"""

from __future__ import annotations

import base64
import itertools
import os
import struct
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import pytest
import yaml
from psrpcore.types import PSEnumBase, PSType, serialize_clixml
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool
from pypsrp.wsman import NAMESPACES

from hypervsim import SimHost
from hypervsim.serialization import at_depth_one
from hypervsim.types import dotnet_object
from tests.plugins.sim import sim_wsman as wsman

# ../shared/reference/ beside the checkout (CI=true always has it there), or the nearest one up the tree (a worktree).
_PLACES = [parent / "shared" / "reference" / "pypsrp-recordings" for parent in Path(__file__).resolve().parents]
RECORDINGS = next((place for place in _PLACES if place.is_dir()), _PLACES[3])
MESSAGE_TYPES = {
    0x00010002: "SESSION_CAPABILITY",
    0x00010004: "INIT_RUNSPACEPOOL",
    0x00010005: "PUBLIC_KEY",
    0x00010006: "ENCRYPTED_SESSION_KEY",
    0x00021005: "RUNSPACEPOOL_STATE",
    0x00021006: "CREATE_PIPELINE",
    0x00021009: "APPLICATION_PRIVATE_DATA",
    0x00041004: "PIPELINE_OUTPUT",
    0x00041005: "ERROR_RECORD",
    0x00041006: "PIPELINE_STATE",
    0x00041010: "PROGRESS_RECORD",
}
STREAM_TAGS = ("creationXml", "Stream", "Arguments")
CLIXML_NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"


class Exchange:
    """One request/response pair: the action, how it was answered, and the PSRP messages the server sent."""

    def __init__(self, request: str, response: str) -> None:
        self.request, self.response = SafeET.fromstring(request), SafeET.fromstring(response)
        self.action = _action(self.request)
        answer = _action(self.response)
        state = self.response.find(".//rsp:CommandState", NAMESPACES)
        done = state is not None and state.attrib["State"].endswith("/Done")
        self.answer = "fault" if answer == "fault" else ("Done" if done else answer)
        self.sent = [m for m in _messages(self.response)]

    def describe(self) -> str:
        return f"{self.action}->{self.answer}"


def _action(root: Element) -> str:
    action = root.find("s:Header/wsa:Action", NAMESPACES)
    return (action.text or "").rsplit("/", 1)[-1] if action is not None else "?"


def _messages(root: Element) -> list[tuple[str, Element]]:
    data = b"".join(base64.b64decode(e.text) for e in root.iter() if e.tag.rsplit("}", 1)[-1] in STREAM_TAGS and e.text)
    messages, pending = [], b""
    while data:
        flags, length = data[16], struct.unpack(">I", data[17:21])[0]
        pending += data[21 : 21 + length]
        data = data[21 + length :]
        if flags & 2:
            kind = struct.unpack("<I", pending[4:8])[0]
            body = pending[40:].decode("utf-8-sig")
            messages.append((MESSAGE_TYPES.get(kind, hex(kind)), SafeET.fromstring(body) if body else Element("Nil")))
            pending = b""
    return messages


def body_marks(exchanges: list[Exchange]) -> set[tuple[str, bool]]:
    """(message type, whether its body starts with a UTF-8 BOM) of every message the server sent with a body."""
    marks = set()
    for exchange in exchanges:
        streams = [e for e in exchange.response.iter() if e.tag.rsplit("}", 1)[-1] in STREAM_TAGS and e.text]
        data = b"".join(base64.b64decode(e.text or "") for e in streams)
        while data:
            flags, length = data[16], struct.unpack(">I", data[17:21])[0]
            if flags & 1 and length > 40:  # the first fragment of a message holds its header and the body's start
                kind = struct.unpack("<I", data[25:29])[0]
                marks.add((MESSAGE_TYPES.get(kind, hex(kind)), data[61:64] == b"\xef\xbb\xbf"))
            data = data[21 + length :]
    return marks


def windows(name: str) -> list[Exchange]:
    recorded = yaml.safe_load((RECORDINGS / name).read_text())
    return [Exchange(m["request"], m["response"]) for m in recorded["messages"] if m.get("response")]


def simulator_client(h: SimHost, **kw: Any) -> tuple[Any, list[Exchange]]:
    client = wsman(h, **kw)
    exchanges: list[Exchange] = []
    send = client.transport.send

    def recording_send(message: bytes, **options: Any) -> bytes:
        try:
            response = send(message, **options)
        except Exception as error:
            exchanges.append(Exchange(message.decode(), getattr(error, "response_text", "") or "<x/>"))
            raise
        exchanges.append(Exchange(message.decode(), response.decode()))
        return response

    client.transport.send = recording_send  # type: ignore[method-assign]
    return client, exchanges


def shape(exchanges: list[Exchange]) -> list[str]:
    """Action order with repeats collapsed (how many Receives a reply takes depends on timing)."""
    return [key for key, _ in itertools.groupby(e.describe() for e in exchanges)]


def sent_types(exchanges: list[Exchange]) -> list[str]:
    return [kind for e in exchanges for kind, _ in e.sent]


def members(obj: Element) -> set[str]:
    return {child.attrib["N"] for child in obj.find("MS") or [] if "N" in child.attrib}


def first(exchanges: list[Exchange], kind: str) -> Element:
    return next(body for e in exchanges for k, body in e.sent if k == kind)


@pytest.fixture(autouse=True)
def recordings() -> None:
    """The recordings, which CI must have: there their absence fails every test here; elsewhere they are skipped."""
    if not RECORDINGS.is_dir():
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"the Windows recordings are missing ({RECORDINGS}); CI compares the simulator with them")
        pytest.skip(f"the Windows recordings are not here ({RECORDINGS}); structural comparison skipped")


@pytest.fixture
def host(sim_host: Any) -> SimHost:
    return sim_host("healthy", https=True, auth="basic")


def test_opening_and_closing_a_pool_has_the_windows_shape(host: SimHost) -> None:
    client, exchanges = simulator_client(host)
    RunspacePool(client).__enter__().close()
    reference = windows("test_psrp_open_runspace.yml")
    assert (
        shape(exchanges)
        == shape(reference)
        == ["Create->CreateResponse", "Receive->ReceiveResponse", "Delete->DeleteResponse"]
    )
    assert sent_types(exchanges) == sent_types(reference)


def test_every_message_body_starts_with_the_utf8_bom_as_on_windows(host: SimHost) -> None:
    client, exchanges = simulator_client(host)
    with RunspacePool(client) as pool:
        for cmdlet in ("Get-VM", "Get-Nothing-Such"):  # output, then an error record and a failed pipeline
            PowerShell(pool).add_cmdlet(cmdlet).invoke()
    reference = body_marks(windows("test_psrp_open_runspace.yml") + windows("test_psrp_error_failed.yml"))
    assert reference and all(bom for _, bom in reference)  # what Windows does
    ours = body_marks(exchanges)
    assert {"APPLICATION_PRIVATE_DATA", "PIPELINE_OUTPUT", "PIPELINE_STATE"} <= {kind for kind, _ in ours}
    assert all(bom for _, bom in ours), ours


def test_application_private_data_has_the_windows_psversiontable(host: SimHost) -> None:
    client, exchanges = simulator_client(host)
    RunspacePool(client).__enter__().close()

    def table(exchanges: list[Exchange]) -> dict[str, str]:
        data = first(exchanges, "APPLICATION_PRIVATE_DATA")
        version_table = data.find(".//DCT/En/Obj[@N='Value']/DCT")
        assert version_table is not None
        return {en.find("S[@N='Key']").text: en[1].tag for en in version_table}  # type: ignore[union-attr,misc]

    assert table(exchanges) == table(windows("test_psrp_open_runspace.yml"))


def test_a_failing_pipeline_has_the_windows_shape_and_reason(host: SimHost) -> None:
    client, exchanges = simulator_client(host)
    with RunspacePool(client) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VMHost").add_statement()
        ps.add_cmdlet("Get-VM").add_parameter("Name", "NoSuchVM").add_parameter("ErrorAction", "Stop")
        ps.invoke()
    reference = windows("test_psrp_error_failed.yml")
    assert shape(exchanges) == shape(reference)
    command = [e for e in exchanges if e.action == "Receive" and e.sent and e.sent[0][0] != "SESSION_CAPABILITY"]
    recorded = [e for e in reference if e.action == "Receive" and e.answer == "Done"]
    assert sent_types(command) == sent_types(recorded) == ["PROGRESS_RECORD", "PIPELINE_OUTPUT", "PIPELINE_STATE"]
    ours = first(exchanges, "PIPELINE_STATE").find("MS/Obj[@N='ExceptionAsErrorRecord']")
    theirs = first(reference, "PIPELINE_STATE").find("MS/Obj[@N='ExceptionAsErrorRecord']")
    assert ours is not None and theirs is not None
    # The recorded failure came from script text, which adds its script stack trace.
    assert members(ours) == members(theirs) - {"ErrorDetails_ScriptStackTrace"}


def test_an_error_record_has_the_windows_property_set(host: SimHost) -> None:
    client, exchanges = simulator_client(host)
    with RunspacePool(client) as pool:
        PowerShell(pool).add_cmdlet("Get-VM").add_parameter("Name", "NoSuchVM").invoke()
    ours = first(exchanges, "ERROR_RECORD")
    theirs = first(windows("test_psrp_with_jea_configuration.yml"), "ERROR_RECORD")
    assert members(ours) == members(theirs)
    exception, reference_exception = ours.find("MS/Obj[@N='Exception']"), theirs.find("MS/Obj[@N='Exception']")
    assert exception is not None and reference_exception is not None
    base = {"Message", "Data", "InnerException", "TargetSite", "StackTrace", "HelpLink", "Source", "HResult"}
    assert {p.attrib["N"] for p in exception.find("Props") or []} == base
    assert base <= {p.attrib["N"] for p in reference_exception.find("Props") or []}
    assert [t.text for t in exception.find("TN") or []][-2:] == ["System.Exception", "System.Object"]


def test_receive_timeout_fault_matches_windows(host: SimHost) -> None:
    host.faults.slow_cmdlet = ("Get-VMHost", 2.5)
    client, exchanges = simulator_client(host, operation_timeout=1)
    with RunspacePool(client) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VMHost")
        ps.begin_invoke()
        while ps.state == PSInvocationState.RUNNING:  # pypsrp retries the timeout fault silently
            ps.poll_invoke(timeout=1)
    reference = windows("test_psrp_long_running_cmdlet.yml")
    assert shape(exchanges) == shape(reference)

    def fault(exchanges: list[Exchange]) -> tuple[str | None, ...]:
        root = next(e.response for e in exchanges if e.answer == "fault")
        detail = root.find(".//wsmanfault:WSManFault", NAMESPACES)
        assert detail is not None
        texts = [root.find(f".//s:{path}", NAMESPACES) for path in ("Code/s:Value", "Subcode/s:Value", "Reason/s:Text")]
        message = detail.find("wsmanfault:Message", NAMESPACES)
        return (
            *(t.text.strip() if t is not None and t.text else None for t in texts),
            detail.attrib["Code"],
            message.text.strip() if message is not None and message.text else None,
        )

    assert fault(exchanges) == fault(reference)
    assert fault(exchanges)[3] == "2150858793"


def test_depth_one_output_has_the_shape_windows_gives_a_nested_object() -> None:
    """The recorded ServiceController's nested services, handle and status arrive as texts; rebuilt here with the
    same kinds of values, the simulator's depth-1 output has the same shape."""
    recorded = next(
        body
        for e in windows("test_psrp_multiple_commands.yml")
        for kind, body in e.sent
        if kind == "PIPELINE_OUTPUT"
        and body.find("TN/T") is not None
        and body.find("TN/T").text == "System.ServiceProcess.ServiceController"  # type: ignore[union-attr]
    )
    service = dotnet_object(
        ["System.ServiceProcess.ServiceController", "System.ComponentModel.Component", "System.MarshalByRefObject"],
        {
            "CanStop": True,
            "DisplayName": "Windows Remote Management (WS-Management)",
            "DependentServices": [],
            "ServicesDependedOn": [
                dotnet_object(["System.ServiceProcess.ServiceController"], {}, to_string=name)
                for name in ("RPCSS", "HTTP")
            ],
            "ServiceHandle": dotnet_object(["Microsoft.Win32.SafeHandles.SafeServiceHandle"], {}),
            "Status": ServiceStatus.Running,
            "Site": None,
        },
        to_string="winrm",
    )
    clixml = serialize_clixml(at_depth_one(service), None)  # type: ignore[arg-type]  # no SecureString in it
    ours = SafeET.fromstring(clixml.replace(f' xmlns="{CLIXML_NAMESPACE}"', ""))[0]  # <Objs><Obj>…
    assert props_shape(ours) == {name: shape for name, shape in props_shape(recorded).items() if name in PROPS}


PROPS = ("CanStop", "DisplayName", "DependentServices", "ServicesDependedOn", "ServiceHandle", "Status", "Site")


def props_shape(obj: Element) -> dict[str, tuple[str, ...]]:
    """Per property: its element, and for a list the elements of its items (<Obj><LST><S/>...)."""
    shapes = {}
    for prop in obj.find("Props") or []:
        items = prop.find("LST")
        inner = tuple(child.tag for child in items) if items is not None else ()
        shapes[prop.attrib["N"]] = (prop.tag, "LST" if items is not None else "", *inner)
    return shapes


@PSType(["System.ServiceProcess.ServiceControllerStatus"])
class ServiceStatus(PSEnumBase):
    Stopped = 1
    Running = 4
