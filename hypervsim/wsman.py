"""The WS-Management shell protocol (MS-WSMV) of a simulated host: parse a SOAP request, act, answer like Windows.

Requests are parsed with defusedxml (no DTDs, no entity expansion). Anything the simulator cannot accept is
answered with a WSMan fault, never an exception: WSManService.handle() always returns a response.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from hypervsim.faults import ConnectionDrop
from hypervsim.jea import Role
from hypervsim.logon import Logon
from hypervsim.psrp import ProtocolViolation, RunspaceSession

if TYPE_CHECKING:
    from hypervsim.server import HostRuntime

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "pwsh": "http://schemas.microsoft.com/powershell",
}
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
POWERSHELL_URI = "http://schemas.microsoft.com/powershell/"
SIGNAL_TERMINATE = f"{SHELL}/signal/Terminate"
SIGNAL_CTRL_C = "powershell/signal/ctrl_c"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
MAX_OPERATION_TIMEOUT = 600.0
IDLE_TIMEOUT = 7200.0  # seconds, Windows' default IdleTimeOut: a shell nobody uses is deleted
# Seconds a Receive that has output lingers for its running command to finish. It ends as soon as the command does,
# so it costs nothing then; long enough that a pipeline busy on a loaded machine (a test run sharing two cores) still
# sends its output and end in one reply, as on Windows, instead of one more Receive per pause.
OUTPUT_BATCH_WAIT = 0.25

TIMED_OUT = 2150858793
UNKNOWN_SHELL = 2150858843
INVALID_HEADER = 2150858767
INVALID_XML = 2150858778  # simulator's choice of code for unparsable envelopes and body content
UNSUPPORTED_ACTION = 2150858782  # simulator's choice of code for actions it does not implement
INJECTED = 2150858770  # the code a test's injected wsman_fault carries
INVALID_RESOURCE_URI = 2150858811  # ERROR_WSMAN_INVALID_RESOURCE_URI: no such session configuration registered
TIMEOUT_TEXT = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout."
UNKNOWN_SHELL_TEXT = (
    "The WS-Management service cannot process the request because the request contained invalid selectors for the "
    "resource."
)
UNKNOWN_COMMAND_TEXT = (
    "The Windows Remote Shell received a request to perform an operation on a command identifier that does not "
    "exist. Either the command has completed execution or the client specified an invalid command identifier."
)


class Fault(Exception):
    """A WSMan fault to answer instead of the action's response."""

    def __init__(self, code: int, subcode: str, text: str, sender: bool = True, detail: str = "") -> None:
        super().__init__(text)
        self.code, self.subcode, self.text, self.sender, self.detail = code, subcode, text, sender, detail


def unknown_shell() -> Fault:
    detail = "<w:FaultDetail>http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors</w:FaultDetail>"
    return Fault(UNKNOWN_SHELL, "w:InvalidSelectors", UNKNOWN_SHELL_TEXT, detail=detail)


def unknown_configuration(resource_uri: str) -> Fault:
    """What WinRM answers for a session configuration that is not registered. PowerShell's own client shows this
    code as "Cannot find the <name> session configuration in the WSMan: drive on the <host> computer."."""
    detail = "<w:FaultDetail>http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI</w:FaultDetail>"
    text = (
        f"The WS-Management service cannot process the request. The resource URI ({resource_uri}) was not found in "
        "the WS-Management catalog. The catalog contains the metadata that describes resources, or logical endpoints."
    )
    return Fault(INVALID_RESOURCE_URI, "a:DestinationUnreachable", text, detail=detail)


def malformed(reason: str) -> Fault:
    return Fault(
        INVALID_XML, "w:SchemaValidationError", f"The WS-Management service cannot process the request. {reason}"
    )


