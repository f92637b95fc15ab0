"""Two-factor for admins: enrolling an authenticator app (its secret as text and a QR code drawn here), verifying once
per session before admin work — destructive jobs, vault downloads, managing hosts and users — and recovery codes that
are shown once and work once. Codes are computed with django-otp's own TOTP function, as an app would."""

from __future__ import annotations

import base64
import html
import re
import time
from typing import Any

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from console.models import AuditEvent
from tests.plugins.users import client_for

pytestmark = pytest.mark.django_db

# Admin work (each permission the second factor guards) and an operator's page that never needs it.
GUARDED = ["/users/", "/hosts/new/", "/jobs/new/reset/", "/vault/999/download/"]


@pytest.fixture
def required(settings: Any) -> None:
    settings.ADMIN_2FA = "required"


def page_text(response: Any) -> str:
    return html.unescape(response.content.decode())


def secret_on(page: str) -> bytes:
    """The secret the set-up page shows as text, as someone types it into their app."""
    shown = re.search(r'id="two-factor-secret">([A-Z2-7 ]+)<', page)
    assert shown is not None, page
    return base64.b32decode(shown.group(1).replace(" ", ""))


def app_code(key: bytes, steps_ahead: int = 0) -> str:
    """What the authenticator app shows now (or that many 30-second steps later)."""
    return f"{totp(key, drift=steps_ahead):06d}"


def enrol(client: Client, next_url: str = "/") -> tuple[bytes, list[str]]:
    """Set two-factor up through the page: the app's key, and the recovery codes shown."""
    page = page_text(client.get(f"/account/two-factor/?next={next_url}"))
    key = secret_on(page)
    signed = re.search(r'name="signed_key" value="([^"]+)"', page)
    assert signed is not None
    response = client.post(
        "/account/two-factor/", {"signed_key": signed.group(1), "code": app_code(key), "next": next_url}
    )
    assert response.status_code == 200, response
    codes = re.findall(r"<li>([a-z2-7]{8})</li>", response.content.decode())
    return key, codes


def test_an_admin_without_two_factor_is_sent_to_set_it_up_before_admin_work(required: None, admin_client: Client):
    for url in GUARDED:
        response = admin_client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/account/two-factor/?next={url.replace('/', '%2F')}", url
    assert admin_client.get("/").status_code == 200  # reading needs no second factor
    assert admin_client.get("/vms/").status_code == 200


def test_enrolling_shows_the_secret_and_a_local_qr_code_then_opens_admin_work(
    required: None, admin: Any, admin_client: Client
) -> None:
    page = page_text(admin_client.get("/account/two-factor/?next=/users/"))
    assert 'src="data:image/svg+xml;base64,' in page  # drawn here: no outside QR service
    qr = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert qr is not None and b"<svg" in base64.b64decode(qr.group(1))
    assert not TOTPDevice.objects.exists()  # nothing is stored before the app proves it has the secret
    key, codes = enrol(admin_client, "/users/")
    assert len(codes) == 10 and len(set(codes)) == 10
    assert admin_client.get("/users/").status_code == 200  # this session passed the second factor
    assert AuditEvent.objects.filter(action="two_factor.enrol", user=admin).exists()


def test_a_wrong_code_does_not_turn_two_factor_on(required: None, admin_client: Client) -> None:
    page = page_text(admin_client.get("/account/two-factor/"))
    signed = re.search(r'name="signed_key" value="([^"]+)"', page)
    assert signed is not None
    wrong = f"{(int(app_code(secret_on(page))) + 1) % 1_000_000:06d}"
    response = admin_client.post("/account/two-factor/", {"signed_key": signed.group(1), "code": wrong})
    assert "does not match" in page_text(response)
    assert not TOTPDevice.objects.exists()


def test_each_new_session_verifies_once_with_the_app(required: None, admin: Any) -> None:
    key, _ = enrol(client_for(admin))
    client = client_for(admin)
    response = client.get("/users/")
    assert response["Location"] == "/account/two-factor/verify/?next=%2Fusers%2F"
    refused = client.post("/account/two-factor/verify/", {"code": "000000", "next": "/users/"})
    assert "not valid" in page_text(refused)
    assert AuditEvent.objects.filter(action="two_factor.verify_failed", user=admin).count() == 1
    time.sleep(1.1)  # django-otp throttles after a failure (1 s, then doubling)
    # The enrolment used this step's code: an app's next code is what passes now (a code works once).
    passed = client.post("/account/two-factor/verify/", {"code": app_code(key, steps_ahead=1), "next": "/users/"})
    assert passed.status_code == 302 and passed["Location"] == "/users/"
    for url in GUARDED[:3]:
        assert client.get(url).status_code == 200, url
    assert AuditEvent.objects.get(action="two_factor.verify", user=admin).detail["method"] == "app"


