"""The job log websocket through the real ASGI stack (session auth, Origin check) and the real Redis layer."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client
from django.utils import timezone

from console.asgi import application
from console.models import Preferences
from jobs.events import JOBS_GROUP, job_group
from jobs.models import Job, JobLogLine, JobState, join_frames, line_tuple, lines_frame

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def communicator(path: str, user: Any | None, origin: str = "http://127.0.0.1") -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1")]
    if user is not None:
        cookie = await database_sync_to_async(session_cookie)(user)
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


@database_sync_to_async
def save_lines(job: Job, seqs: range) -> list[list[Any]]:
    now = timezone.now()
    rows = [JobLogLine(job=job, seq=s, at=now, level="info", text=f"line {s}") for s in seqs]
    JobLogLine.objects.bulk_create(rows)
    Job.objects.filter(pk=job.pk).update(last_seq=max(seqs))
    return [line_tuple(r.seq, r.at, r.level, r.text) for r in rows]


@database_sync_to_async
def set_state(job: Job, state: str) -> dict[str, Any]:
    Job.objects.filter(pk=job.pk).update(state=state)
    job.refresh_from_db()
    return job.state_message()


async def receive_until(comm: WebsocketCommunicator, kind: str, timeout: float = 5) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = await comm.receive_json_from(timeout=timeout)
        messages.append(message)
        if message["type"] == kind:
            return messages


async def close_code(comm: WebsocketCommunicator) -> int | None:
    """The consumer accepts, then closes with a code the page can read (a close before the accept is 1006)."""
    connected, _ = await comm.connect()
    assert connected
    message = await comm.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    return message.get("code")


def seqs_of(messages: list[dict[str, Any]]) -> list[int]:
    return [line[0] for m in messages if m["type"] == "lines" for line in m["lines"]]


@pytest.fixture(autouse=True)
async def close_consumer_connections() -> Any:
    """The consumers' database calls run in asgiref's worker thread; close its connection after each test so the
    test database can be dropped at the end of the run (PostgreSQL refuses while a session is open)."""
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def running_job(db: None, operator: Any) -> Job:
    # A live runner's job: the session-wide worker fixture's reaper (every second in tests) would otherwise mark a
    # running job without a fresh heartbeat lost and append its explanation line in the middle of these tests.
    return Job.objects.create(
        kind="inventory_refresh",
        state=JobState.RUNNING,
        requested_by=operator,
        heartbeat_at=timezone.now() + timedelta(hours=1),
    )


async def test_a_user_without_a_role_is_refused(running_job: Job, nobody: Any) -> None:
    comm = await communicator(f"/ws/jobs/{running_job.pk}/", nobody)
    assert await close_code(comm) == 4403


async def test_an_anonymous_visitor_is_refused_so_the_page_can_ask_to_log_in_again(running_job: Job) -> None:
    for path in (f"/ws/jobs/{running_job.pk}/", "/ws/jobs/"):
        assert await close_code(await communicator(path, None)) == 4403


async def test_a_page_from_another_origin_is_refused(running_job: Job, viewer: Any) -> None:
    comm = await communicator(f"/ws/jobs/{running_job.pk}/", viewer, origin="http://evil.example")
    connected, _ = await comm.connect()
    assert not connected


async def test_an_unknown_job_is_refused(db: None, viewer: Any) -> None:
    comm = await communicator("/ws/jobs/999999/", viewer)
    assert await close_code(comm) == 4404


async def test_viewer_gets_the_gap_then_live_lines_without_duplicates_then_the_end(
    running_job: Job, viewer: Any
) -> None:
    await save_lines(running_job, range(1, 11))
    comm = await communicator(f"/ws/jobs/{running_job.pk}/?after=4", viewer)
    connected, _ = await comm.connect()
    assert connected
    first = await receive_until(comm, "state")
    assert seqs_of(first) == [5, 6, 7, 8, 9, 10]
    assert first[-1]["state"] == "running"

    layer = get_channel_layer()
    # A batch overlapping what was replayed: only the new lines arrive.
    overlap = await save_lines(running_job, range(11, 13))
    replayed = [line_tuple(9, timezone.now(), "info", "line 9"), line_tuple(10, timezone.now(), "info", "line 10")]
    await layer.group_send(job_group(running_job.pk), {"type": "job.lines", "lines": replayed + overlap})
    message = await comm.receive_json_from(timeout=5)
    assert [line[0] for line in message["lines"]] == [11, 12]

    # Lines 13-14 were saved but their publication was lost; 15-16 arrive: the gap is filled from the database.
    await save_lines(running_job, range(13, 15))
    later = await save_lines(running_job, range(15, 17))
    await layer.group_send(job_group(running_job.pk), {"type": "job.lines", "lines": later})
    state = await set_state(running_job, JobState.SUCCEEDED)
    await layer.group_send(job_group(running_job.pk), {"type": "job.state", "state": state})
    rest = await receive_until(comm, "end")
    assert seqs_of(rest) == [13, 14, 15, 16]
    assert rest[-1] == {"type": "end", "seq": 16, "state": "succeeded"}
    await comm.disconnect()


async def test_a_finished_job_replays_everything_and_ends_at_once(running_job: Job, viewer: Any) -> None:
    await save_lines(running_job, range(1, 12001))  # more than one replay chunk
    await set_state(running_job, JobState.FAILED)
    comm = await communicator(f"/ws/jobs/{running_job.pk}/", viewer)
    assert (await comm.connect())[0]
    messages = await receive_until(comm, "end")
    assert seqs_of(messages) == list(range(1, 12001))
    assert messages[-1] == {"type": "end", "seq": 12000, "state": "failed"}
    await comm.disconnect()


async def test_an_errored_job_ends_the_stream_and_says_it_has_ended(running_job: Job, viewer: Any) -> None:
    await save_lines(running_job, range(1, 4))
    await set_state(running_job, JobState.ERRORED)
    comm = await communicator(f"/ws/jobs/{running_job.pk}/", viewer)
    assert (await comm.connect())[0]
    messages = await receive_until(comm, "end")
    state = next(m for m in messages if m["type"] == "state")
    assert (state["state"], state["ended"]) == ("errored", True)  # the page keeps no list of end states
    assert messages[-1] == {"type": "end", "seq": 3, "state": "errored"}
    await comm.disconnect()


async def test_a_viewer_that_has_everything_gets_no_line_again(running_job: Job, viewer: Any) -> None:
    await save_lines(running_job, range(1, 6))
    await set_state(running_job, JobState.SUCCEEDED)
    comm = await communicator(f"/ws/jobs/{running_job.pk}/?after=5", viewer)
    assert (await comm.connect())[0]
    messages = await receive_until(comm, "end")
    assert seqs_of(messages) == []
    assert messages[-1]["seq"] == 5
    await comm.disconnect()


async def test_the_job_list_socket_forwards_state_changes(running_job: Job, viewer: Any, nobody: Any) -> None:
    refused = await communicator("/ws/jobs/", nobody)
    assert await close_code(refused) == 4403
    comm = await communicator("/ws/jobs/", viewer)
    assert (await comm.connect())[0]
    state = await set_state(running_job, JobState.CANCELLED)
    await asyncio.sleep(0.05)  # the subscription is confirmed asynchronously by Redis
    await get_channel_layer().group_send(JOBS_GROUP, {"type": "job.state", "state": state})
    message = await comm.receive_json_from(timeout=5)
    assert message["job"] == running_job.pk and message["state"] == "cancelled"
    await comm.disconnect()


async def test_a_burst_of_batches_arrives_complete_and_in_order(running_job: Job, viewer: Any) -> None:
    comm = await communicator(f"/ws/jobs/{running_job.pk}/", viewer)
    assert (await comm.connect())[0]
    await receive_until(comm, "state")
    layer = get_channel_layer()
    batches = [await save_lines(running_job, range(start, start + 50)) for start in range(1, 501, 50)]
    for lines in batches:  # published back to back: the viewer may get them joined into fewer frames
        await layer.group_send(job_group(running_job.pk), {"type": "job.lines", "lines": lines})
    state = await set_state(running_job, JobState.SUCCEEDED)
    await layer.group_send(job_group(running_job.pk), {"type": "job.state", "state": state})
    messages = await receive_until(comm, "end")
    assert seqs_of(messages) == list(range(1, 501))
    assert messages[-1] == {"type": "end", "seq": 500, "state": "succeeded"}
    await comm.disconnect()


def test_frames_of_consecutive_batches_join_into_one() -> None:
    first = lines_frame([[1, 0, "info", "a"], [2, 0, "warning", 'quote " and ]}']])
    second = lines_frame([[3, 0, "error", "c"]])
    assert json.loads(join_frames([first, second])) == {
        "type": "lines",
        "lines": [[1, 0, "info", "a"], [2, 0, "warning", 'quote " and ]}'], [3, 0, "error", "c"]],
    }


async def test_a_replayed_line_carries_the_same_timestamp_as_the_live_one(operator: Any) -> None:
    """Replay reads the epoch milliseconds in SQL (EpochMillis); a live batch computes them in Python. A viewer that
    reconnects must see every line exactly as it first saw it, whatever the microseconds."""
    from jobs.consumers import lines_after

    job = await database_sync_to_async(Job.objects.create)(kind="inventory_refresh", state=JobState.RUNNING)
    base = timezone.now().replace(microsecond=0)
    stamps = [base, base.replace(microsecond=1), base.replace(microsecond=999), base.replace(microsecond=999_999)]
    stamps += [base.replace(microsecond=123_456) + timedelta(days=400), base.replace(microsecond=500_000)]

    @database_sync_to_async
    def saved() -> list[list[Any]]:
        rows = [JobLogLine(job=job, seq=i, at=at, level="info", text=f"l{i}") for i, at in enumerate(stamps, 1)]
        JobLogLine.objects.bulk_create(rows)
        return [row.as_message() for row in JobLogLine.objects.filter(job=job).order_by("seq")]

    live = await saved()
    assert [line[1] % 1000 for line in live] == [0, 0, 0, 999, 123, 500]
    assert await lines_after(job.pk, 0, None, 100) == live


@pytest.mark.parametrize(
    "origin",
    ["http://127.0.0.1:8001", "https://127.0.0.1", "http://127.0.0.1.evil.example", "null", "http://localhost"],
)
async def test_a_page_of_another_port_scheme_or_host_is_refused(running_job: Job, viewer: Any, origin: str) -> None:
    """The console here is http://127.0.0.1 (port 80): the Origin must be exactly that."""
    comm = await communicator(f"/ws/jobs/{running_job.pk}/", viewer, origin=origin)
    connected, _ = await comm.connect()
    assert not connected


