"""The one entry point to a host: open a PSRP runspace pool once per unit of work and run catalog operations.

    with open_session(spec, log=job_log) as session:
        facts = session.run(catalog.TestConnection())

Each operation becomes one pipeline (its statements separated by add_statement), is logged as a step
("→ Get-VM (HV01)"), has its PowerShell streams piped to `log`, and its failures mapped to typed RemotingErrors.
Read-only operations are retried once, on a fresh pool, when the connection dropped or timed out. A session idle
longer than WINRM_IDLE_SECONDS reconnects before its next operation: Windows closes a connection idle for 120 s, and
over NTLM message encryption the next message, encrypted for it, is lost ("cannot be decrypted").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from copy import copy, deepcopy
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.utils.translation import gettext as _
from pypsrp.complex_objects import Command, CommandParameter, ComplexObject, PSCredential, PSInvocationState
from pypsrp.exceptions import WinRMError
from pypsrp.messages import MessageType
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import ObjectMeta, Serializer, TaggedValue

from .connection import ConnectionSpec, Transport, peer_fingerprint
from .errors import OperationCancelled, RemotingError, UnexpectedReply
from .operation import Credential, Long, Operation, PipelineResult, Secret, Switch
from .translate import error_from_record, remoting_error

T = TypeVar("T")
LogFn = Callable[[str, str], None]
SecretFn = Callable[[str], None]
BeforeSendFn = Callable[[Operation[Any]], None]

RETRYABLE_KINDS = ("dropped", "timeout")
POLL_SECONDS = 2
BROKEN_KINDS = ("dns", "refused", "timeout", "tls", "auth", "credssp", "dropped", "unexpected")


def _no_log(text: str, level: str) -> None:
    return None


class _OrderedPowerShell(PowerShell):
    """A PowerShell whose polling keeps outputs and error records in the order the host sent them, so results
    of many statements in one pipeline can be told apart."""

    def __init__(self, pool: RunspacePool) -> None:
        super().__init__(pool)
        self.events: list[tuple[str, Any]] = []

    def poll_invoke(self, timeout: int | None = None) -> None:
        errors_before = len(self.streams.error)
        try:
            responses = self.runspace_pool._receive(self.id, timeout=timeout)
        except WinRMError as err:
            if getattr(err, "code", None) == 2150858793:  # operation timeout: nothing yet, ask again
                return
            raise
        next_error = errors_before
        for message_type, value in responses:
            if message_type == MessageType.PIPELINE_OUTPUT:
                data = value.data.data
                self.output.append(data)
                self.events.append(("output", data))
            elif message_type == MessageType.ERROR_RECORD and next_error < len(self.streams.error):
                self.events.append(("error", self.streams.error[next_error]))
                next_error += 1


class _Command(Command):
    """pypsrp's Command, cheaper to copy. pypsrp deep-copies every command each time it serializes a pipeline (so
    that no object is shared between two statements), its fixed metadata included: ~300 objects a command, the
    largest share of a refresh's console CPU. This copy is a new command with new parameters and merge settings
    (those shared in the original shared in the copy too, so the message is the same) and copies of the values,
    sharing only what describes the serialized form, which a serializer fills in the same way every time."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Command:
        copied = copy(self)  # a shallow copy: the metadata is shared
        memo[id(self)] = copied
        for name, value in vars(self).items():
            if isinstance(value, ComplexObject):  # the merge settings: one object, several attributes
                setattr(copied, name, memo.get(id(value)) or memo.setdefault(id(value), copy(value)))
        copied.args = [_parameter_copy(parameter, memo) for parameter in self.args]
        return copied


def _parameter_copy(parameter: CommandParameter, memo: dict[int, Any]) -> CommandParameter:
    copied = copy(parameter)
    copied.value = deepcopy(parameter.value, memo)
    return copied


# What a pipeline answers (MS-PSRP message types, by pypsrp's names): the messages a capture keeps.
PIPELINE_MESSAGES = {
    getattr(MessageType, name): name
    for name in ("PIPELINE_OUTPUT", "ERROR_RECORD", "PIPELINE_STATE", "DEBUG_RECORD", "VERBOSE_RECORD")
    + ("WARNING_RECORD", "PROGRESS_RECORD", "INFORMATION_RECORD")
}


