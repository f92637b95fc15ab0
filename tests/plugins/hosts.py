"""Fixtures: hosts registered in the console that point at simulated Hyper-V hosts (or at any endpoint)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hosts.models import CertCheck, Host


def host_for(sim: Any, name: str | None = None, **overrides: Any) -> Host:
    """A saved, validated Host for a SimHost (https hosts trust the lab CA through an uploaded CA bundle),
    or for a hosts.remoting.ConnectionSpec."""
    if hasattr(sim, "ca_bundle_pem"):
        return host_for_spec(sim, name, **overrides)
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


def host_for_spec(spec: Any, name: str | None = None, **overrides: Any) -> Host:
    fields: dict[str, Any] = {
        "name": name or spec.label or spec.address,
        "address": spec.address,
        "port": spec.port,
        "transport": "https" if spec.https else "http",
        "auth": spec.auth,
        "cert_check": spec.cert_check,
        "ca_bundle": spec.ca_bundle_pem,
        "fingerprint_sha256": spec.fingerprint_sha256,
        "username": spec.username,
        "password": spec.password,
        "configuration_name": spec.configuration_name,
    }
    fields.update(overrides)
    password = fields.pop("password")
    host = Host(**fields)
    host.set_password(password)
    host.full_clean()
    host.save()
    return host


@pytest.fixture
def registered_host(db: None) -> Callable[..., Host]:
    """Factory: registered_host(sim_host_or_spec, name=None, **field_overrides) -> Host."""
    return host_for