# MS-WSMV 3.1.4.1.7: a reply is no larger than the client's MaxEnvelopeSize, or than the service's MaxEnvelopeSizekb
# (default 500, section 2.2.4.10) times 1024 when the client asks for more or does not say; below 8192 octets the
# service returns a wsman:EncodingLimit fault.
SERVICE_MAX_ENVELOPE = 500 * 1024
MIN_ENVELOPE = 8192


def oversized(limit: int) -> Fault:
    text = f"The WS-Management service cannot process the request because the request exceeds {limit} bytes."
    return Fault(2150858817, "w:EncodingLimit", text)


@dataclass
class Request:
    action: str
    message_id: str
    resource_uri: str
    shell_id: str | None
    timeout: float
    max_envelope: int
    body: Element | None
    client_ip: str = ""
    logon: Logon | None = None  # how the request's connection authenticated

    def body_as(self, name: str) -> Element | None:
        """The body's element when it is the expected rsp:<name> (or pwsh/other prefixed) element."""
        prefix, _, local = name.partition(":")
        tag = f"{{{NS[prefix]}}}{local}"
        return self.body if self.body is not None and self.body.tag == tag else None


def _header_text(header: Element, path: str) -> str | None:
    element = header.find(path, NS)
    return element.text.strip() if element is not None and element.text else None


def _seconds(value: str | None, default: float) -> float:
    if value is None:
        return default
    match = re.fullmatch(r"PT(\d{1,6}(?:\.\d{1,3})?)S", value)
    if not match:
        text = (
            "The WS-Management service cannot process the request. "
            f"The XML contains an invalid timeout field in the SOAP header: {value}."
        )
        raise Fault(INVALID_HEADER, "a:InvalidMessageInformationHeader", text)
    return min(float(match.group(1)), MAX_OPERATION_TIMEOUT)


def parse(body: bytes) -> Request:
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException, ValueError) as exc:
        raise malformed(f"The request is not well-formed XML ({type(exc).__name__}).") from None
    header, soap_body = root.find("s:Header", NS), root.find("s:Body", NS)
    if root.tag != f"{{{NS['s']}}}Envelope" or header is None or soap_body is None:
        raise malformed("The request is not a SOAP envelope.")
    action, message_id = _header_text(header, "a:Action"), _header_text(header, "a:MessageID")
    if not action or not message_id:
        text = (
            "The WS-Management service cannot process the request. "
            "The request contains one or more invalid SOAP headers."
        )
        raise Fault(INVALID_HEADER, "a:InvalidMessageInformationHeader", text)
    selector = header.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
    envelope_size = _header_text(header, "w:MaxEnvelopeSize") or str(SERVICE_MAX_ENVELOPE)
    if not envelope_size.isdigit():
        raise malformed("MaxEnvelopeSize is not a number.")
    if int(envelope_size) < MIN_ENVELOPE:
        # The simulator's wording: MS-WSMV names the fault (wsman:EncodingLimit), not its text or code.
        text = f"The WS-Management service cannot process the request because MaxEnvelopeSize is below {MIN_ENVELOPE}."
        raise Fault(2150858817, "w:EncodingLimit", text)
    return Request(
        action=action,
        message_id=message_id,
        resource_uri=_header_text(header, "w:ResourceURI") or "",
        shell_id=selector.text.strip().upper() if selector is not None and selector.text else None,
        timeout=_seconds(_header_text(header, "w:OperationTimeout"), 60.0),
        max_envelope=min(int(envelope_size), SERVICE_MAX_ENVELOPE),
        body=soap_body[0] if len(soap_body) else None,
    )


def _b64(text: str | None) -> bytes:
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        raise malformed("A stream is not valid base64.") from None


