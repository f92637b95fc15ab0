"""Live progress and the partly failed end: a job's planned steps merged with those it ran ("step 2 of 4", "2 of 3"
per VM), sent to the job page and the job list over their websockets as the job runs (the real runner, its log
pump and the Redis channel layer), and a job whose VMs partly failed ending neither green nor plain red."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.utils import timezone

from console.models import AuditEvent
from jobs.kinds import JobContext, JobFailed, JobPartlyFailed, job_kind
from jobs.models import Job, JobState, JobStep, StepState
from jobs.progress import merge
from jobs.registry import PlannedStep, each
from jobs.runner import execute
from tests.jobs.test_consumer import close_code, communicator
from tests.plugins.users import client_for

# The VMs of a job the test kind below fails on; anything else it "handles".
FAILING = "broken"
# Released by the websocket test once it has seen the first step start: the job then goes on.
GO_ON: dict[str, threading.Event | None] = {"event": None}


def handle_step(vm: str) -> str:
    return f"Handle VM '{vm}'"


def per_vm(job: Job) -> list[PlannedStep]:
    return [PlannedStep("Look at the host"), *each([handle_step(vm) for vm in job.vms])]


@job_kind("test_per_vm", label="Per VM (test)", mutating=False, refresh_inventory=False, outline=per_vm)
def per_vm_kind(ctx: JobContext) -> str:
    with ctx.step("Look at the host"):
        pass
    gate = GO_ON["event"]
    if gate is not None:
        gate.wait(10)
    done, failed = [], []
    for vm in ctx.vms:
        try:
            with ctx.step(handle_step(vm)):
                if vm == FAILING:
                    raise JobFailed(f"'{vm}' is Running: shut it down first.")
            done.append(vm)
        except JobFailed as exc:
            failed.append(str(exc))
    if failed and done:
        raise JobPartlyFailed(f"{len(done)} of {len(ctx.vms)} VMs handled", " | ".join(failed))
    if failed:
        raise JobFailed(" | ".join(failed))
    return f"{len(done)} VMs handled"


def step(key: str, state: str) -> JobStep:
    now = timezone.now()
    return JobStep(key=key, state=state, started_at=now, finished_at=now + timedelta(seconds=3))


def test_planned_steps_are_listed_with_the_current_one_and_what_the_plan_did_not_foresee() -> None:
    planned = [PlannedStep("Look"), *each(["VM a", "VM b", "VM c"])]
    recorded = [step("Look", StepState.DONE), step("Remove saved state of a", StepState.DONE)]
    recorded += [step("VM a", StepState.DONE), step("VM b", StepState.STARTED)]
    views = merge(planned, recorded, ended=False)
    assert [(v.title, v.state, v.counted) for v in views] == [
        ("Look", "done", ""),
        ("Remove saved state of a", "done", ""),  # decided by the host: before the planned step recorded after it
        ("VM a", "done", "1 of 3"),
        ("VM b", "running", "2 of 3"),
        ("VM c", "to_come", "3 of 3"),
    ]
    assert views[0].duration == timedelta(seconds=3)
    ended = merge(planned, recorded, ended=True)
    assert [v.state for v in ended][-2:] == ["interrupted", "not_run"]


@pytest.mark.django_db(transaction=True)
def test_a_job_with_one_vm_failed_of_three_ends_partly_failed_counted_and_filtered_as_such(
    operator: Any, viewer: Any
) -> None:
    job = Job.objects.create(kind="test_per_vm", vms=["a", FAILING, "c"], requested_by=operator)
    assert execute(job.pk) == JobState.PARTLY_FAILED
    job.refresh_from_db()
    assert job.state == JobState.PARTLY_FAILED and job.state_label == "partly failed"
    assert job.summary == "2 of 3 VMs handled" and job.error == "'broken' is Running: shut it down first."
    assert AuditEvent.objects.filter(action="job.partly_failed", object_id=str(job.pk)).exists()
    last = job.lines.order_by("-seq").first()
    assert last is not None and last.text == "Job partly failed: 2 of 3 VMs handled"
    steps = [(s.title, s.state, s.counted) for s in job.progress().steps]
    assert steps == [
        ("Look at the host", "done", ""),
        ("Handle VM 'a'", "done", "1 of 3"),
        ("Handle VM 'broken'", "failed", "2 of 3"),
        ("Handle VM 'c'", "done", "3 of 3"),
    ]
    succeeded = Job.objects.create(kind="test_per_vm", vms=["a"], requested_by=operator)
    assert execute(succeeded.pk) == JobState.SUCCEEDED

    client = client_for(viewer)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'class="badge partly_failed"' in page and ">partly failed<" in page
    assert 'Handle VM &#x27;broken&#x27;</span> <span class="step-of">2 of 3</span>' in page
    listed = client.get("/jobs/?state=partly_failed").content.decode()
    assert f'href="/jobs/{job.pk}/"' in listed and f'href="/jobs/{succeeded.pk}/"' not in listed
    counts = client.get("/api/jobs/counts/?kind=test_per_vm").json()
    assert (counts["partly_failed"], counts["succeeded"], counts["failed"]) == (1, 1, 0)
    api = client.get("/api/jobs/?state=partly_failed").json()
    assert [row["id"] for row in api["results"]] == [job.pk] and api["results"][0]["state_label"] == "partly failed"


@pytest.fixture
async def close_connections() -> Any:
    yield
    await database_sync_to_async(connections.close_all)()


async def progress_until(comm: WebsocketCommunicator, wanted: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Messages up to the first progress whose headline is `wanted`."""
    seen = []
    while True:
        message = await comm.receive_json_from(timeout=timeout)
        seen.append(message)
        if message["type"] == "progress" and message.get("headline") == wanted:
            return seen