def test_a_recovery_code_works_once(required: None, admin: Any) -> None:
    _, codes = enrol(client_for(admin))
    first = client_for(admin)
    response = first.post("/account/two-factor/verify/", {"code": codes[0], "next": "/users/"})
    assert response["Location"] == "/users/"
    assert first.get("/users/").status_code == 200
    assert StaticToken.objects.count() == 9
    event = AuditEvent.objects.get(action="two_factor.verify", user=admin)
    assert event.detail == {"method": "recovery code", "left": 9}
    second = client_for(admin)
    again = second.post("/account/two-factor/verify/", {"code": codes[0], "next": "/users/"})
    assert "not valid" in page_text(again)
    assert second.get("/users/").status_code == 302


def test_new_recovery_codes_need_a_verified_session_and_are_shown_once(required: None, admin: Any) -> None:
    _, old = enrol(client_for(admin))
    stranger = client_for(admin)  # the password alone, as someone who stole it
    response = stranger.post("/account/two-factor/", {"action": "new_codes"})
    assert response.status_code == 302 and response["Location"].startswith("/account/two-factor/verify/")
    assert StaticToken.objects.count() == 10 and set(StaticToken.objects.values_list("token", flat=True)) == set(old)
    owner = client_for(admin)
    owner.post("/account/two-factor/verify/", {"code": old[0]})
    shown = owner.post("/account/two-factor/", {"action": "new_codes"})
    fresh = re.findall(r"<li>([a-z2-7]{8})</li>", shown.content.decode())
    assert len(fresh) == 10 and not set(fresh) & set(old)
    assert not set(fresh) & set(re.findall(r"[a-z2-7]{8}", owner.get("/account/two-factor/").content.decode()))


def test_an_admin_resets_the_two_factor_of_someone_who_lost_their_phone(
    required: None, admin: Any, operator: Any
) -> None:
    key, _ = enrol(client_for(operator))
    manager = client_for(admin)
    enrol(manager)
    assert 'id="reset-two-factor-' in manager.get("/users/").content.decode()
    response = manager.post(f"/users/{operator.pk}/two-factor/reset/")
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=operator).exists()
    assert AuditEvent.objects.get(action="two_factor.reset").object_id == str(operator.pk)


def test_after_a_post_the_user_comes_back_to_the_page_the_form_was_on(required: None, admin_client: Client) -> None:
    response = admin_client.post("/users/1/unlock/", HTTP_REFERER="http://testserver/users/1/")
    assert response["Location"] == "/account/two-factor/?next=http%3A%2F%2Ftestserver%2Fusers%2F1%2F"
    foreign = admin_client.post("/users/1/unlock/", HTTP_REFERER="https://evil.example/")
    assert foreign["Location"] == "/account/two-factor/?next=%2F"


def test_optional_asks_only_admins_who_set_it_up(settings: Any, admin: Any) -> None:
    settings.ADMIN_2FA = "optional"
    assert client_for(admin).get("/users/").status_code == 200
    enrol(client_for(admin))
    assert client_for(admin).get("/users/")["Location"].startswith("/account/two-factor/verify/")


def test_off_asks_nobody_and_hides_the_pages(settings: Any, admin: Any) -> None:
    settings.ADMIN_2FA = "off"
    client = client_for(admin)
    assert client.get("/users/").status_code == 200
    assert client.get("/account/two-factor/").status_code == 404
    assert 'id="my-two-factor"' not in client.get("/account/").content.decode()


def test_the_setting_defaults_to_required_in_production(monkeypatch: Any) -> None:
    from tests.plugins.sso import console_settings

    assert console_settings()["ADMIN_2FA"] == "optional"  # the test run is development
    values = console_settings(
        CONSOLE_ENV="production",
        ALLOWED_HOSTS="console.example.com",
        CONSOLE_SECRET_KEY="Zq8vN3kL1pR7tX2wY5mB9cF4hJ6gD0sA-production-like-key",
    )
    assert values["ADMIN_2FA"] == "required"