def _uuid(text: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(text or "")
    except ValueError:
        raise malformed(f"'{text}' is not a GUID.") from None


def _envelope(action: str, relates_to: str | None, body: str) -> bytes:
    relates = f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>" if relates_to else ""
    namespaces = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items() if k != "pwsh")
    return (
        f'<s:Envelope xml:lang="en-US" {namespaces}><s:Header><a:Action>{action}</a:Action>'
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID><a:To>{ANONYMOUS}</a:To>{relates}"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def fault_response(fault: Fault, relates_to: str | None, machine: str) -> bytes:
    kind = "s:Sender" if fault.sender else "s:Receiver"
    text = escape(fault.text)
    body = (
        f"<s:Fault><s:Code><s:Value>{kind}</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value></s:Subcode>"
        f'</s:Code><s:Reason><s:Text xml:lang="en-US">{text} </s:Text></s:Reason><s:Detail>{fault.detail}'
        f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{fault.code}" '
        f'Machine="{escape(machine)}"><f:Message>{text} </f:Message></f:WSManFault></s:Detail></s:Fault>'
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


@dataclass
class Shell:
    id: str
    resource_uri: str
    owner: str
    client_ip: str
    session: RunspaceSession
    last_used: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        return (
            f"<rsp:ShellId>{self.id}</rsp:ShellId><rsp:ResourceUri>{escape(self.resource_uri)}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(self.owner)}</rsp:Owner><rsp:ClientIP>{escape(self.client_ip)}</rsp:ClientIP>"
            "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut><rsp:InputStreams>stdin pr</rsp:InputStreams>"
            "<rsp:OutputStreams>stdout</rsp:OutputStreams><rsp:MaxIdleTimeOut>PT2147483.647S</rsp:MaxIdleTimeOut>"
            "<rsp:Locale>en-US</rsp:Locale><rsp:DataLocale>en-US</rsp:DataLocale>"
            "<rsp:CompressionMode>NoCompression</rsp:CompressionMode><rsp:ProfileLoaded>Yes</rsp:ProfileLoaded>"
            "<rsp:Encoding>UTF8</rsp:Encoding><rsp:BufferMode>Block</rsp:BufferMode>"
            "<rsp:State>Connected</rsp:State><rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>"
            "<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
        )


class WSManService:
    """The shells of one host and the actions on them."""

    def __init__(self, host: HostRuntime) -> None:
        self.host = host
        self.shells: dict[str, Shell] = {}
        self._lock = threading.Lock()

    def handle(self, body: bytes, client_ip: str, session_logon: Logon | None = None) -> tuple[int, bytes]:
        """HTTP status and SOAP response for one request body. Raises only ConnectionDrop."""
        relates_to = None
        try:
            request = parse(body)
            relates_to, request.client_ip, request.logon = request.message_id, client_ip, session_logon
            if self.host.faults.take_wsman_fault():
                raise Fault(
                    INJECTED,
                    "w:InternalError",
                    "The WS-Management service encountered an injected fault.",
                    sender=False,
                )
            return 200, self._dispatch(request)
        except Fault as fault:
            return 500, fault_response(fault, relates_to, self.host.name)
        except ProtocolViolation as exc:
            return 500, fault_response(malformed(f"The PSRP data is invalid: {exc}"), relates_to, self.host.name)

    def close_all(self) -> None:
        with self._lock:
            shells, self.shells = list(self.shells.values()), {}
        for shell in shells:
            shell.session.close()

    def _dispatch(self, request: Request) -> bytes:
        handlers: dict[str, Callable[[Request], bytes]] = {
            TRANSFER + "Create": self._create,
            TRANSFER + "Delete": self._delete,
            TRANSFER + "Get": self._get,
            f"{SHELL}/Command": self._command,
            f"{SHELL}/Send": self._send,
            f"{SHELL}/Receive": self._receive,
            f"{SHELL}/Signal": self._signal,
        }
        handler = handlers.get(request.action)
        if handler is None:
            text = f"The WS-Management service does not support the action {request.action}."
            raise Fault(UNSUPPORTED_ACTION, "a:ActionNotSupported", text)
        return handler(request)

    def _shell(self, request: Request) -> Shell:
        with self._lock:
            shell = self.shells.get(request.shell_id or "")
        if shell is None or shell.session.closed:
            raise unknown_shell()
        shell.last_used = time.monotonic()
        return shell

    def _expire_idle_shells(self) -> None:
        # Clients that vanish without Delete would otherwise keep their runspace pools forever.
        cutoff = time.monotonic() - IDLE_TIMEOUT
        with self._lock:
            idle = [s for s in self.shells.values() if s.last_used < cutoff]
            for shell in idle:
                del self.shells[shell.id]
        for shell in idle:
            shell.session.close()

    def _create(self, request: Request) -> bytes:
        if not request.resource_uri.startswith(POWERSHELL_URI):
            raise malformed(f"The resource URI {request.resource_uri} is not a PowerShell session configuration.")
        configuration = request.resource_uri[len(POWERSHELL_URI) :]
        visible: Role | None = None
        if self.host.endpoints is not None:
            match = [name for name in self.host.endpoints if name.casefold() == configuration.casefold()]
            if not match:
                raise unknown_configuration(request.resource_uri)
            visible = self.host.endpoints[match[0]]
        shell_element = request.body_as("rsp:Shell")
        creation = shell_element.find("pwsh:creationXml", NS) if shell_element is not None else None
        if shell_element is None or creation is None:
            raise malformed("The Create request has no creationXml.")
        self._expire_idle_shells()
        shell_id = str(_uuid(shell_element.get("ShellId") or str(uuid.uuid4()))).upper()
        session = RunspaceSession(self.host, request.max_envelope, visible, request.logon)
        session.receive(_b64(creation.text))
        shell = Shell(shell_id, request.resource_uri, self.host.account.user, request.client_ip, session)
        with self._lock:
            if shell_id in self.shells:
                raise malformed("A shell with this ShellId exists already.")
            self.shells[shell_id] = shell
            self.host.opened_configurations.append(configuration)
        body = (
            f"<x:ResourceCreated><a:Address>{escape(self.host.url)}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{escape(request.resource_uri)}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
            f"</x:ResourceCreated><rsp:Shell>{shell.describe()}</rsp:Shell>"
        )
        return _envelope(TRANSFER + "CreateResponse", request.message_id, body)

    def _delete(self, request: Request) -> bytes:
        with self._lock:
            shell = self.shells.pop(request.shell_id or "", None)
        if shell is None:
            raise unknown_shell()
        shell.session.close()
        return _envelope(TRANSFER + "DeleteResponse", request.message_id, "")

    def _get(self, request: Request) -> bytes:
        shell = self._shell(request)
        return _envelope(TRANSFER + "GetResponse", request.message_id, f"<rsp:Shell>{shell.describe()}</rsp:Shell>")

    def _command(self, request: Request) -> bytes:
        shell = self._shell(request)
        line = request.body_as("rsp:CommandLine")
        if line is None:
            raise malformed("The Command request has no CommandLine.")
        command_id = _uuid(line.get("CommandId") or str(uuid.uuid4()))
        if command_id in shell.session.runs:
            raise malformed("A command with this CommandId exists already.")
        shell.session.receive(_b64(line.findtext("rsp:Arguments", "", NS)), command_id, new_pipeline=True)
        body = f"<rsp:CommandResponse><rsp:CommandId>{str(command_id).upper()}</rsp:CommandId></rsp:CommandResponse>"
        return _envelope(f"{SHELL}/CommandResponse", request.message_id, body)

    def _send(self, request: Request) -> bytes:
        shell = self._shell(request)
        send = request.body_as("rsp:Send")
        streams = send.findall("rsp:Stream", NS) if send is not None else []
        if not streams:
            raise malformed("The Send request has no stream.")
        for stream in streams:
            command_id = stream.get("CommandId")
            pipeline_id = _uuid(command_id) if command_id else None
            if pipeline_id is not None and pipeline_id not in shell.session.runs:
                raise Fault(UNKNOWN_SHELL, "w:InvalidSelectors", UNKNOWN_COMMAND_TEXT)
            shell.session.receive(_b64(stream.text), pipeline_id)
        return _envelope(f"{SHELL}/SendResponse", request.message_id, "<rsp:SendResponse/>")

    def _receive(self, request: Request) -> bytes:
        shell = self._shell(request)
        session = shell.session
        receive = request.body_as("rsp:Receive")
        desired = receive.find("rsp:DesiredStream", NS) if receive is not None else None
        command_id = desired.get("CommandId") if desired is not None else None
        pipeline_id = _uuid(command_id) if command_id else None
        run = session.runs.get(pipeline_id) if pipeline_id else None
        if pipeline_id is not None and run is None:
            raise Fault(UNKNOWN_SHELL, "w:InvalidSelectors", UNKNOWN_COMMAND_TEXT)
        with session.changed:
            # Long poll: sleep on the condition until output arrives, the command ends or the shell goes away.
            ready = session.changed.wait_for(
                lambda: session.closed or bool(session.outbox[pipeline_id]) or (run is not None and run.finished),
                timeout=request.timeout,
            )
            if session.closed:
                raise unknown_shell()
            if not ready:
                raise Fault(TIMED_OUT, "w:TimedOut", TIMEOUT_TEXT, sender=False)
            if run is not None:
                # Like WinRM's block buffering: a command about to finish sends its output and end together.
                session.changed.wait_for(lambda: run.finished or session.closed, timeout=OUTPUT_BATCH_WAIT)
            if run is not None and not run.finished and not session.reply_full(pipeline_id):
                self.host.count_paced_reply()  # the command's pace, not the envelope, ends this reply
            payloads = session.take(pipeline_id)
            done = run is not None and run.finished and not session.outbox[pipeline_id]
        return _envelope(f"{SHELL}/ReceiveResponse", request.message_id, _receive_body(payloads, command_id, done))

    def _signal(self, request: Request) -> bytes:
        shell = self._shell(request)
        signal = request.body_as("rsp:Signal")
        code = signal.findtext("rsp:Code", "", NS).strip() if signal is not None else ""
        pipeline_id = _uuid(signal.get("CommandId") if signal is not None else None)
        if pipeline_id not in shell.session.runs:
            raise Fault(UNKNOWN_SHELL, "w:InvalidSelectors", UNKNOWN_COMMAND_TEXT)
        if code == SIGNAL_TERMINATE:
            shell.session.close_pipeline(pipeline_id)
        elif code == SIGNAL_CTRL_C:
            shell.session.stop_pipeline(pipeline_id)
        else:
            raise malformed(f"The signal code {code} is not supported.")
        return _envelope(f"{SHELL}/SignalResponse", request.message_id, "<rsp:SignalResponse/>")


def _receive_body(payloads: list[bytes], command_id: str | None, done: bool) -> str:
    """The body of a Receive reply: one stdout stream per payload (RunspaceSession.take keeps their sum, wrappers
    and base64 counted, inside the client's MaxEnvelopeSize)."""
    target = f' CommandId="{str(_uuid(command_id)).upper()}"' if command_id else ""
    streams = "".join(
        f'<rsp:Stream Name="stdout"{target}>{base64.b64encode(p).decode()}</rsp:Stream>' for p in payloads
    )
    state = ""
    if command_id:
        exit_code = "<rsp:ExitCode>0</rsp:ExitCode>" if done else ""
        state = f"{SHELL}/CommandState/{'Done' if done else 'Running'}"
        state = f'<rsp:CommandState{target} State="{state}">{exit_code}</rsp:CommandState>'
    return f"<rsp:ReceiveResponse>{streams}{state}</rsp:ReceiveResponse>"


__all__ = ["ConnectionDrop", "Fault", "WSManService", "fault_response", "oversized"]
