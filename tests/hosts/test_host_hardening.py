"""Registering a host: names that read as what they are, and no password sent where anyone can read it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from hosts.models import Host, validate_display_name
from tests.hosts.test_register import errors_of, register

HOSTILE_NAMES = {
    "a newline (a fake log line)": "HV01\n2026-12-06 09:00 job 7 finished: ok",
    "a carriage return": "HV01\rHV02",
    "a tab": "HV\t01",
    "a NUL": "HV\x0001",
    "an escape sequence": "HV01\x1b[2J",
    "a right-to-left override": "HV\u202e10",
    "a left-to-right isolate": "\u2066HV01\u2069",
    "a zero-width space": "HV\u200b01",
    "a zero-width joiner": "HV\u200d01",
    "a byte-order mark": "\ufeffHV01",
    "a line separator": "HV01\u2028HV02",
    "a no-break space": "HV\u00a001",
    "an ideographic space": "HV\u300001",
    "a private-use character": "HV\ue00001",
    "full-width letters": "ＨＶ０１",
    "a superscript digit": "HV0¹",
    "a Cyrillic look-alike": "\u041dV01",  # Cyrillic capital EN for H
    "a Greek look-alike": "H\u03a501",  # Greek capital UPSILON for Y
}


@pytest.mark.parametrize("name", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_hostile_host_names_are_refused_with_a_form_error(admin_client: Client, name: str) -> None:
    response = register(admin_client, name=name)
    assert response.status_code == 200
    assert "name" in errors_of(response) and not Host.objects.exists()


@pytest.mark.parametrize("name", ["HV01", "Hyper-V 01 (rack 3)", "hv_02.lab", "Zürich HV", "東京 HV03", "Ωμέγα 2"])
def test_ordinary_names_in_any_script_are_accepted(name: str) -> None:
    validate_display_name(name)


def test_the_message_names_the_invisible_character() -> None:
    with pytest.raises(ValidationError, match="U\\+202E"):
        validate_display_name(HOSTILE_NAMES["a right-to-left override"])


def test_the_model_refuses_a_hostile_name_without_the_form_too() -> None:
    host = Host(name="HV01\u200b", address="hv01.lab.example", username="LAB\\hv")
    with pytest.raises(ValidationError) as raised:
        host.full_clean(exclude=["password", "port"], validate_unique=False, validate_constraints=False)
    assert "name" in raised.value.message_dict


def test_basic_over_https_without_certificate_check_cannot_be_saved(admin_client: Client) -> None:
    response = register(admin_client, transport="https", auth="basic", cert_check="none")
    assert response.status_code == 200 and not Host.objects.exists()
    assert "anyone on the path can read it" in " ".join(errors_of(response)["cert_check"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"transport": "https", "auth": "basic", "cert_check": "fingerprint", "fingerprint_sha256": "ab" * 32},
        {"transport": "https", "auth": "ntlm", "cert_check": "none"},  # NTLM does not send the password itself
    ],
)
def test_basic_with_a_checked_certificate_and_unchecked_ntlm_are_still_allowed(
    admin_client: Client, overrides: dict[str, Any]
) -> None:
    assert register(admin_client, **overrides).status_code == 302
    assert Host.objects.count() == 1


def test_editing_an_existing_basic_host_to_skip_the_check_is_refused(admin_client: Client) -> None:
    register(admin_client, transport="https", auth="basic", cert_check="fingerprint", fingerprint_sha256="ab" * 32)
    host = Host.objects.get()
    response = admin_client.post(
        f"/hosts/{host.pk}/edit/",
        {**_edit_data(host), "cert_check": "none", "fingerprint_sha256": ""},
    )
    assert response.status_code == 200 and "cert_check" in errors_of(response)
    host.refresh_from_db()
    assert host.cert_check == "fingerprint"


def _edit_data(host: Host) -> dict[str, Any]:
    fields = ["name", "address", "transport", "port", "auth", "cert_check", "ca_bundle", "fingerprint_sha256"]
    return {**{name: getattr(host, name) for name in fields}, "username": host.username, "password": ""}
