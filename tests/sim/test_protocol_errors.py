"""Bad requests get a WSMan fault from the simulated host: never a crash, a hang or a stack trace."""

from __future__ import annotations

import base64
import struct
import uuid
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest
import requests
import spnego
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import NAMESPACES, WSMan

from hypervsim import SimHost

SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
POWERSHELL = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"


def soap(action: str, body: str = "", shell_id: str | None = None, message_id: str | None = None, **header: str) -> str:
    selector = f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>' if shell_id else ""
    extra = "".join(f"<w:{k}>{v}</w:{k}>" for k, v in header.items())
    message = message_id or f"uuid:{uuid.uuid4()}"
    return (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
        f'xmlns:rsp="{SHELL}"><s:Header><a:Action>{action}</a:Action><a:MessageID>{message}</a:MessageID>'
        f"<w:ResourceURI>{POWERSHELL}</w:ResourceURI>{selector}{extra}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )


def post(h: SimHost, body: str | bytes, **kw: Any) -> requests.Response:
    data = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": "application/soap+xml;charset=UTF-8"}
    return requests.post(
        h.url, data=data, auth=(h.user, h.password), verify=h.ca_file, headers=headers, timeout=15, **kw
    )


def fault_of(response: requests.Response) -> tuple[int, str]:
    assert response.status_code == 500
    assert b"Traceback" not in response.content and b'File "' not in response.content
    root = SafeET.fromstring(response.content)
    detail = root.find("s:Body/s:Fault/s:Detail/wsmanfault:WSManFault", NAMESPACES)
    subcode = root.find("s:Body/s:Fault/s:Code/s:Subcode/s:Value", NAMESPACES)
    assert detail is not None and subcode is not None
    return int(detail.attrib["Code"]), subcode.text or ""


@pytest.fixture
def host(sim_host: Any) -> SimHost:
    return sim_host("healthy", https=True, auth="basic")


def basic_wsman(h: SimHost) -> WSMan:
    ca: Any = h.ca_file  # pypsrp accepts a CA bundle path where its hints say bool
    return WSMan("127.0.0.1", port=h.port, auth="basic", username=h.user, password=h.password, cert_validation=ca)


@pytest.fixture
def shell_id(host: SimHost) -> Any:
    pool = RunspacePool(basic_wsman(host))
    pool.open()
    yield pool.shell.id
    pool.close()


def still_serves(h: SimHost) -> None:
    with RunspacePool(basic_wsman(h)) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VMHost")
        assert ps.invoke()


@pytest.mark.parametrize(
    "body",
    [
        b"<s:Envelope",
        b"\x00\xff\xfe not xml at all",
        b"<?xml version='1.0'?><!DOCTYPE l [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;'>]><x>&b;</x>",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
        b"<notsoap/>",
    ],
    ids=["truncated", "binary", "entity-expansion", "external-entity", "not-an-envelope"],
)
def test_malformed_envelope_gets_a_fault(host: SimHost, body: bytes) -> None:
    code, _ = fault_of(post(host, body))
    assert code == 2150858778
    assert b"root:" not in post(host, body).content
    still_serves(host)


def test_unknown_action_gets_a_fault_that_relates_to_the_request(host: SimHost) -> None:
    response = post(host, soap("http://example.org/DoSomethingElse", message_id="uuid:1234-abcd"))
    assert fault_of(response) == (2150858782, "a:ActionNotSupported")
    assert b"<a:RelatesTo>uuid:1234-abcd</a:RelatesTo>" in response.content


def test_missing_message_id_is_an_invalid_header(host: SimHost) -> None:
    body = soap(f"{SHELL}/Receive").replace("<a:MessageID>", "<a:Other>").replace("</a:MessageID>", "</a:Other>")
    assert fault_of(post(host, body)) == (2150858767, "a:InvalidMessageInformationHeader")


def test_invalid_operation_timeout_is_an_invalid_header(host: SimHost, shell_id: str) -> None:
    body = soap(
        f"{SHELL}/Receive",
        "<rsp:Receive><rsp:DesiredStream>stdout</rsp:DesiredStream></rsp:Receive>",
        shell_id,
        OperationTimeout="PT-1S",
    )
    assert fault_of(post(host, body)) == (2150858767, "a:InvalidMessageInformationHeader")


def test_unknown_shell_gets_fault_2150858843(host: SimHost) -> None:
    body = soap(
        f"{SHELL}/Receive",
        "<rsp:Receive><rsp:DesiredStream>stdout</rsp:DesiredStream></rsp:Receive>",
        str(uuid.uuid4()).upper(),
    )
    assert fault_of(post(host, body)) == (2150858843, "w:InvalidSelectors")


def test_unknown_command_gets_fault_2150858843(host: SimHost, shell_id: str) -> None:
    receive = f'<rsp:Receive><rsp:DesiredStream CommandId="{uuid.uuid4()}">stdout</rsp:DesiredStream></rsp:Receive>'
    assert fault_of(post(host, soap(f"{SHELL}/Receive", receive, shell_id)))[0] == 2150858843


@pytest.mark.parametrize(
    "data",
    [
        "not base64 at all!!",
        base64.b64encode(struct.pack(">QQBI", 9, 0, 3, 500) + b"short").decode(),
        base64.b64encode(b"\x00\x01\x02").decode(),
        base64.b64encode(struct.pack(">QQBI", 9, 0, 3, 12) + b"\x02\x00\x00\x00\x06\x10\x02\x00garbage!").decode(),
    ],
    ids=["bad-base64", "truncated-fragment", "truncated-header", "garbage-message"],
)
def test_bad_stream_data_gets_a_fault(host: SimHost, shell_id: str, data: str) -> None:
    send = f'<rsp:Send><rsp:Stream Name="stdin">{data}</rsp:Stream></rsp:Send>'
    assert fault_of(post(host, soap(f"{SHELL}/Send", send, shell_id)))[0] == 2150858778
    still_serves(host)


@pytest.mark.parametrize("arguments", ["%%%", base64.b64encode(struct.pack(">QQBI", 3, 0, 3, 4) + b"junk").decode()])
def test_bad_command_arguments_get_a_fault_and_leave_no_command(host: SimHost, shell_id: str, arguments: str) -> None:
    command_id = str(uuid.uuid4()).upper()
    line = f'<rsp:CommandLine CommandId="{command_id}"><rsp:Command/><rsp:Arguments>{arguments}</rsp:Arguments>'
    assert fault_of(post(host, soap(f"{SHELL}/Command", line + "</rsp:CommandLine>", shell_id)))[0] == 2150858778
    receive = f'<rsp:Receive><rsp:DesiredStream CommandId="{command_id}">stdout</rsp:DesiredStream></rsp:Receive>'
    assert fault_of(post(host, soap(f"{SHELL}/Receive", receive, shell_id)))[0] == 2150858843


def test_oversized_body_gets_a_fault(host: SimHost) -> None:
    huge = soap(f"{SHELL}/Send", "<rsp:Send>" + "A" * 2_000_000 + "</rsp:Send>")
    assert fault_of(post(host, huge)) == (2150858817, "w:EncodingLimit")
    still_serves(host)


def test_other_paths_and_methods(host: SimHost) -> None:
    assert (
        requests.post(
            host.url.replace("/wsman", "/other"),
            auth=(host.user, host.password),
            verify=host.ca_file,
            data=b"<x/>",
            timeout=5,
        ).status_code
        == 404
    )
    assert requests.get(host.url, verify=host.ca_file, timeout=5).status_code == 405


def test_requests_without_credentials_get_401_with_the_scheme(host: SimHost, sim_host: Any) -> None:
    response = requests.post(host.url, data=b"<x/>", verify=host.ca_file, timeout=5)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == 'Basic realm="WSMAN"'
    negotiate = sim_host("fresh")
    response = requests.post(negotiate.url, data=b"<x/>", timeout=5)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Negotiate"
    response = requests.post(negotiate.url, data=b"<x/>", headers={"Authorization": "Negotiate %%%"}, timeout=5)
    assert response.status_code == 401


def test_create_needs_a_powershell_resource_uri(host: SimHost) -> None:
    body = soap("http://schemas.xmlsoap.org/ws/2004/09/transfer/Create", "<rsp:Shell/>").replace(
        POWERSHELL, "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
    )
    assert fault_of(post(host, body))[0] == 2150858778


def negotiated_session(h: SimHost) -> tuple[requests.Session, Any]:
    """A keep-alive HTTP session that completed Negotiate/NTLM with the host, and its client security context."""
    context = spnego.client(
        h.user,
        h.password,
        hostname="127.0.0.1",
        service="HTTP",
        protocol="negotiate",
        options=spnego.NegotiateOptions.wrapping_winrm,
    )
    session, token = requests.Session(), context.step()
    while not context.complete:
        assert token is not None
        answer = session.post(
            h.url, headers={"Authorization": "Negotiate " + base64.b64encode(token).decode()}, timeout=5
        )
        challenge = answer.headers["WWW-Authenticate"].split(" ", 1)[1]
        token = context.step(base64.b64decode(challenge))
    assert answer.status_code == 200
    return session, context


def test_tampered_encrypted_body_gets_a_fault(sim_host: Any) -> None:
    h = sim_host("fresh")
    session, context = negotiated_session(h)
    header, sealed, _ = context.wrap_winrm(soap(f"{SHELL}/Receive").encode())
    tampered = bytearray(sealed)
    tampered[10] ^= 0xFF
    boundary = b"--Encrypted Boundary"
    body = b"\r\n".join(
        [
            boundary,
            b"\tContent-Type: application/HTTP-SPNEGO-session-encrypted",
            f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={len(sealed)}".encode(),
            boundary,
            b"\tContent-Type: application/octet-stream",
            struct.pack("<i", len(header)) + header + bytes(tampered) + boundary + b"--\r\n",
        ]
    )
    content_type = (
        'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";boundary="Encrypted Boundary"'
    )
    response = session.post(h.url, data=body, headers={"Content-Type": content_type}, timeout=5)
    assert fault_of(response)[0] == 2150858778
    response = session.post(
        h.url, data=b"--Encrypted Boundary\r\nnonsense", headers={"Content-Type": content_type}, timeout=5
    )
    assert fault_of(response)[0] == 2150858778


def test_basic_credentials_are_needed_on_every_request(host: SimHost) -> None:
    with requests.Session() as session:
        first = session.post(host.url, data=b"<x/>", auth=(host.user, host.password), verify=host.ca_file, timeout=5)
        assert first.status_code == 500  # authenticated, then a fault for the body
        second = session.post(host.url, data=b"<x/>", verify=host.ca_file, timeout=5)  # same connection, no credentials
        assert second.status_code == 401
        utf8 = base64.b64encode(f"{host.user}:pässwörd".encode()).decode()
        third = session.post(
            host.url, data=b"<x/>", headers={"Authorization": f"Basic {utf8}"}, verify=host.ca_file, timeout=5
        )
        assert third.status_code == 401
