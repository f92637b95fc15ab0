"""Fixtures: hosts registered in the console that point at simulated Hyper-V hosts (or at any endpoint)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hosts.models import CertCheck, Host


def host_for(sim: Any, name: str | None = None, **overrides: Any) -> Host:
    """A saved, validated Host for a SimHost (https hosts trust the lab CA through an uploaded CA bundle)."""
    https = bool(sim.https)
    fields: dict[str, Any] = {
        "name": name or sim.name,
        "address": sim.address,
        "port": sim.port,
        "transport": "https" if https else "http",
        "auth": sim.auth,
        "cert_check": CertCheck.CA_BUNDLE if https else CertCheck.SYSTEM,
        "ca_bundle": Path(sim.ca_file).read_text() if https and sim.ca_file else "",
        "username": sim.user,
    }
    fields.update(overrides)
    password = fields.pop("password", sim.password)
    host = Host(**fields)
    host.set_password(password)
    host.full_clean()
    host.save()
    return host


@pytest.fixture
def registered_host(db: None) -> Callable[..., Host]:
    """Factory: registered_host(sim_host_or_spec, name=None, **field_overrides) -> Host."""
    return host_for