class _RecordingSerializer(Serializer):
    """pypsrp's deserializer, keeping the CLIXML text of every pipeline message it is given (the capture kit).

    pypsrp unpacks each received message by handing its text to deserialize(): output objects without metadata,
    the other messages with their message class; nested values come back here as elements, not text."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[str, str]] = []

    def deserialize(self, element: Any, metadata: ObjectMeta | None = None, clear: bool = True) -> Any:
        if clear and isinstance(element, str):
            kind = MessageType.PIPELINE_OUTPUT if metadata is None else getattr(metadata.object, "MESSAGE_TYPE", 0)
            if kind in PIPELINE_MESSAGES:  # not the second try of an output that failed to deserialize (ObjDynamic)
                self.received.append((PIPELINE_MESSAGES[kind], element))
        return super().deserialize(element, metadata, clear)


class HostSession:
    """An open runspace pool on one host. Not shared between threads, except `stop_current()`."""

    def __init__(
        self,
        spec: ConnectionSpec,
        log: LogFn | None = None,
        on_secret: SecretFn | None = None,
        before_send: BeforeSendFn | None = None,
        record: bool = False,
    ) -> None:
        self.spec = spec
        self.record = record  # keep every pipeline message as received, in PipelineResult.received
        self.log: LogFn = log or _no_log
        # Told every Secret value before it is sent, so the caller (a job) can mask it wherever it shows up later.
        self.on_secret: SecretFn | None = on_secret
        # Called with each operation right before it is sent (after the connection is ready): a job's fencing check,
        # which raises to stop a runner that no longer owns its job from sending anything more.
        self.before_send: BeforeSendFn | None = before_send
        self._transport: Transport | None = None
        self._pool: RunspacePool | None = None
        self._cancelled = threading.Event()
        self.keys_exchanged = False
        self._requests_before = 0  # requests of transports closed by a retry
        self._broken = False  # the connection failed: do not wait on it again just to say goodbye
        self._last_exchange = 0.0  # time.monotonic() of the pool's last request

    # -- lifecycle -------------------------------------------------------------------------------------------

    def open(self) -> None:
        self._guarded(self._open)

    def _open(self) -> None:
        self._broken = False
        self._transport = Transport(self.spec)
        self._pool = RunspacePool(self._transport.wsman, configuration_name=self.spec.configuration_name)
        if self.record:
            self._pool._serializer = self._pool._fragmenter.serializer = _RecordingSerializer()
        self.keys_exchanged = False
        self._pool.open()
        self._last_exchange = time.monotonic()

    def close(self) -> None:
        pool, transport = self._pool, self._transport
        self._pool, self._transport = None, None
        if pool is not None and not self._broken:
            # Closing tells the host to delete the shell; a host that is gone cannot be told, and that is fine.
            with suppress(Exception):
                pool.close()
        if transport is not None:
            with suppress(Exception):
                transport.close()
            self._requests_before += transport.requests

    def __enter__(self) -> HostSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def request_count(self) -> int:
        """HTTP requests sent to the host by this session so far (authentication round trips included)."""
        current = self._transport.requests if self._transport is not None else 0
        return self._requests_before + current

    # -- running operations ------------------------------------------------------------------------------------

    def run(self, op: Operation[T]) -> T:
        """Run one operation as one pipeline (and its follow-up, if it has one) and return its typed result."""
        result = self.exchange(op)
        try:
            parsed = op.read(result)
        except RemotingError:
            raise
        except Exception as err:  # a reply of a shape the parser did not expect is the host's fault, not a crash
            raise UnexpectedReply(
                _("The reply of %(command)s from %(host)s could not be read.")
                % {"command": op.describe(), "host": self.spec.display}
            ) from err
        follow_up = op.follow_up(parsed)
        return parsed if follow_up is None else self.run(follow_up)

    def exchange(self, op: Operation[Any]) -> PipelineResult:
        """Send one operation as one pipeline and return what came back, unread."""
        op.check_declared()
        label = f"→ {op.describe()} ({self.spec.display})"
        self.log(label, "info")
        attempts = 2 if op.read_only else 1
        for attempt in range(1, attempts + 1):
            try:
                prepared = self._guarded(partial(self._prepare, op))
                if self.before_send is not None:
                    self.before_send(op)  # outside _guarded: what it raises is the caller's, not the host's
                result = self._guarded(partial(self._send, prepared))
                break
            except RemotingError as err:
                if attempt == attempts or err.kind not in RETRYABLE_KINDS:
                    raise
                self.log(_("%(error)s — retrying once on a new connection") % {"error": err}, "warning")
                self.close()
                self.open()
        return result

    def stop_current(self) -> None:
        """Ask the running pipeline (or, between operations, the next one) to stop, from another thread: the job
        runner's cancel. The operation raises OperationCancelled.

        The thread that polls sends the ctrl_c itself, within POLL_SECONDS: WinRM message encryption is bound to
        the connection and its sequence numbers, so a second thread must not send on the same session.
        """
        self._cancelled.set()

    def _prepare(self, op: Operation[Any]) -> _OrderedPowerShell:
        """All that comes before sending `op`: a connection, the session key if it carries secrets, its pipeline."""
        if self._broken:
            self.close()  # the last operation lost the connection: this one starts on a new one
        elif self._pool is not None and self._idle_seconds() > float(settings.WINRM_IDLE_SECONDS):
            # The host may have closed the pool's connection (Windows: after 120 s idle): reopen it first, rather
            # than lose a message encrypted for the closed connection.
            idle = {"host": self.spec.display, "seconds": f"{self._idle_seconds():.0f}"}
            self.log(_("%(host)s was idle for %(seconds)s s: reconnecting") % idle, "info")
            self.close()
        if self._pool is None:
            self._open()
        assert self._pool is not None
        if op.has_secrets() and not self.keys_exchanged:
            # pypsrp needs the session key before it can serialize a SecureString.
            self._pool.exchange_keys()
            self.keys_exchanged = True
        return self._build(op)

    def _send(self, ps: _OrderedPowerShell) -> PipelineResult:
        recorder = self._pool._serializer if self._pool is not None else None
        if isinstance(recorder, _RecordingSerializer):
            recorder.received.clear()
        try:
            self._drive(ps)
        finally:
            self._last_exchange = time.monotonic()
        result = self._collect(ps)
        if isinstance(recorder, _RecordingSerializer):
            result.received = list(recorder.received)
        return result

    def _idle_seconds(self) -> float:
        return time.monotonic() - self._last_exchange

    def _cancel_requested(self) -> bool:
        """A pending stop request, consumed by the pipeline that honours it."""
        if self._cancelled.is_set():
            self._cancelled.clear()
            return True
        return False

    def _build(self, op: Operation[Any]) -> _OrderedPowerShell:
        assert self._pool is not None
        ps = _OrderedPowerShell(self._pool)
        for statement in op.statements():
            for cmd in statement:
                protocol = self._pool.protocol_version or ""
                ps.add_command(_Command(cmd.name, protocol_version=protocol, is_script=False, use_local_scope=None))
                for name, value in cmd.params.items():
                    if isinstance(value, Switch):
                        ps.add_parameter(name)  # a switch: no value
                    elif isinstance(value, Secret):
                        if self.on_secret is not None:
                            self.on_secret(str(value))
                        ps.add_parameter(name, TaggedValue("SS", str(value)))
                    elif isinstance(value, Credential):
                        if self.on_secret is not None:
                            self.on_secret(str(value.password))
                        ps.add_parameter(name, PSCredential(username=value.user, password=str(value.password)))
                    elif isinstance(value, Long):
                        ps.add_parameter(name, TaggedValue("I64", int(value)))
                    else:
                        ps.add_parameter(name, value)
            ps.add_statement()
        return ps

    def _drive(self, ps: _OrderedPowerShell) -> None:
        if self._cancel_requested():
            raise OperationCancelled(
                _("Stopped on request before it started on %(host)s.") % {"host": self.spec.display}
            )
        ps.begin_invoke()
        piped = dict.fromkeys(("error", "warning", "verbose", "information", "progress"), 0)
        while ps.state == PSInvocationState.RUNNING:
            ps.poll_invoke(timeout=self._poll_seconds())
            self._pipe_streams(ps, piped)
            if ps.state == PSInvocationState.RUNNING and self._cancel_requested():
                ps.stop()  # ctrl_c: the host stops the pipeline
                raise OperationCancelled(_("Stopped on request on %(host)s.") % {"host": self.spec.display})
        self._pipe_streams(ps, piped)
        if ps.state == PSInvocationState.STOPPED:
            raise OperationCancelled(_("Stopped on request on %(host)s.") % {"host": self.spec.display})

    @staticmethod
    def _poll_seconds() -> int:
        """How long one Receive may wait on the host: short enough to notice a cancel request soon."""
        return max(1, min(POLL_SECONDS, int(settings.WINRM_OPERATION_TIMEOUT)))

    def _pipe_streams(self, ps: PowerShell, piped: dict[str, int]) -> None:
        for stream, level in (
            ("error", "error"),
            ("warning", "warning"),
            ("verbose", "verbose"),
            ("information", "info"),
            ("progress", "progress"),
        ):
            records = getattr(ps.streams, stream)
            for record in records[piped[stream] :]:
                line = _stream_text(stream, record)
                if line:
                    self.log(line, level)
            piped[stream] = len(records)

    def _collect(self, ps: _OrderedPowerShell) -> PipelineResult:
        in_order = {id(value) for kind, value in ps.events if kind == "error"}
        # Error records that arrived in a pipeline state message (a terminating error) are not events.
        terminating = [record for record in ps.streams.error if id(record) not in in_order]
        return collect_result(ps.output, ps.events, terminating)

    def _guarded(self, call: Callable[[], T]) -> T:
        """Run a pypsrp call and turn whatever it raises into a typed, user-safe RemotingError."""
        try:
            return call()
        except RemotingError:
            raise
        except Exception as err:
            mapped = remoting_error(err, self.spec)
            self._broken = mapped.kind in BROKEN_KINDS
            if mapped.kind == "tls" and not getattr(mapped, "fingerprint_seen", ""):
                mapped.fingerprint_seen = peer_fingerprint(self.spec.address, self.spec.port, 3.0)  # type: ignore[attr-defined]
            raise mapped from None


def collect_result(output: list[Any], events: list[tuple[str, Any]], terminating: list[Any]) -> PipelineResult:
    """A PipelineResult from what pypsrp received: output objects, outputs and error records in the order they
    arrived, and the error records of a failed pipeline's state, which come last."""
    result = PipelineResult(output=list(output))
    for kind, value in [*events, *(("error", record) for record in terminating)]:
        if kind == "error":
            error = error_from_record(value)
            result.errors.append(error)
            result.events.append(("error", error))
        else:
            result.events.append(("output", value))
    return result


def _stream_text(stream: str, record: Any) -> str:
    if stream == "error":
        return str(error_from_record(record))
    if stream == "progress":
        activity = getattr(record, "activity", "") or ""
        status = getattr(record, "description", "") or ""
        percent = getattr(record, "percent_complete", -1)
        shown = f" {percent}%" if isinstance(percent, int) and percent >= 0 else ""
        return f"{activity}: {status}{shown}".strip(": ")
    if stream == "information":
        data = getattr(record, "message_data", None)
        return str(getattr(data, "to_string", None) or data or "")
    return str(getattr(record, "message", "") or "")


@contextmanager
def open_session(
    spec: ConnectionSpec,
    log: LogFn | None = None,
    on_secret: SecretFn | None = None,
    before_send: BeforeSendFn | None = None,
    record: bool = False,
) -> Iterator[HostSession]:
    """One PSRP runspace pool per unit of work, closed when the block ends (whatever happens inside)."""
    session = HostSession(spec, log=log, on_secret=on_secret, before_send=before_send, record=record)
    try:
        session.open()
        yield session
    finally:
        session.close()
