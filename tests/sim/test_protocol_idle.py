"""Idle keep-alive connections: a simulated host closes them after its idle timeout, as HTTP.sys does after its
IdleConnectionTimeout (120 s by default; short here), and a host told to stop does not wait for them."""

from __future__ import annotations

import socket
import time

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import RunspacePool

from hypervsim.server import IDLE_CONNECTION_TIMEOUT
from tests.plugins.sim import sim_run, sim_wsman

pytestmark = pytest.mark.timeout(60)
REQUEST = b"GET /wsman HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"


def answered(connection: socket.socket) -> bytes:
    connection.sendall(REQUEST)
    return connection.recv(65536)


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(sim_host):
    h = sim_host("fresh", idle_timeout=0.5)
    with socket.create_connection((h.address, h.port), timeout=10) as connection:
        for _ in range(3):  # requests within the timeout keep the connection open
            assert answered(connection).startswith(b"HTTP/1.1 405")
            idle_since = time.monotonic()
            time.sleep(0.2)
        assert connection.recv(1) == b""  # the host closed it: end of stream
        assert 0.4 <= time.monotonic() - idle_since < 5


def test_hosts_wait_for_http_sys_idle_timeout_by_default(sim_host):
    assert IDLE_CONNECTION_TIMEOUT == 120
    assert sim_host("fresh").idle_timeout == IDLE_CONNECTION_TIMEOUT


def test_after_an_idle_close_basic_over_https_carries_on_but_ntlm_message_encryption_does_not(sim_host):
    """With Basic every request carries its credentials, so pypsrp simply opens a new connection. With NTLM the
    message was sealed for the old connection's security context before pypsrp found the connection closed; it
    authenticates a new one and sends that message, which the host cannot decrypt. A client must not leave a
    pool idle longer than the host's idle timeout (or must open a new pool after it)."""
    basic = sim_host("healthy", https=True, auth="basic", idle_timeout=0.5)
    with sim_wsman(basic) as wsman, RunspacePool(wsman) as pool:
        sim_run(pool, ("Get-VM", {}))
        time.sleep(1.2)
        assert len(sim_run(pool, ("Get-VM", {})).output) == len(basic.model.vms)

    ntlm = sim_host("healthy", idle_timeout=0.5)
    with sim_wsman(ntlm) as wsman:
        pool = RunspacePool(wsman)
        pool.open()
        sim_run(pool, ("Get-VM", {}))
        time.sleep(1.2)
        with pytest.raises(WSManFaultError) as caught:
            sim_run(pool, ("Get-VM", {}))
        assert caught.value.code == 2150858778  # "The encrypted message cannot be decrypted"
