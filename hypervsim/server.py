"""The WinRM listener of a simulated host: HTTP(S) on loopback, endpoint /wsman, one thread per TCP connection.

`HostRuntime` is everything a request can touch on one host (model, shells, faults, command log, counters);
`Listener` is its socket, which can be closed and reopened on the same port to take the host down and up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hypervsim.auth import Account, AuthenticationRejected, ConnectionSecurity, MalformedEncryptedBody
from hypervsim.capture import Capture
from hypervsim.credssp import CredSSPAcceptor
from hypervsim.faults import ConnectionDrop, Faults
from hypervsim.jea import Role
from hypervsim.model import HostModel, LabContext
from hypervsim.tls import ListenerCertificate
from hypervsim.wsman import Fault, WSManService, fault_response, malformed, oversized

log = logging.getLogger(__name__)

# HTTP.sys closes a keep-alive connection that carries no request for this long (its IdleConnectionTimeout).
IDLE_CONNECTION_TIMEOUT = 120.0
IDLE_ENVIRONMENT = "HYPERVSIM_IDLE_TIMEOUT"  # seconds; changes the default of every host started in the process
MAX_BODY = 512_000 + 4_096  # Windows' default MaxEnvelopeSizekb (500) plus the encryption framing
DRAIN_LIMIT = 64 * 1024 * 1024  # read and discard an oversized body up to this size so the client sees the fault
SOAP = "application/soap+xml;charset=UTF-8"
INTERNAL_ERROR = (b"Internal Server Error", "text/plain")


def default_idle_timeout() -> float:
    return float(os.environ.get(IDLE_ENVIRONMENT) or IDLE_CONNECTION_TIMEOUT)


class HostRuntime:
    """One simulated host as the network sees it."""

    def __init__(
        self,
        model: HostModel,
        lab: LabContext,
        account: Account,
        scheme: str,
        tls: ListenerCertificate | None,
        endpoints: dict[str, Role | None] | None = None,
        idle_timeout: float = IDLE_CONNECTION_TIMEOUT,
        capture: Capture | None = None,
    ) -> None:
        self.model, self.lab, self.account, self.scheme, self.tls = model, lab, account, scheme, tls
        self.idle_timeout = idle_timeout
        self.capture = capture  # answer every pipeline from this capture instead of the model
        self.name = model.name
        # Registered session configurations with their JEA role (None: all; no mapping at all: any name under
        # the PowerShell URI opens) and the configuration name of every shell opened, in order, so JEA tests can see
        # which endpoint a console really used.
        self.endpoints = endpoints
        self.opened_configurations: list[str] = []
        self.faults = Faults()
        self.wsman = WSManService(self)
        self.command_log: list[dict[str, Any]] = []
        self.request_count = 0
        # Receive replies sent while their command still ran, with room left: the command's pace cut them, not the
        # client's envelope (a benchmark or test tells the host's timing from what the client sent this way).
        self.paced_replies = 0
        self.port = 0
        self._counter_lock = threading.Lock()
        # A TLS listener may offer CredSSP, while the host's CredSSP server role is on (Enable-WSManCredSSP).
        self.credssp = CredSSPAcceptor(tls, lambda: model.credssp_server) if tls and scheme == "negotiate" else None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/wsman"

    def count_request(self) -> None:
        with self._counter_lock:
            self.request_count += 1

    def count_paced_reply(self) -> None:
        with self._counter_lock:
            self.paced_replies += 1

    def record_command(self, cmdlet: str, parameters: dict[str, Any], outcome: str) -> None:
        with self._counter_lock:
            self.command_log.append({"cmdlet": cmdlet, "parameters": parameters, "outcome": outcome})


class _WinRMHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    # Headers and body leave in two writes; with Nagle's algorithm the body waits for the client's delayed ACK of the
    # headers (40 ms on Linux loopback), which made every request cost 40 ms more than its work.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Every read waits at most the idle timeout: between requests that is HTTP.sys' idle connection timeout, and
        # a client that stalls half-way through a request is dropped after as long.
        self.connection.settimeout(self.server.runtime.idle_timeout)
        runtime = self.server.runtime
        self.security = ConnectionSecurity(
            runtime.account,
            runtime.scheme,
            https=runtime.tls is not None,
            credssp=runtime.credssp,
            delegation=lambda: runtime.model.delegation,
        )

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.server.runtime.name, format % args)

    def do_GET(self) -> None:
        self.server.runtime.count_request()
        self._answer(405, b"", "text/plain")

    def do_POST(self) -> None:
        runtime = self.server.runtime
        runtime.count_request()
        fault = runtime.faults.on_request()
        if runtime.faults.latency:
            time.sleep(runtime.faults.latency)
        if fault == "drop":
            return self._drop()
        body = self._read_body()
        if body is None:
            return None
        if self.path.split("?", 1)[0].rstrip("/").lower() != "/wsman":
            return self._answer(404, b"", "text/plain")
        if fault == "unauthorized":
            self.security.reset()
            return self._challenge(None)
        try:
            token = self.security.authenticate(self.headers.get("Authorization"))
        except AuthenticationRejected as rejected:
            return self._challenge(rejected.args[0] if rejected.args else None)
        extra = {"WWW-Authenticate": self.security.token_header(token)} if token else {}
        if not body:  # the empty POST that completes authentication before message encryption
            return (
                self._answer(500, *INTERNAL_ERROR)
                if runtime.faults.take_http_500()
                else self._answer(200, b"", SOAP, extra)
            )
        self._serve_soap(body, extra)

    def _serve_soap(self, body: bytes, extra: dict[str, str]) -> None:
        runtime = self.server.runtime
        encrypted = "multipart/encrypted" in self.headers.get("Content-Type", "").lower()
        if runtime.scheme == "negotiate" and runtime.tls is None and not encrypted:
            # AllowUnencrypted is false on a Windows listener: plain SOAP over HTTP is refused.
            self.security.reset()
            return self._challenge(None)
        try:
            soap = self.security.unwrap(body, self.headers["Content-Type"]) if encrypted else body
        except MalformedEncryptedBody as exc:
            return self._fault(malformed(f"The encrypted message cannot be decrypted ({exc})."))
        if runtime.faults.take_http_500():
            return self._answer(500, *INTERNAL_ERROR)
        try:
            status, response = runtime.wsman.handle(soap, self.client_address[0], self.security.logon)
        except ConnectionDrop:
            return self._drop()
        except Exception:  # never a stack trace on the wire; the simulator's log has it
            log.exception("request failed on %s", runtime.name)
            return self._fault(Fault(2147500037, "w:InternalError", "The simulated host failed.", sender=False))
        if encrypted:
            content_type, response = self.security.wrap(response)
            return self._answer(status, response, content_type, extra)
        self._answer(status, response, SOAP, extra)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._answer(411, b"", "text/plain", {"Connection": "close"})
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._answer(400, b"", "text/plain", {"Connection": "close"})
            return None
        if length > MAX_BODY:
            self._discard(length)
            self._fault(oversized(MAX_BODY), {"Connection": "close"})
            return None
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        remaining = min(length, DRAIN_LIMIT)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
        self.close_connection = True

    def _challenge(self, token: str | None) -> None:
        """401 with the next handshake token, or with one WWW-Authenticate header per scheme the listener offers."""
        values = [self.security.token_header(token)] if token else self.security.challenges()
        self.send_response(401)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "0")
        for value in values:
            self.send_header("WWW-Authenticate", value)
        self.end_headers()

    def _fault(self, fault: Fault, extra: dict[str, str] | None = None) -> None:
        self._answer(500, fault_response(fault, None, self.server.runtime.name), SOAP, extra)

    def _answer(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        if (extra or {}).get("Connection") == "close":
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, runtime: HostRuntime, port: int) -> None:
        self.runtime = runtime
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._tls = runtime.tls.server_context() if runtime.tls else None
        super().__init__(("127.0.0.1", port), _WinRMHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        raw = request
        with self._connections_lock:
            self.connections.add(raw)
        try:
            if self._tls is not None:
                raw.settimeout(30)  # a client that never finishes its TLS handshake must not hold a thread
                request = self._tls.wrap_socket(raw, server_side=True)
                request.settimeout(None)
            super().finish_request(request, client_address)
        except (OSError, ssl.SSLError) as exc:
            log.debug("connection to %s ended: %s", self.runtime.name, exc)
        finally:
            with self._connections_lock:
                self.connections.discard(raw)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error on %s", self.runtime.name, exc_info=True)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Listener:
    """The listening socket of one host; close() takes the host off the network, open() brings it back."""

    def __init__(self, runtime: HostRuntime) -> None:
        self.runtime = runtime
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def open(self, port: int) -> None:
        self._server = _HTTPServer(self.runtime, port)
        self.runtime.port = self._server.server_address[1]
        # A long poll interval keeps an idle host at zero CPU; close() wakes the loop with a connection instead.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 60},
            daemon=True,
            name=f"{self.runtime.name}-listener",
        )
        self._thread.start()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        while stopper.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.runtime.port), timeout=1).close()
            stopper.join(0.05)
        server.server_close()
        server.drop_connections()
        self.runtime.wsman.close_all()