@pytest.mark.django_db(transaction=True)
async def test_the_job_list_and_the_job_page_hear_each_step_as_it_runs(
    close_connections: None, operator: Any, viewer: Any
) -> None:
    job = await database_sync_to_async(Job.objects.create)(kind="test_per_vm", vms=["a", "b"], requested_by=operator)
    listing = await communicator("/ws/jobs/", viewer)
    page = await communicator(f"/ws/jobs/{job.pk}/", viewer)
    assert (await listing.connect())[0] and (await page.connect())[0]
    await page.receive_json_from(timeout=5)  # its state on connecting: queued
    gate = GO_ON["event"] = threading.Event()
    try:
        running = asyncio.ensure_future(database_sync_to_async(execute, thread_sensitive=False)(job.pk))
        first = await progress_until(listing, "step 1 of 3: Look at the host")
        # The list gets the headline only, in progress and state messages alike.
        assert all("steps" not in m for m in first if m["type"] == "progress")
        assert all("steps" not in m["progress"] for m in first if m["type"] == "state")
        gate.set()
        await progress_until(listing, "step 3 of 3: Handle VM 'b' (2 of 2)")
        assert await running == JobState.SUCCEEDED
    finally:
        GO_ON["event"] = None
    on_page = await progress_until(page, "step 2 of 3: Handle VM 'a' (1 of 2)")
    steps = on_page[-1]["steps"]
    assert [(s["title"], s["state"], s["of"]) for s in steps] == [
        ("Look at the host", "done", ""),
        ("Handle VM 'a'", "running", "1 of 2"),
        ("Handle VM 'b'", "to_come", "2 of 2"),
    ]
    assert steps[0]["started"] and steps[0]["finished"] and steps[1]["finished"] is None
    await listing.disconnect()
    await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_job_list_socket_refuses_as_the_job_log_socket_does(
    close_connections: None, viewer: Any, nobody: Any
) -> None:
    assert await close_code(await communicator("/ws/jobs/", None)) == 4403
    assert await close_code(await communicator("/ws/jobs/", nobody)) == 4403
    foreign = await communicator("/ws/jobs/", viewer, origin="http://evil.example")
    assert not (await foreign.connect())[0]
    other_port = await communicator("/ws/jobs/", viewer, origin="http://127.0.0.1:8443")
    assert not (await other_port.connect())[0]
    own = await communicator("/ws/jobs/", viewer)
    assert (await own.connect())[0]  # the control: the same viewer from the console's own origin gets in
    await own.disconnect()
