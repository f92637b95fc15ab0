"""People who use the console in the tests: one per role, plus someone with no role yet."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from console.roles import set_role

PASSWORD = "correct-horse-battery-staple"


def make_user(username: str, role: str | None) -> Any:
    user = get_user_model().objects.create_user(username, password=PASSWORD)
    if role:
        set_role(user, role)
    return user


@pytest.fixture
def viewer(db: None) -> Any:
    return make_user("vera", "viewer")


@pytest.fixture
def operator(db: None) -> Any:
    return make_user("otto", "operator")


@pytest.fixture
def admin(db: None) -> Any:
    return make_user("ada", "admin")


@pytest.fixture
def nobody(db: None) -> Any:
    return make_user("nora", None)


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(viewer: Any) -> Client:
    return client_for(viewer)


@pytest.fixture
def operator_client(operator: Any) -> Client:
    return client_for(operator)


@pytest.fixture
def admin_client(admin: Any) -> Client:  # overrides pytest-django's superuser admin_client on purpose
    return client_for(admin)
