"""Admins manage users and their roles in the console; nobody else can, and nobody can lock the console out."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from console.models import AuditEvent
from console.roles import role_of, set_role
from tests.plugins.users import PASSWORD

NEW_PASSWORD = "a-long-unusual-passphrase-42"


def test_an_admin_creates_an_operator_who_can_then_log_in(admin_client: Client, client: Client) -> None:
    response = admin_client.post("/users/new/", {"username": "olga", "password": NEW_PASSWORD, "role": "operator"})
    assert response.status_code == 302 and response["Location"] == "/users/"
    olga = get_user_model().objects.get(username="olga")
    assert role_of(olga) == "operator"
    event = AuditEvent.objects.get(action="user.create")
    assert (event.username, event.object_repr, event.detail) == ("ada", "olga", {"role": "operator"})
    assert client.post("/login/", {"username": "olga", "password": NEW_PASSWORD}).status_code == 302
    listing = admin_client.get("/users/").content.decode()
    assert "olga" in listing and "operator" in listing
    assert NEW_PASSWORD not in listing


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"username": "", "password": NEW_PASSWORD, "role": "viewer"}, "username", "required"),
        ({"username": "bad name!", "password": NEW_PASSWORD, "role": "viewer"}, "username", "valid username"),
        ({"username": "VERA", "password": NEW_PASSWORD, "role": "viewer"}, "username", "already exists"),
        ({"username": "pat", "password": "short", "role": "viewer"}, "password", "too short"),
        ({"username": "pat", "password": "password1234", "role": "viewer"}, "password", "too common"),
        ({"username": "pat", "password": NEW_PASSWORD, "role": "root"}, "role", "valid choice"),
    ],
)
def test_bad_user_input_is_refused(
    admin_client: Client, viewer: Any, data: dict[str, str], field: str, words: str
) -> None:
    response = admin_client.post("/users/new/", data)
    assert response.status_code == 200
    assert words in " ".join(response.context["form"].errors.get(field, []))
    assert not get_user_model().objects.filter(username="pat").exists()


def test_changing_a_role_is_audited_with_before_and_after(admin_client: Client, viewer: Any) -> None:
    response = admin_client.post(f"/users/{viewer.pk}/", {"role": "operator", "is_active": "on"})
    assert response.status_code == 302
    assert role_of(viewer) == "operator"
    event = AuditEvent.objects.get(action="user.role_change")
    assert event.detail == {"role_from": "viewer", "role_to": "operator"}


def test_taking_every_role_away_leaves_a_user_who_sees_nothing(admin_client: Client, viewer: Any) -> None:
    admin_client.post(f"/users/{viewer.pk}/", {"role": "none", "is_active": "on"})
    client = Client()
    client.force_login(viewer)
    assert client.get("/hosts/").status_code == 403


def test_a_deactivated_user_can_no_longer_log_in(admin_client: Client, viewer: Any, client: Client) -> None:
    admin_client.post(f"/users/{viewer.pk}/", {"role": "viewer"})
    assert AuditEvent.objects.filter(action="user.deactivate").exists()
    response = client.post("/login/", {"username": "vera", "password": PASSWORD})
    assert response.status_code == 200  # the form again, not a redirect


def test_an_admin_resets_a_password_without_it_reaching_the_audit_trail(
    admin_client: Client, viewer: Any, client: Client
) -> None:
    admin_client.post(f"/users/{viewer.pk}/", {"role": "viewer", "is_active": "on", "new_password": NEW_PASSWORD})
    assert client.post("/login/", {"username": "vera", "password": NEW_PASSWORD}).status_code == 302
    assert AuditEvent.objects.filter(action="user.password_reset").exists()
    assert NEW_PASSWORD not in str(list(AuditEvent.objects.values_list("detail", flat=True)))


def test_an_admin_cannot_lock_themselves_out(admin_client: Client, admin: Any) -> None:
    for data in ({"role": "viewer", "is_active": "on"}, {"role": "admin"}):
        response = admin_client.post(f"/users/{admin.pk}/", data)
        assert response.status_code == 200
        assert "your own admin role" in response.content.decode()
    admin.refresh_from_db()
    assert role_of(admin) == "admin" and admin.is_active


def test_unknown_users_are_404(admin_client: Client) -> None:
    assert admin_client.get("/users/9999/").status_code == 404


@pytest.mark.parametrize("who", ["viewer", "operator", "nobody"])
def test_only_admins_manage_users(request: pytest.FixtureRequest, who: str, viewer: Any) -> None:
    client = Client()
    client.force_login(request.getfixturevalue(who))
    for url in ("/users/", "/users/new/", f"/users/{viewer.pk}/"):
        assert client.get(url).status_code == 403, url
    assert client.post("/users/new/", {"username": "pat", "password": NEW_PASSWORD, "role": "admin"}).status_code == 403
    assert client.post(f"/users/{viewer.pk}/", {"role": "admin", "is_active": "on"}).status_code == 403
    assert not get_user_model().objects.filter(username="pat").exists()
    assert role_of(viewer) == "viewer"
    assert b'href="/users/"' not in client.get("/hosts/").content


def test_strangers_are_sent_to_log_in(client: Client, db: None) -> None:
    for url in ("/users/", "/users/new/", "/users/1/"):
        assert client.get(url)["Location"].startswith("/login/")


def test_another_admin_cannot_deactivate_the_superuser(admin_client: Client) -> None:
    root = get_user_model().objects.create_superuser("root", password=NEW_PASSWORD)
    response = admin_client.post(f"/users/{root.pk}/", {"role": "admin"})
    assert response.status_code == 200
    assert "superuser: it cannot be deactivated here" in response.content.decode()
    demoted = admin_client.post(f"/users/{root.pk}/", {"role": "viewer", "is_active": "on"})
    assert "change it with manage.py" in demoted.content.decode()
    root.refresh_from_db()
    assert root.is_active and role_of(root) == "admin"
    assert not AuditEvent.objects.filter(action="user.deactivate").exists()


def test_the_console_always_keeps_an_active_admin(admin: Any, admin_client: Client) -> None:
    """Two admins demoting each other at the same moment: the second edit, checked under a lock in its own
    transaction, finds the other already demoted and is refused."""
    from console.users import leaves_no_admin

    bob = get_user_model().objects.create_user("bob", password=NEW_PASSWORD)
    set_role(bob, "admin")
    assert not leaves_no_admin(bob, {"role": "viewer", "is_active": True})  # ada stays
    set_role(admin, "viewer")  # ada was demoted by bob a moment ago
    assert leaves_no_admin(bob, {"role": "viewer", "is_active": True})
    assert leaves_no_admin(bob, {"role": "admin", "is_active": False})
    assert not leaves_no_admin(bob, {"role": "admin", "is_active": True})


def test_the_last_active_admin_is_refused_with_a_clear_message(
    admin: Any, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's side of the rule above: when bob would be the last active admin (ada counted out, as if demoted
    a moment ago by someone else), the edit is refused and says why."""
    from console import users

    bob = get_user_model().objects.create_user("bob", password=NEW_PASSWORD)
    set_role(bob, "admin")
    everyone = users.active_admins
    monkeypatch.setattr(users, "active_admins", lambda: everyone().exclude(pk=admin.pk))
    response = admin_client.post(f"/users/{bob.pk}/", {"role": "viewer", "is_active": "on"})
    assert response.status_code == 200
    assert "bob is the last active admin: make another user admin first." in response.content.decode()
    assert role_of(bob) == "admin"