async def test_the_consoles_own_origin_with_its_port_is_accepted(running_job: Job, viewer: Any) -> None:
    cookie = await database_sync_to_async(session_cookie)(viewer)
    headers = [
        (b"origin", b"http://127.0.0.1:8443"),
        (b"host", b"127.0.0.1:8443"),
        (b"cookie", f"sessionid={cookie}".encode()),
    ]
    comm = WebsocketCommunicator(application, f"/ws/jobs/{running_job.pk}/", headers=headers)
    assert (await comm.connect())[0]
    await comm.disconnect()
    other_port = [(b"origin", b"http://127.0.0.1:8444"), *headers[1:]]
    comm = WebsocketCommunicator(application, f"/ws/jobs/{running_job.pk}/", headers=other_port)
    assert not (await comm.connect())[0]


async def test_superscript_digits_in_after_replay_from_the_start(running_job: Job, viewer: Any) -> None:
    await save_lines(running_job, range(1, 4))
    comm = await communicator(f"/ws/jobs/{running_job.pk}/?after=%C2%B2", viewer)
    assert (await comm.connect())[0]
    assert seqs_of(await receive_until(comm, "state")) == [1, 2, 3]
    await comm.disconnect()


@database_sync_to_async
def deactivate(user: Any) -> None:
    type(user).objects.filter(pk=user.pk).update(is_active=False)


