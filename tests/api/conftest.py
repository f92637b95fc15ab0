"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache.backends.locmem import LocMemCache
from rest_framework.throttling import SimpleRateThrottle

from hosts.models import Host


@pytest.fixture(autouse=True)
def _own_rate_limits() -> Iterator[LocMemCache]:
    """The throttles count in a cache of this test's own: each test starts from zero (and the shared Redis, whose
    clear() would flush every run's queues, is never touched)."""
    counts = LocMemCache("api-throttle-tests", {})
    counts.clear()  # a local-memory cache of that name lives as long as the process
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SimpleRateThrottle, "cache", counts)
        yield counts


@pytest.fixture
def registered_host_row(db: None) -> Host:
    """A registered host that is never contacted (nothing listens on port 9)."""
    host = Host(name="HV-API", address="127.0.0.1", port=9, transport="http", auth="negotiate", username="lab")
    host.set_password("api-test-host-password")
    host.full_clean()
    host.save()
    return host
