"""A button a role cannot use is not shown: it would only answer 403. (The sweep checks every link of every page
of its small world; this is the job page's next step, which that world has none of.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from jobs.models import Job, JobState


@pytest.fixture
def reset_job(admin: Any) -> Job:
    """A finished guardian reset, whose page offers its undo."""
    return Job.objects.create(
        kind="reset_guardian",
        state=JobState.SUCCEEDED,
        requested_by=admin,
        results={"removed_guardian": {"guardian_name": "UntrustedGuardian"}, "next_url": "/jobs/new/reset/undo/?job=1"},
    )


@pytest.mark.parametrize(("who", "offered"), [("viewer", False), ("operator", False), ("admin", True)])
def test_only_those_who_may_undo_a_reset_are_offered_the_undo(
    request: pytest.FixtureRequest, reset_job: Job, who: str, offered: bool
) -> None:
    client = Client()
    client.force_login(request.getfixturevalue(who))
    page = client.get(f"/jobs/{reset_job.pk}/").content.decode()
    assert ("Undo this reset" in page) is offered
    assert (client.get("/jobs/new/reset/undo/?job=1").status_code != 403) is offered  # what the button would get


def test_only_admins_are_sent_to_register_a_host_from_the_prepare_page(operator_client: Client, admin_client: Client):
    assert 'href="/hosts/new/"' not in operator_client.get("/hosts/prepare/").content.decode()
    assert "ask an admin to register the host" in operator_client.get("/hosts/prepare/").content.decode()
    assert 'href="/hosts/new/"' in admin_client.get("/hosts/prepare/").content.decode()
