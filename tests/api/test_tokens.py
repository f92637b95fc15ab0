"""Personal API tokens: made and revoked on "my account", shown once, stored as a digest, audited, never above
their owner's role; expired, revoked, unknown or over-reaching tokens refused with a clear JSON answer and nothing
secret logged."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from api.models import ApiToken, TokenRefused, digest_of
from console.models import AuditEvent
from console.roles import set_role
from jobs.models import Job
from tests.plugins.users import client_for

TOKEN = re.compile(r"gct_[A-Za-z0-9_-]{43}")


def bearer(plain: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {plain}")


def make_token_on_the_page(user: Any, role: str, days: int = 30) -> str:
    response = client_for(user).post("/account/tokens/", {"name": "script", "role": role, "days": days})
    assert response.status_code == 200, response.content.decode()
    found = TOKEN.search(response.content.decode())
    assert found, "the page shows the new token"
    return found.group(0)


def test_a_token_is_shown_once_and_kept_only_as_a_digest(operator: Any) -> None:
    plain = make_token_on_the_page(operator, "operator")
    token = ApiToken.objects.get()
    assert token.digest == digest_of(plain) and token.role == "operator" and token.user == operator
    assert plain not in str(ApiToken.objects.values().get())
    assert plain not in client_for(operator).get("/account/tokens/").content.decode()
    event = AuditEvent.objects.get(action="api_token.create")
    assert event.username == operator.username and plain not in str(event.detail)
    assert bearer(plain).get("/api/hosts/").status_code == 200


def test_a_token_asks_for_no_more_than_its_owner_has(operator: Any, viewer: Any) -> None:
    response = client_for(operator).post("/account/tokens/", {"name": "x", "role": "admin", "days": 30})
    assert response.status_code == 400 and not ApiToken.objects.exists()
    with pytest.raises(TokenRefused, match="yours is viewer"):
        ApiToken.issue(viewer, "x", "operator", 30)


def test_a_token_has_its_own_role_not_its_owners(admin: Any, registered_host_row: Any) -> None:
    _token, plain = ApiToken.issue(admin, "read only", "viewer", 30)
    response = bearer(plain).post(
        "/api/jobs/",
        {"workflow": "refresh", "choices": {"hosts": [registered_host_row.pk]}},
        content_type="application/json",
    )
    assert response.status_code == 403 and not Job.objects.exists()
    assert "has the role viewer; this needs operator (run_jobs)" in response.json()["detail"]


def test_a_token_above_its_demoted_owner_is_refused(admin: Any) -> None:
    _token, plain = ApiToken.issue(admin, "automation", "admin", 30)
    set_role(admin, "viewer")
    response = bearer(plain).get("/api/hosts/")
    assert response.status_code == 403
    assert "above its owner's (viewer)" in response.json()["detail"]


def test_expired_revoked_and_unknown_tokens_get_a_clear_401(operator: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    expired, expired_plain = ApiToken.issue(operator, "old", "operator", 1)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked, revoked_plain = ApiToken.issue(operator, "gone", "operator", 30)
    revoked.revoke(operator)
    unknown = "gct_" + "A" * 43
    answers = {plain: bearer(plain).get("/api/jobs/") for plain in (expired_plain, revoked_plain, unknown)}
    details = [answer.json()["detail"] for answer in answers.values()]
    assert [answer.status_code for answer in answers.values()] == [401, 401, 401]
    assert "expired at" in details[0] and "was revoked" in details[1] and details[2] == "Unknown token."
    assert all(answer["WWW-Authenticate"] == 'Bearer realm="api"' for answer in answers.values())
    shown = caplog.text + str(list(AuditEvent.objects.values())) + " ".join(details)
    for plain in answers:
        assert plain not in shown


def test_no_credentials_get_401_not_the_login_page(db: None) -> None:
    response = Client().get("/api/jobs/")
    assert response.status_code == 401 and "credentials were not provided" in response.json()["detail"]


def test_revoking_on_the_page_ends_the_token_and_is_audited(operator: Any, viewer: Any) -> None:
    plain = make_token_on_the_page(operator, "viewer")
    token = ApiToken.objects.get()
    assert client_for(viewer).post(f"/account/tokens/{token.pk}/revoke/").status_code == 404  # not theirs
    assert client_for(operator).post(f"/account/tokens/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_token.revoke", username=operator.username).exists()
    assert bearer(plain).get("/api/hosts/").status_code == 401


def test_a_token_made_before_the_second_factor_does_no_admin_work(
    admin: Any, registered_host_row: Any, settings: Any
) -> None:
    """Under CONSOLE_ADMIN_2FA=required, admin work needs the second factor; a token carries whether the session
    that made it had passed it, and one that had not is refused such work with a message that says so."""
    settings.ADMIN_2FA = "required"
    token, plain = ApiToken.issue(admin, "unverified", "admin", 1)
    assert not token.verified
    body = {"workflow": "reset", "choices": {"host": registered_host_row.pk}, "dry_run": True}
    response = bearer(plain).post("/api/jobs/", body, content_type="application/json")
    assert response.status_code == 403 and "second factor" in response.json()["detail"]
    assert bearer(plain).get("/api/hosts/").status_code == 200  # reading needs no second factor


def test_the_page_says_when_an_admin_token_is_made_before_the_second_factor(admin: Any, settings: Any) -> None:
    settings.ADMIN_2FA = "required"
    response = client_for(admin).post("/account/tokens/", {"name": "x", "role": "admin", "days": 1}, follow=True)
    assert "has not passed the second factor" in response.content.decode()
