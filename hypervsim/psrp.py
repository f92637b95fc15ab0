"""PowerShell Remoting on a simulated host: one runspace pool per WSMan shell, one thread per pipeline.

psrpcore's server classes do the PSRP state machine; this module makes their exchanges look like Windows
PowerShell 5.1 (PSVersionTable, the first-use progress record, error records with the real .NET exception chain,
no PIPELINE_STATE=Running) and runs the commands of a pipeline against the host model.
"""

from __future__ import annotations

import logging
import struct
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psrpcore
from psrpcore.types import (
    CommandOrigin,
    CommandTypes,
    ErrorCategory,
    ProgressRecordType,
    PSCredential,
    PSDict,
    PSInt,
    PSInt64,
    PSInvocationState,
    PSList,
    PSNoteProperty,
    PSObject,
    PSPrimitiveDictionary,
    PSRPMessageType,
    PSSecureString,
    PSVersion,
    SessionStateEntryVisibility,
    add_note_property,
)

from hypervsim import logon
from hypervsim.capture import Capture, not_captured
from hypervsim.cmdlets import CMDLETS, CmdletError, Invocation, command_not_found, command_type
from hypervsim.faults import ConnectionDrop
from hypervsim.jea import Role
from hypervsim.logon import Logon
from hypervsim.serialization import at_depth_one
from hypervsim.types import Credential, Secret

if TYPE_CHECKING:
    from hypervsim.server import HostRuntime

log = logging.getLogger(__name__)

UPDATE_BUILD_REVISION = "2849"  # the cumulative update level the simulated hosts report
HRESULT_COR_E_EXCEPTION = -2146233087
NO_LANGUAGE = "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."
RUNTIME_EXCEPTION_BASES = ["System.Management.Automation.RuntimeException", "System.SystemException"]
CANONICAL_NAMES = {name.lower(): name for name in CMDLETS}
MSCORLIB = "mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089"


class ProtocolViolation(Exception):
    """The client sent PSRP data the simulator cannot accept (answered with a WSMan fault)."""


def windows_private_data(os_build: str) -> dict[str, Any]:
    """ApplicationPrivateData as Windows PowerShell 5.1 on this OS build sends it when a runspace pool opens."""
    ps_version = f"5.1.{os_build}.{UPDATE_BUILD_REVISION}"
    compatible = PSList([PSVersion(v) for v in ("1.0", "2.0", "3.0", "4.0", "5.0", ps_version)])
    compatible.PSObject.type_names = ["System.Version[]", "System.Array", "System.Object"]
    table = PSPrimitiveDictionary(
        {
            "PSVersion": PSVersion(ps_version),
            "PSEdition": "Desktop",
            "PSCompatibleVersions": compatible,
            "CLRVersion": PSVersion("4.0.30319.42000"),
            "BuildVersion": PSVersion(f"10.0.{os_build}.{UPDATE_BUILD_REVISION}"),
            "WSManStackVersion": PSVersion("3.0"),
            "PSRemotingProtocolVersion": PSVersion("2.3"),
            "SerializationVersion": PSVersion("1.1.0.1"),
        }
    )
    return {"PSVersionTable": table}


