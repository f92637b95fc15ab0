"""Registering, editing and deleting hosts: every field validated, duplicates refused, the password kept secret."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management import call_command
from django.db import connection
from django.test import Client

from console.models import AuditEvent
from hosts.models import Host
from hosts.remoting.errors import REMEDIES
from hosts.templatetags.hosts_tags import humane_ago
from hosts.views import remedy_action

SECRET = "Wh1te-Rabbit-Host-Pass!"


def certificate_pem(common_name: str = "Lab CA") -> tuple[str, str]:
    """A self-signed certificate and its private key, both PEM."""
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "HV01",
        "address": "hv01.lab.example",
        "transport": "http",
        "port": "",
        "auth": "negotiate",
        "cert_check": "system",
        "ca_bundle": "",
        "fingerprint_sha256": "",
        "username": "LAB\\hvconsole",
        "password": SECRET,
    }
    data.update(overrides)
    return data


def register(client: Client, **overrides: Any) -> Any:
    return client.post("/hosts/new/", form_data(**overrides))


def errors_of(response: Any) -> dict[str, list[str]]:
    return {name: list(errs) for name, errs in response.context["form"].errors.items()}


def test_an_admin_registers_a_host_and_the_default_port_follows_the_transport(admin_client: Client) -> None:
    response = register(admin_client)
    host = Host.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/hosts/{host.pk}/"
    assert (host.port, host.address, host.get_password()) == (5985, "hv01.lab.example", SECRET)
    register(admin_client, name="HV02", address="HV02.Lab.Example.", transport="https", auth="basic")
    hv02 = Host.objects.get(name="HV02")
    assert (hv02.port, hv02.address) == (5986, "hv02.lab.example")
    event = AuditEvent.objects.filter(action="host.create").first()
    assert event is not None and event.username == "ada"


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"name": ""}, "name", "required"),
        ({"address": ""}, "address", "required"),
        ({"address": "http://hv01/wsman"}, "address", "host name"),
        ({"address": "hv 01"}, "address", "host name"),
        ({"address": "-hv01.lab"}, "address", "host name"),
        ({"address": "999.1.1.1"}, "address", "not a valid one"),
        ({"address": "a" * 64 + ".lab"}, "address", "host name"),
        ({"port": "0"}, "port", "greater than or equal to 1"),
        ({"port": "65536"}, "port", "less than or equal to 65535"),
        ({"port": "fifty"}, "port", "whole number"),
        ({"transport": "ftp"}, "transport", "valid choice"),
        ({"auth": "digest"}, "auth", "valid choice"),
        ({"auth": "basic"}, "auth", "only with HTTPS"),
        ({"auth": "kerberos", "address": "10.0.0.5"}, "address", "Kerberos needs"),
        ({"transport": "https", "cert_check": "sometimes"}, "cert_check", "valid choice"),
        ({"transport": "https", "cert_check": "ca_bundle"}, "ca_bundle", "Paste or upload"),
        ({"transport": "https", "cert_check": "ca_bundle", "ca_bundle": "hello"}, "ca_bundle", "PEM certificates"),
        (
            {
                "transport": "https",
                "cert_check": "ca_bundle",
                "ca_bundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            },
            "ca_bundle",
            "cannot be read",
        ),
        ({"transport": "https", "cert_check": "fingerprint"}, "fingerprint_sha256", "Enter the SHA-256"),
        (
            {"transport": "https", "cert_check": "fingerprint", "fingerprint_sha256": "ab:cd"},
            "fingerprint_sha256",
            "64 hexadecimal",
        ),
        ({"username": ""}, "username", "required"),
        ({"username": "LAB\\hv\x01x"}, "username", "control characters"),
        ({"password": ""}, "password", "required"),
    ],
)
def test_bad_input_is_refused_field_by_field_and_nothing_is_saved(
    admin_client: Client, overrides: dict[str, Any], field: str, words: str
) -> None:
    response = register(admin_client, **overrides)
    assert response.status_code == 200
    messages = " ".join(errors_of(response).get(field, []))
    assert words in messages, errors_of(response)
    assert not Host.objects.exists()
    assert SECRET.encode() not in response.content


def test_kerberos_is_refused_with_what_to_install_when_this_console_has_no_gssapi(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hosts.models.kerberos_available", lambda: False)
    monkeypatch.setattr("hosts.forms.kerberos_available", lambda: False)
    form = admin_client.get("/hosts/new/").content.decode()
    assert "Kerberos (not installed on this console" in form and "NTLM here" in form  # said before anyone picks it
    response = register(admin_client, auth="kerberos")
    assert response.status_code == 200 and not Host.objects.exists()
    message = " ".join(errors_of(response)["auth"])
    assert "no GSSAPI library" in message and "guardian-console[kerberos]" in message and "Negotiate" in message

    monkeypatch.setattr("hosts.models.kerberos_available", lambda: True)  # a console installed with the extra
    assert register(admin_client, auth="kerberos").status_code == 302
    assert Host.objects.get().auth == "kerberos"


def test_a_ca_bundle_holding_a_private_key_is_refused(admin_client: Client) -> None:
    cert, key = certificate_pem()
    response = register(admin_client, transport="https", cert_check="ca_bundle", ca_bundle=cert + key)
    assert "private key" in " ".join(errors_of(response)["ca_bundle"])
    key_body = key.splitlines()[1]
    assert key_body not in response.content.decode()
    assert not Host.objects.exists()


def test_a_ca_bundle_can_be_pasted_or_uploaded(admin_client: Client, tmp_path: Path) -> None:
    cert, _key = certificate_pem()
    register(admin_client, transport="https", cert_check="ca_bundle", ca_bundle=cert)
    assert Host.objects.get(name="HV01").ca_bundle.strip() == cert.strip()
    upload = tmp_path / "ca.pem"
    upload.write_text(cert)
    with upload.open("rb") as handle:
        register(
            admin_client, name="HV02", address="hv02", transport="https", cert_check="ca_bundle", ca_bundle_file=handle
        )
    assert Host.objects.get(name="HV02").ca_bundle.strip() == cert.strip()


def test_a_der_upload_is_refused_with_a_hint(admin_client: Client, tmp_path: Path) -> None:
    upload = tmp_path / "ca.cer"
    upload.write_bytes(bytes(range(256)))
    with upload.open("rb") as handle:
        response = register(admin_client, transport="https", cert_check="ca_bundle", ca_bundle_file=handle)
    assert "PEM form" in " ".join(errors_of(response)["ca_bundle_file"])


def test_a_fingerprint_with_colons_is_stored_as_plain_hex(admin_client: Client) -> None:
    pinned = ":".join(["AB"] * 32)
    register(admin_client, transport="https", cert_check="fingerprint", fingerprint_sha256=pinned)
    assert Host.objects.get().fingerprint_sha256 == "ab" * 32


def test_duplicates_are_refused_by_name_whatever_the_case_and_by_endpoint(admin_client: Client) -> None:
    register(admin_client)
    same_name = register(admin_client, name="hv01", address="hv99")
    assert "already registered" in str(same_name.context["form"].errors)
    same_endpoint = register(admin_client, name="HV02", address="HV01.lab.example")
    assert "already registered" in str(same_endpoint.context["form"].errors)
    assert Host.objects.count() == 1
    register(admin_client, name="HV02", port="5999")  # same address on another port is another endpoint
    assert Host.objects.count() == 2


def test_http_drops_certificate_settings_that_cannot_apply(admin_client: Client) -> None:
    register(admin_client, cert_check="none", fingerprint_sha256="ab" * 32)
    host = Host.objects.get()
    assert (host.cert_check, host.fingerprint_sha256) == ("system", "")


def test_do_not_verify_is_marked_loudly_in_the_form_and_on_the_host_page(admin_client: Client) -> None:
    form = admin_client.get("/hosts/new/").content.decode()
    assert "DO NOT VERIFY" in form and "insecure-choice" in form
    register(admin_client, transport="https", cert_check="none")
    page = admin_client.get(f"/hosts/{Host.objects.get().pk}/").content.decode()
    assert "NOT verified" in page and "danger-box" in page
    assert "NOT VERIFIED" in admin_client.get("/hosts/").content.decode()


def test_editing_with_the_placeholder_left_keeps_the_stored_password(admin_client: Client) -> None:
    register(admin_client)
    host = Host.objects.get()
    sealed = host.password
    page = admin_client.get(f"/hosts/{host.pk}/edit/").content.decode()
    assert "leave empty to keep it" in page and SECRET not in page and sealed not in page
    response = admin_client.post(f"/hosts/{host.pk}/edit/", form_data(password="", port="5990"))
    assert response.status_code == 302
    host.refresh_from_db()
    assert (host.port, host.password, host.get_password()) == (5990, sealed, SECRET)
    event = AuditEvent.objects.get(action="host.update")
    assert event.detail == {"changed": ["port"]}


def test_editing_with_a_new_password_replaces_it_and_audits_only_that_credentials_changed(
    admin_client: Client,
) -> None:
    register(admin_client)
    host = Host.objects.get()
    admin_client.post(f"/hosts/{host.pk}/edit/", form_data(password="An0ther-Secret!", port="5985"))
    host.refresh_from_db()
    assert host.get_password() == "An0ther-Secret!"
    detail = AuditEvent.objects.get(action="host.update").detail
    assert detail == {"changed": ["credentials"]}


def test_switching_to_https_moves_a_default_port_along_but_keeps_a_custom_one(admin_client: Client) -> None:
    register(admin_client)
    host = Host.objects.get()
    admin_client.post(f"/hosts/{host.pk}/edit/", form_data(port="5985", transport="https", auth="basic"))
    host.refresh_from_db()
    assert (host.transport, host.port) == ("https", 5986)
    admin_client.post(f"/hosts/{host.pk}/edit/", form_data(port="7000"))
    admin_client.post(f"/hosts/{host.pk}/edit/", form_data(port="7000", transport="https"))
    host.refresh_from_db()
    assert (host.transport, host.port) == ("https", 7000)


def test_an_invalid_edit_changes_nothing(admin_client: Client) -> None:
    register(admin_client)
    host = Host.objects.get()
    response = admin_client.post(f"/hosts/{host.pk}/edit/", form_data(auth="basic", port="77", password="x"))
    assert response.status_code == 200
    host.refresh_from_db()
    assert (host.auth, host.port, host.get_password()) == ("negotiate", 5985, SECRET)


def test_deleting_asks_first_then_removes_the_host_and_audits(admin_client: Client) -> None:
    register(admin_client)
    host = Host.objects.get()
    confirm = admin_client.get(f"/hosts/{host.pk}/delete/")
    assert confirm.status_code == 200 and b"Delete HV01?" in confirm.content
    response = admin_client.post(f"/hosts/{host.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/hosts/"
    assert not Host.objects.exists()
    event = AuditEvent.objects.get(action="host.delete")
    assert event.object_repr == "HV01"


def test_unknown_hosts_are_404_not_500(admin_client: Client) -> None:
    for url in ("/hosts/9999/", "/hosts/9999/edit/", "/hosts/9999/delete/"):
        assert admin_client.get(url).status_code == 404
    assert admin_client.post("/hosts/9999/test/").status_code == 404


def test_anonymous_visitors_are_sent_to_the_login_page(client: Client, db: None) -> None:
    host = Host.objects.create(name="HV01", address="hv01", username="u")
    for url in (
        "/hosts/",
        "/hosts/new/",
        "/hosts/prepare/",
        f"/hosts/{host.pk}/",
        f"/hosts/{host.pk}/edit/",
        f"/hosts/{host.pk}/delete/",
        "/users/",
        "/users/new/",
    ):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    assert client.post(f"/hosts/{host.pk}/test/")["Location"].startswith("/login/")


@pytest.mark.parametrize(
    ("who", "read", "test", "manage"),
    [("viewer", 200, 403, 403), ("operator", 200, "run", 403), ("admin", 200, "run", "ok"), ("nobody", 403, 403, 403)],
)
def test_roles_decide_who_reads_tests_and_manages_hosts(
    request: pytest.FixtureRequest, who: str, read: int, test: Any, manage: Any
) -> None:
    client = Client()
    client.force_login(request.getfixturevalue(who))
    host = Host(name="HV01", address="127.0.0.1", port=1, username="u")  # port 1: nothing listens, fails fast
    host.set_password(SECRET)
    host.save()
    for url in ("/hosts/", f"/hosts/{host.pk}/", "/hosts/prepare/"):
        assert client.get(url).status_code == read, url
    tested = client.post(f"/hosts/{host.pk}/test/")
    assert tested.status_code == (302 if test == "run" else 403)
    manage_urls = ["/hosts/new/", f"/hosts/{host.pk}/edit/", f"/hosts/{host.pk}/delete/"]
    for url in manage_urls:
        assert client.get(url).status_code == (200 if manage == "ok" else 403), url
    if manage != "ok":
        assert client.post("/hosts/new/", form_data(name="HV02")).status_code == 403
        assert client.post(f"/hosts/{host.pk}/edit/", form_data(name="Renamed")).status_code == 403
        assert client.post(f"/hosts/{host.pk}/delete/").status_code == 403
        assert list(Host.objects.values_list("name", flat=True)) == ["HV01"]
        assert not AuditEvent.objects.filter(action__startswith="host.").exclude(action="host.test_connection")


def test_the_buttons_shown_match_the_role(viewer_client: Client, operator_client: Client, admin_client: Client) -> None:
    host = Host.objects.create(name="HV01", address="hv01", username="u")
    viewer_page = viewer_client.get(f"/hosts/{host.pk}/").content.decode()
    operator_page = operator_client.get(f"/hosts/{host.pk}/").content.decode()
    admin_page = admin_client.get(f"/hosts/{host.pk}/").content.decode()
    assert "Test connection" not in viewer_page and "/edit/" not in viewer_page
    assert "Test connection" in operator_page and "/edit/" not in operator_page
    assert "Test connection" in admin_page and "/edit/" in admin_page and "/delete/" in admin_page


def test_get_on_the_test_endpoint_is_refused(admin_client: Client) -> None:
    host = Host.objects.create(name="HV01", address="hv01", username="u")
    assert admin_client.get(f"/hosts/{host.pk}/test/").status_code == 405


def test_the_password_appears_in_no_page_no_table_and_no_log(
    admin_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    register(admin_client, auth="ntlm", address="127.0.0.1", port="1")
    host = Host.objects.get()
    admin_client.post(f"/hosts/{host.pk}/edit/", form_data(address="127.0.0.1", port="1", password=""))
    admin_client.post(f"/hosts/{host.pk}/test/")  # fails (nothing listens on port 1): the message is shown
    pages = [
        admin_client.get(url, follow=True).content.decode()
        for url in (
            "/hosts/",
            f"/hosts/{host.pk}/",
            f"/hosts/{host.pk}/edit/",
            "/hosts/prepare/",
            f"/hosts/prepare/?host={host.pk}",
            "/audit/",
            f"/hosts/{host.pk}/delete/",
        )
    ]
    assert all(SECRET not in page for page in pages)
    assert SECRET not in caplog.text
    dump = io.StringIO()
    call_command("dumpdata", exclude=["console.consolepermission"], stdout=dump)
    assert SECRET not in dump.getvalue()
    assert SECRET not in every_text_column()


def every_text_column() -> str:
    """Every value of every column of every table, as text: the password must be nowhere in it."""
    found: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 (names from the DB)
            found.extend(str(value) for row in cursor.fetchall() for value in row)
    return "\n".join(found)


def test_the_prepare_page_shows_the_powershell_an_admin_needs(viewer_client: Client) -> None:
    page = viewer_client.get("/hosts/prepare/").content.decode()
    for expected in (
        "Enable-PSRemoting",
        "WINRM-HTTP-In-TCP",
        "-Transport HTTPS",
        "New-SelfSignedCertificate",
        "ComputeHash",
        "Hyper-V Administrators",
        "Remote Management Users",
        "LocalAccountTokenFilterPolicy",
        "Get-HgsClientConfiguration",
        "Just Enough Administration",
    ):
        assert expected in page, expected


def test_the_prepare_page_fills_in_a_registered_account_but_never_odd_text(viewer_client: Client) -> None:
    host = Host.objects.create(name="HV01", address="hv01.lab.example", username="LAB\\hv-console")
    page = viewer_client.get(f"/hosts/prepare/?host={host.pk}").content.decode()
    assert "-Member &#x27;LAB\\hv-console&#x27;" in page or "-Member 'LAB\\hv-console'" in page
    assert "hv01.lab.example" in page
    Host.objects.filter(pk=host.pk).update(username="x'; Format-Volume -DriveLetter C; '")
    page = viewer_client.get(f"/hosts/prepare/?host={host.pk}").content.decode()
    assert "Format-Volume" not in page
    assert viewer_client.get("/hosts/prepare/?host=abc").status_code == 200


def test_a_host_with_an_unfinished_job_is_not_deleted_from_under_it(admin_client: Client) -> None:
    from jobs.models import Job

    register(admin_client)
    host = Host.objects.get()
    job = Job.objects.create(kind="refresh_inventory")
    job.hosts.add(host)
    assert b"A job on this host has not finished" in admin_client.get(f"/hosts/{host.pk}/delete/").content
    response = admin_client.post(f"/hosts/{host.pk}/delete/", follow=True)
    assert b"unfinished job" in response.content
    assert Host.objects.filter(pk=host.pk).exists()
    assert not AuditEvent.objects.filter(action="host.delete").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "HV\x0001"},
        {"name": "x" * 5000},
        {"address": "hv01\x00.lab"},
        {"address": "hv01.例え.jp"},
        {"address": "::1"},
        {"port": "99999999999999999999999"},
        {"port": "-5"},
        {"username": "u" * 300},
        {"fingerprint_sha256": "ü" * 64, "transport": "https", "cert_check": "fingerprint"},
        {"ca_bundle": "\x00" * 10, "transport": "https", "cert_check": "ca_bundle"},
    ],
)
def test_garbage_never_causes_a_500(admin_client: Client, overrides: dict[str, Any]) -> None:
    response = register(admin_client, **overrides)
    assert response.status_code in (200, 302)
    if response.status_code == 302:  # the IPv6 loopback is a valid address
        assert Host.objects.get().address == "::1"


def test_the_fixture_registers_a_host_from_a_connection_spec_and_back(registered_host: Any) -> None:
    from hosts.remoting import ConnectionSpec

    spec = ConnectionSpec(
        "hv07.lab.example", 5986, True, "basic", "LAB\\hv", SECRET, "fingerprint", "", "ab" * 32, "HV07"
    )
    host = registered_host(spec)
    assert host.name == "HV07" and host.connection_spec() == spec


# --- humane times and remedies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "said"),
    [
        (timedelta(seconds=-5), "just now"),  # a clock a little ahead
        (timedelta(seconds=0), "just now"),
        (timedelta(seconds=44), "just now"),
        (timedelta(seconds=50), "a minute ago"),
        (timedelta(minutes=5, seconds=59), "5 minutes ago"),
        (timedelta(minutes=61), "an hour ago"),
        (timedelta(hours=3), "3 hours ago"),
        (timedelta(hours=30), "yesterday"),
        (timedelta(days=3), "3 days ago"),
    ],
)
def test_relative_times_read_as_people_say_them(elapsed: timedelta, said: str) -> None:
    now = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert humane_ago(now - elapsed, now=now) == said


def test_a_week_or_more_ago_is_the_date_and_nothing_is_never() -> None:
    now = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert humane_ago(now - timedelta(days=9), now=now) == "on 2026-11-21"
    assert humane_ago(None) == "never"


@pytest.mark.parametrize("kind", sorted(REMEDIES))
def test_a_remedy_adds_only_what_to_do(kind: str) -> None:
    diagnosis, colon, _rest = REMEDIES[kind].partition(": ")
    action = remedy_action(kind)
    assert diagnosis not in action
    assert action == "" if not colon else action[0].isupper()
