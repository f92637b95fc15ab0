"""Each user's time zone: the browser's stored once by the page's script, a choice in "My account" wins over it,
and every time on a page is shown in it with UTC on hover."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from console.models import AuditEvent, Preferences
from jobs.models import Job, JobState
from tests.plugins.users import client_for

pytestmark = pytest.mark.django_db

MOMENT = datetime(2026, 7, 1, 10, 0, 0, tzinfo=UTC)


def job_at(moment: datetime) -> Job:
    return Job.objects.create(kind="inventory_refresh", state=JobState.SUCCEEDED, created_at=moment)


def test_a_new_user_has_the_browsers_zone_stored_once_and_never_over_a_choice(viewer: Any) -> None:
    client = client_for(viewer)
    page = client.get("/jobs/").content.decode()
    assert 'data-time-zone-unset="/account/time-zone/"' in page  # static/console.js sends the browser's zone
    assert client.post("/account/time-zone/", {"time_zone": "Mars/Olympus"}).status_code == 400
    assert client.post("/account/time-zone/", {"time_zone": "Asia/Tokyo"}).json()["stored"] is True
    assert "data-time-zone-unset" not in client.get("/jobs/").content.decode()
    answer = client.post("/account/time-zone/", {"time_zone": "America/New_York"}).json()
    assert answer == {"stored": False, "reason": "already chosen"}
    assert Preferences.objects.get(user=viewer).time_zone == "Asia/Tokyo"


def test_times_are_shown_in_the_zone_chosen_in_my_account_with_utc_on_hover(viewer: Any) -> None:
    job = job_at(MOMENT)
    client = client_for(viewer)
    utc_page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'title="2026-07-01 10:00:00 UTC">2026-07-01 10:00:00 UTC</time>' in utc_page  # nothing chosen yet: UTC

    response = client.post("/account/", {"time_zone": "Europe/Berlin"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="account.time_zone", username=viewer.username).exists()
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert (
        '<time datetime="2026-07-01T10:00:00+00:00" title="2026-07-01 10:00:00 UTC">2026-07-01 12:00:00 CEST</time>'
        in page
    )
    assert 'data-time-zone="Europe/Berlin"' in page  # the live log's times too (static/joblog.js)
    listed = client.get("/jobs/").content.decode()
    assert "2026-07-01 12:00:00 CEST" in listed

    # Another session of the same user reads the choice at its start.
    again = Client()
    again.force_login(viewer)
    assert "2026-07-01 12:00:00 CEST" in again.get(f"/jobs/{job.pk}/").content.decode()


def test_an_unknown_zone_is_refused_by_the_form(viewer: Any) -> None:
    client = client_for(viewer)
    page = client.post("/account/", {"time_zone": "Europe/Atlantis"})
    assert page.status_code == 200 and "Select a valid choice" in page.content.decode()
    assert not Preferences.objects.filter(user=viewer).exists()