def split_frames(data: bytes) -> None:
    """Reject data that is not a whole number of well-formed PSRP fragments (psrpcore would misread it)."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < 21:
            raise ProtocolViolation("truncated PSRP fragment header")
        (length,) = struct.unpack(">I", data[offset + 17 : offset + 21])
        offset += 21 + length
        if offset > len(data):
            raise ProtocolViolation("truncated PSRP fragment")


# Error records, shaped like Windows PowerShell 5.1 serializes them ------------------------------------------------


def _category(value: Any) -> ErrorCategory:
    if isinstance(value, ErrorCategory):
        return value
    return ErrorCategory(value) if isinstance(value, int) else ErrorCategory[str(value)]


def _exception(message: str, type_chain: list[str]) -> PSObject:
    exc = PSObject()
    names = [n for n in type_chain if n != "System.Object"]
    if "System.Exception" not in names:
        names.append("System.Exception")
    exc.PSObject.type_names = [*names, "System.Object"]
    exc.PSObject.to_string = f"{names[0]}: {message}"
    data = PSDict()
    data.PSObject.type_names = ["System.Collections.ListDictionaryInternal", "System.Object"]
    props: dict[str, Any] = {"Message": message, "Data": data, "InnerException": None, "TargetSite": None}
    props |= {"StackTrace": None, "HelpLink": None, "Source": None, "HResult": PSInt(HRESULT_COR_E_EXCEPTION)}
    for name, value in props.items():
        exc.PSObject.adapted_properties.append(PSNoteProperty(name, value))
    return exc


def _target_type(target: Any) -> str:
    if target is None:
        return ""
    if isinstance(target, PSObject) and target.PSObject.type_names and not isinstance(target, str):
        return target.PSObject.type_names[0].rsplit(".", 1)[-1]
    return {"str": "String", "int": "Int32", "bool": "Boolean", "bytes": "Byte[]"}.get(type(target).__name__, "Object")


def _bound_parameters(parameters: dict[str, Any]) -> PSDict:
    # Simple values only: secrets and file contents are never echoed back in an error record.
    simple = {k: v for k, v in parameters.items() if isinstance(v, str | int) and not isinstance(v, Secret)}
    bound = PSDict(simple)
    dictionary = f"System.Collections.Generic.Dictionary`2[[System.String, {MSCORLIB}],[System.Object, {MSCORLIB}]]"
    bound.PSObject.type_names = [dictionary, "System.Object"]
    return bound


def error_record(
    error: CmdletError, command: str, parameters: dict[str, Any], *, error_stream: bool, invoked: bool = True
) -> PSObject:
    """One ErrorRecord with the property set Windows sends (ERROR_RECORD, or PIPELINE_STATE's reason)."""
    category = _category(error.category)
    reason = error.exception_type[0].rsplit(".", 1)[-1]
    target_name = "" if error.target is None else str(error.target)
    target_type = _target_type(error.target)
    short_target = target_name if len(target_name) <= 40 else target_name[:15] + "..." + target_name[-15:]
    activity = command if invoked else ""
    record = PSObject()
    record.PSObject.type_names = ["System.Management.Automation.ErrorRecord", "System.Object"]
    record.PSObject.to_string = error.message
    props: dict[str, Any] = {"writeErrorStream": True} if error_stream else {}
    props |= {
        "Exception": _exception(error.message, list(error.exception_type)),
        "TargetObject": error.target,
        "FullyQualifiedErrorId": error.fqid,
        "InvocationInfo": None,
        "ErrorCategory_Category": PSInt(category.value),
        "ErrorCategory_Activity": activity,
        "ErrorCategory_Reason": reason,
        "ErrorCategory_TargetName": target_name,
        "ErrorCategory_TargetType": target_type,
        "ErrorCategory_Message": f"{category.name}: ({short_target}:{target_type}) [{activity}], {reason}",
        # Windows flattens the invocation into the record only on the error stream, not in a pipeline's reason.
        "SerializeExtendedInfo": invoked and error_stream,
    }
    if invoked:
        flattened = _invocation_properties(command, _bound_parameters(parameters))
        props |= flattened if error_stream else {"InvocationInfo": flattened["InvocationInfo"]}
    for name, value in props.items():
        add_note_property(record, name, value)
    return record


def _typed_list(values: list[Any], *type_names: str) -> PSList:
    typed = PSList(values)
    typed.PSObject.type_names = [*type_names, "System.Object"]
    return typed


def _invocation_properties(command: str, bound: PSDict) -> dict[str, Any]:
    """InvocationInfo of a cmdlet run by the PowerShell API (no script position), and its flattened form."""
    unbound = _typed_list([], f"System.Collections.Generic.List`1[[System.Object, {MSCORLIB}]]")
    position: dict[str, Any] = {"ScriptLineNumber": PSInt(0), "OffsetInLine": PSInt(0), "HistoryId": PSInt64(1)}
    position |= {"ScriptName": "", "Line": "", "PositionMessage": "", "PSScriptRoot": "", "PSCommandPath": None}
    position |= {"InvocationName": command, "PipelineLength": PSInt(0), "PipelinePosition": PSInt(0)}
    position |= {"ExpectingInput": False}
    info = PSObject()
    info.PSObject.type_names = ["System.Management.Automation.InvocationInfo", "System.Object"]
    info.PSObject.to_string = "System.Management.Automation.InvocationInfo"
    adapted = {"MyCommand": command, "BoundParameters": bound, "UnboundArguments": unbound, **position}
    for name, value in (adapted | {"CommandOrigin": "Internal", "DisplayScriptPosition": None}).items():
        info.PSObject.adapted_properties.append(PSNoteProperty(name, value))
    return {
        "InvocationInfo": info,
        **{f"InvocationInfo_{k}": v for k, v in position.items()},
        "InvocationInfo_BoundParameters": bound,
        "InvocationInfo_CommandOrigin": CommandOrigin.Internal,
        "InvocationInfo_PipelineIterationInfo": _typed_list([], "System.Int32[]", "System.Array"),
        "InvocationInfo_UnboundArguments": unbound,
        "SerializeExtent": False,
        "CommandInfo_CommandType": CommandTypes[command_type(command)],
        "CommandInfo_Definition": "",
        "CommandInfo_Name": command,
        "CommandInfo_Visibility": SessionStateEntryVisibility.Public,
        "PipelineIterationInfo": PSList([PSInt(0), PSInt(1)]),
        "PSMessageDetails": None,
    }


def internal_error(exc: Exception) -> PSObject:
    error = CmdletError(
        f"The simulated host failed unexpectedly ({type(exc).__name__}).",
        fqid="SimulatorInternalError",
        exception_type=["System.InvalidOperationException", "System.SystemException"],
    )
    return error_record(error, "", {}, error_stream=False, invoked=False)


def scripts_not_allowed(script: str) -> CmdletError:
    # What a restricted (no-language) endpoint answers to script text; the console only ever sends commands.
    return CmdletError(
        NO_LANGUAGE,
        fqid="ScriptsNotAllowed",
        category="ParserError",
        exception_type=["System.Management.Automation.ParseException", *RUNTIME_EXCEPTION_BASES],
        target=script,
    )


# Parameters -------------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, PSSecureString):
        return Secret(value.decrypt())
    if isinstance(value, PSCredential):  # rehydrated as Windows does (MS-PSRP 2.2.3.25), its password decrypted
        password = value.Password
        return Credential(str(value.UserName), Secret(password.decrypt() if password is not None else ""))
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parameters_of(command: psrpcore.Command) -> tuple[dict[str, Any], list[Any]]:
    """Named parameters and positional arguments, SecureStrings decrypted into Secret.

    A switch added without a value stays None: that is how PowerShell's API marks a switch as present.
    """
    named: dict[str, Any] = {}
    positional: list[Any] = []
    for name, value in command.parameters:
        if name is None:
            positional.append(_plain(value))
        else:
            named[name] = _plain(value)
    return named, positional


def masked(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters as the command log shows them: SecureStrings and byte blobs (PFX files) never in clear."""

    def mask(value: Any) -> Any:
        if isinstance(value, Secret):
            return "********"
        if isinstance(value, Credential):
            return f"PSCredential({value.user}, ********)"
        if isinstance(value, bytes | bytearray):
            return f"<{len(value)} bytes>"
        if isinstance(value, list):
            return [mask(v) for v in value]
        if isinstance(value, bool | None):
            return value
        return int(value) if isinstance(value, int) else str(value)

    return {name: True if value is None else mask(value) for name, value in parameters.items()}


# Pipelines ----------------------------------------------------------------------------------------------------------


class PipelineStopped(Exception):
    """The client sent ctrl_c while the pipeline was running."""


class PipelineRun:
    """One pipeline: its psrpcore state, its input, and the thread that runs its statements."""

    def __init__(self, session: RunspaceSession, pipe: psrpcore.ServerPipeline) -> None:
        self.session, self.pipe = session, pipe
        self.input: list[Any] = []
        self.cancelled = threading.Event()
        self.finished = False
        self._thread: threading.Thread | None = None

    @property
    def commands(self) -> list[psrpcore.Command]:
        assert self.pipe.metadata is not None
        return list(self.pipe.metadata.commands)  # type: ignore[attr-defined]

    def start(self) -> None:
        if self._thread is None:
            name = f"{self.session.host.name}-pipeline-{self.pipe.pipeline_id}"
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        capture = self.session.host.capture
        with self.session.changed:
            # Windows does not announce Running; psrpcore's start() would. Same state change, not sent.
            self.pipe.state = PSInvocationState.Running
            if capture is None:  # a captured host's first answer carries its own announcement
                self.session.announce_first_use(self.pipe)
        try:
            if capture is not None:
                return self._replay(capture)
            self._refuse_unknown_commands()
            data = list(self.input)
            piped = bool(self.input)  # the client's input objects feed the first command
            for statement in self._statements():
                for position, command in enumerate(statement):
                    data = self._invoke(command, data, piped=piped or position > 0)
                self._emit(self.pipe.write_output, *map(self._serialized, data))
                data, piped = [], False
            self._finish(self.pipe.complete)
        except PipelineStopped:
            self._finish(self.pipe.stop)
        except Exception as exc:
            if not isinstance(exc, _Terminated):  # a simulator bug still ends the pipeline, with no stack trace
                log.exception("cmdlet failed unexpectedly on %s", self.session.host.name)
            reason = exc.record if isinstance(exc, _Terminated) else internal_error(exc)
            self._finish(lambda: fail_pipeline(self.pipe, reason))

    def _replay(self, capture: Capture) -> None:
        """Answer with the messages the captured host answered the same statements with."""
        sent = [[(command.command_text, parameters_of(command)[0]) for command in s] for s in self._statements()]
        answer = capture.answer(sent)
        commands = [(CANONICAL_NAMES.get(name.lower(), name), params) for s in sent for name, params in s]
        for name, params in commands:
            self.session.host.record_command(name, masked(params), "replayed" if answer else "not in the capture")
        if answer is None:
            names = [name for name, _params in commands]
            raise _Terminated(error_record(not_captured(names), names[0], {}, error_stream=False, invoked=False))
        with self.session.changed:
            for message in answer:
                self.session.pool.prepare_recorded(message.message_type, message.clixml, self.pipe.pipeline_id)
                if message.state is not None:
                    self.pipe.state = message.state
            self.finished = True
            self.session.flush()

    def _serialized(self, value: Any) -> Any:
        """An output object as remoting sends it (depth 1 on a host that is strict about it)."""
        return at_depth_one(value) if self.session.host.model.strict.depth_one else value

    def _statements(self) -> list[list[psrpcore.Command]]:
        statements: list[list[psrpcore.Command]] = [[]]
        for command in self.commands:
            statements[-1].append(command)
            if command.end_of_statement:
                statements.append([])
        return [s for s in statements if s]

    def _refuse_unknown_commands(self) -> None:
        # PowerShell resolves every command before running any of them.
        for command in self.commands:
            name = command.command_text
            if command.is_script:
                error, shown = scripts_not_allowed(name), "<script>"
            elif name.lower() not in CANONICAL_NAMES or not self.session.sees(name):
                error, shown = command_not_found(name), name
            else:
                continue
            self.session.host.record_command(shown, {}, f"error: {error.fqid}")
            raise _Terminated(error_record(error, shown, {}, error_stream=False, invoked=False))

    def _invoke(self, command: psrpcore.Command, data: list[Any], *, piped: bool) -> list[Any]:
        name = CANONICAL_NAMES[command.command_text.lower()]
        params, arguments = parameters_of(command)
        delay = self.session.host.faults.delay_for(name)
        if delay and self.cancelled.wait(delay) or self.cancelled.is_set():
            self.session.host.record_command(name, masked(params), "stopped")
            raise PipelineStopped
        invocation = Invocation(
            host=self.session.host.model,
            lab=self.session.host.lab,
            parameters=params,
            input=data,
            cancelled=self.cancelled,
            errors=[],
            arguments=arguments,
            piped=piped,
            sees=self.session.sees,
        )
        try:
            with logon.impersonating(self.session.logon):  # the commands run under the session's logon token
                output = list(CMDLETS[name](invocation))
        except CmdletError as error:
            self._write_errors(name, params, invocation.errors)
            self.session.host.record_command(name, masked(params), f"error: {error.fqid}")
            raise _Terminated(error_record(error, name, params, error_stream=False)) from None
        self._write_errors(name, params, invocation.errors)
        first = invocation.errors[0].fqid if invocation.errors else None
        self.session.host.record_command(name, masked(params), f"error: {first}" if first else "ok")
        if self.cancelled.is_set():
            raise PipelineStopped
        return list(output)

    def _write_errors(self, name: str, params: dict[str, Any], errors: list[CmdletError]) -> None:
        records = [error_record(e, name, params, error_stream=True) for e in errors]
        self._emit(lambda r: self.pipe.prepare_message(r, PSRPMessageType.ErrorRecord), *records)

    def _emit(self, write: Callable[[Any], None], *values: Any) -> None:
        if values:
            with self.session.changed:
                for value in values:
                    write(value)
                self.session.flush()

    def _finish(self, change_state: Callable[[], None]) -> None:
        with self.session.changed:
            change_state()
            self.finished = True
            self.session.flush()


class _Terminated(Exception):
    def __init__(self, record: PSObject) -> None:
        super().__init__(record.PSObject.to_string)
        self.record = record


def fail_pipeline(pipe: psrpcore.ServerPipeline, record: PSObject) -> None:
    """Mark a pipeline Failed and tell the client why (psrpcore has no call for this; this is the one place)."""
    state = PSObject()
    add_note_property(state, "PipelineState", PSInt(PSInvocationState.Failed.value))
    add_note_property(state, "ExceptionAsErrorRecord", record)
    pipe.prepare_message(state, PSRPMessageType.PipelineState)
    pipe.state = PSInvocationState.Failed


# Runspace pools -----------------------------------------------------------------------------------------------------


RUNSPACE_REQUESTS = (psrpcore.SetMaxRunspacesEvent, psrpcore.SetMinRunspacesEvent, psrpcore.ResetRunspaceStateEvent)
MESSAGE_HEADER = 40  # destination, message type, runspace pool id, pipeline id (MS-PSRP 2.2.1)
# A Receive reply's SOAP around its streams (headers, namespaces, CommandState): generous, so a reply stays inside the
# client's MaxEnvelopeSize (wsman.py); each stream adds its own element around its base64.
ENVELOPE_OVERHEAD = 2048
STREAM_OVERHEAD = len('<rsp:Stream Name="stdout" CommandId="00000000-0000-0000-0000-000000000000"></rsp:Stream>')


def wire_size(payload: bytes) -> int:
    """What one payload takes in a Receive reply: its base64 inside an rsp:Stream element."""
    return 4 * -(-len(payload) // 3) + STREAM_OVERHEAD


UTF8_BOM = b"\xef\xbb\xbf"


class WindowsRunspacePool(psrpcore.ServerRunspacePool):
    """psrpcore's server runspace pool, writing messages as Windows does: a UTF-8 BOM before every message body.

    Every message of the pool and its pipelines is queued here. psrpcore keeps no public handle on what it queued,
    so this is the one place that reaches into its send buffer."""

    def prepare_message(
        self,
        message: PSObject | None,
        message_type: PSRPMessageType | None = None,
        pipeline_id: uuid.UUID | None = None,
        stream_type: psrpcore.StreamType = psrpcore.StreamType.default,
    ) -> None:
        super().prepare_message(message, message_type, pipeline_id, stream_type)
        queued = self._send_buffer[-1]
        if len(queued) > MESSAGE_HEADER:  # an empty body (end of input, $null output) has no BOM either
            queued._data[MESSAGE_HEADER:MESSAGE_HEADER] = UTF8_BOM

    def prepare_recorded(self, message_type: PSRPMessageType, clixml: str, pipeline_id: uuid.UUID | None) -> None:
        """Queue a message whose body is recorded CLIXML (a captured host's answer), sent as it was received."""
        self.prepare_message(PSObject(), message_type, pipeline_id)
        self._send_buffer[-1]._data[MESSAGE_HEADER:] = UTF8_BOM + clixml.encode("utf-8")


class RunspaceSession:
    """The runspace pool behind one WSMan shell, and the output waiting for the client's Receive."""

    def __init__(
        self, host: HostRuntime, max_envelope: int, role: Role | None = None, session_logon: Logon | None = None
    ) -> None:
        self.host = host
        self.role = role  # a JEA endpoint's role capability; None: every implemented command is visible
        # How the connection that created the shell authenticated; None (a shell made without the listener) is an
        # NTLM logon, what the simulator's listener has always accepted.
        self.logon = session_logon or Logon(logon.NTLM, host.account.user)
        self.pool = WindowsRunspacePool(application_private_data=windows_private_data(host.model.os_build))
        self.changed = threading.Condition()
        self.outbox: dict[uuid.UUID | None, deque[bytes]] = defaultdict(deque)
        self.runs: dict[uuid.UUID, PipelineRun] = {}
        self.closed = False
        self._first_use_announced = False
        # Room in one Receive reply for its streams (their wrappers and base64 counted, see wire_size): the client's
        # envelope minus the SOAP around them; a payload on its own fits one reply.
        self.room = max_envelope - ENVELOPE_OVERHEAD
        self.chunk = max(1024, (self.room - STREAM_OVERHEAD) * 3 // 4)

    def sees(self, command: str) -> bool:
        """Whether the endpoint exposes the command; a JEA endpoint hides the rest as if they did not exist."""
        if self.role is None:
            return True
        by_type = self.host.model.strict.hgs_functions
        return self.role.exposes(command, command_type(CANONICAL_NAMES.get(command.lower(), command)), by_type)

    def receive(self, data: bytes, pipeline_id: uuid.UUID | None = None, *, new_pipeline: bool = False) -> None:
        """Feed fragments from the client (creationXml, Command arguments or Send stdin) and act on them."""
        split_frames(data)
        with self.changed:
            if new_pipeline and pipeline_id is not None and pipeline_id not in self.pool.pipeline_table:
                self.runs[pipeline_id] = PipelineRun(self, psrpcore.ServerPipeline(self.pool, pipeline_id))
            try:
                self.pool.receive_data(psrpcore.PSRPPayload(data, psrpcore.StreamType.default, pipeline_id))
                while (event := self.pool.next_event()) is not None:
                    self._on_event(event)
            except Exception as exc:
                if new_pipeline and pipeline_id is not None:  # a Command that failed leaves no command behind
                    self.runs.pop(pipeline_id, None)
                    self.pool.pipeline_table.pop(pipeline_id, None)
                if isinstance(exc, ProtocolViolation | ConnectionDrop):
                    raise
                # psrpcore raises many types on malformed CLIXML; all are the client's errors.
                raise ProtocolViolation(f"{type(exc).__name__}: {exc}") from None
            self.flush()

    def _on_event(self, event: psrpcore.PSRPEvent) -> None:
        if isinstance(event, psrpcore.CreatePipelineEvent):
            run = self.runs.get(event.pipeline_id) if event.pipeline_id else None
            if run is None:
                raise ProtocolViolation("CREATE_PIPELINE outside a WSMan Command")
            names = [c.command_text for c in run.commands]
            if self.host.faults.drops_pipeline(names):
                raise ConnectionDrop(f"pipeline with {names}")
            if event.pipeline.no_input:
                run.start()
        elif isinstance(event, psrpcore.PipelineInputEvent) and event.pipeline_id in self.runs:
            self.runs[event.pipeline_id].input.append(event.data)
        elif isinstance(event, psrpcore.EndOfPipelineInputEvent) and event.pipeline_id in self.runs:
            self.runs[event.pipeline_id].start()
        elif isinstance(event, RUNSPACE_REQUESTS):
            self.pool.runspace_availability_response(event.ci, True)

    def announce_first_use(self, pipe: psrpcore.ServerPipeline) -> None:
        # Windows loads its modules on the first command of a session and says so with this record.
        if not self._first_use_announced:
            self._first_use_announced = True
            pipe.write_progress("Preparing modules for first use.", 0, " ", record_type=ProgressRecordType.Completed)

    def flush(self) -> None:
        """Move psrpcore's outgoing fragments into per-target queues and wake waiting Receives (lock held)."""
        while (payload := self.pool.data_to_send(self.chunk)) is not None:
            self.outbox[payload.pipeline_id].append(payload.data)
        self.changed.notify_all()

    def reply_full(self, pipeline_id: uuid.UUID | None) -> bool:
        """Whether the output waiting for one target fills a Receive reply (lock held)."""
        return sum(map(wire_size, self.outbox[pipeline_id])) >= self.room

    def take(self, pipeline_id: uuid.UUID | None) -> list[bytes]:
        """Queued payloads for one target that fit one Receive response (lock held)."""
        queue, size = self.outbox[pipeline_id], 0
        taken: list[bytes] = []
        while queue and (not taken or size + wire_size(queue[0]) <= self.room):
            size += wire_size(queue[0])
            taken.append(queue.popleft())
        return taken

    def stop_pipeline(self, pipeline_id: uuid.UUID) -> None:
        with self.changed:
            run = self.runs.get(pipeline_id)
        if run is not None:
            run.cancelled.set()

    def close_pipeline(self, pipeline_id: uuid.UUID) -> None:
        with self.changed:
            run = self.runs.pop(pipeline_id, None)
            self.outbox.pop(pipeline_id, None)
            if run is not None:
                run.cancelled.set()
                if run.finished or run.pipe.state == PSInvocationState.NotStarted:
                    run.pipe.close()

    def close(self) -> None:
        with self.changed:
            self.closed = True
            for run in self.runs.values():
                run.cancelled.set()
            self.changed.notify_all()