@database_sync_to_async
def take_roles(user: Any) -> None:
    user.groups.clear()


@database_sync_to_async
def end_sessions() -> None:
    from django.contrib.sessions.models import Session

    Session.objects.all().delete()  # what logging out does to the session of this socket


@pytest.mark.parametrize("path", ["/ws/jobs/{job}/", "/ws/jobs/"])
@pytest.mark.parametrize("revoke", [deactivate, take_roles, "logout"], ids=["deactivated", "no role", "logged out"])
async def test_an_open_socket_closes_within_seconds_once_its_user_may_no_longer_view(
    running_job: Job, viewer: Any, settings: Any, path: str, revoke: Any
) -> None:
    settings.WEBSOCKET_RECHECK_SECONDS = 0.2
    comm = await communicator(path.format(job=running_job.pk), viewer)
    assert (await comm.connect())[0]
    if "{job}" in path:
        await receive_until(comm, "state")
    assert await comm.receive_nothing(timeout=0.5)  # still allowed: the re-checks pass quietly
    await (end_sessions() if revoke == "logout" else revoke(viewer))
    message = await comm.receive_output(timeout=3)
    assert (message["type"], message.get("code")) == ("websocket.close", 4403)
    # Nothing is forwarded to it any more.
    await get_channel_layer().group_send(JOBS_GROUP, {"type": "job.state", "state": {"job": running_job.pk}})
    assert await comm.receive_nothing(timeout=0.3)


def japanese_session(user: Any) -> str:
    """A session whose pages are in Japanese, chosen in "My account" (the middleware keeps it in the session)."""
    Preferences.objects.create(user=user, language="ja")
    client = Client()
    client.force_login(user)
    client.get("/jobs/")
    return client.cookies["sessionid"].value


async def test_each_viewer_hears_states_and_steps_in_their_own_language(running_job: Job, viewer: Any) -> None:
    cookie = await database_sync_to_async(japanese_session)(viewer)
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", f"sessionid={cookie}".encode())]
    page = WebsocketCommunicator(application, f"/ws/jobs/{running_job.pk}/", headers=headers)
    assert (await page.connect())[0]
    first = (await receive_until(page, "state"))[-1]
    assert first["state_label"] == "実行中" and first["badge"] == "実行中"
    listing = WebsocketCommunicator(application, "/ws/jobs/", headers=headers)
    assert (await listing.connect())[0]
    state = await set_state(running_job, JobState.CANCELLED)  # published in English, as a worker might
    assert state["state_label"] == "cancelled"
    await asyncio.sleep(0.05)  # the subscription is confirmed asynchronously by Redis
    await get_channel_layer().group_send(JOBS_GROUP, {"type": "job.state", "state": state})
    await get_channel_layer().group_send(job_group(running_job.pk), {"type": "job.state", "state": state})
    heard = await listing.receive_json_from(timeout=5)
    assert heard["badge"] == "キャンセル済み" and heard["ran"] == "未開始"
    ended = await receive_until(page, "end")
    assert [m["badge"] for m in ended if m["type"] == "state"] == ["キャンセル済み"]
    await listing.disconnect()
    await page.disconnect()
