"""Websockets of the jobs app: one job's live log (/ws/jobs/<id>/?after=<seq>) and the job list's states (/ws/jobs/).

The log consumer joins the job's group first, then replays from the database every line after the client's last
`seq`, then streams, dropping lines it already sent and filling any gap from the database; when the job ends it
sends `end` with the final `seq` and state. So a viewer never misses or repeats a line, whenever it (re)connects.

An open websocket re-checks its user every WEBSOCKET_RECHECK_SECONDS: a user deactivated, stripped of the role,
logged out or past the session's lifetime is closed with 4403 within that time, as a new connection would be.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http import HttpRequest
from django.utils import translation

from console.params import parse_id
from console.roles import can
from console.sessions import chosen_language, session_user

from .events import JOBS_GROUP, job_group
from .models import TERMINAL_STATES, EpochMillis, Job, JobLogLine, join_frames, lines_frame, spoken_state
from .progress import spoken_progress

REPLAY_CHUNK = 5000
CLOSE_FORBIDDEN = 4403  # not logged in (any more) or without the role: the page says so and stops retrying
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def may_view(user: Any) -> bool:
    return user is not None and can(user, "view_console")


@database_sync_to_async
def still_may_view(scope: dict[str, Any]) -> bool:
    """The connection's session and user, read afresh: still logged in, active and allowed to view?"""
    session, user = scope.get("session"), scope.get("user")
    fresh = session_user(getattr(session, "session_key", None), getattr(user, "pk", None))
    return fresh is not None and can(fresh, "view_console")


@database_sync_to_async
def viewer_language(scope: dict[str, Any]) -> str:
    """The language of the viewer's pages: the one chosen in "My account" (kept in the session by
    console.preferences), else the browser's (Accept-Language), else the console's default."""
    chosen = chosen_language(scope.get("session"))
    if chosen:
        return chosen
    # Django's own reading of the browser's languages (as LocaleMiddleware does for pages), from the handshake's.
    handshake = HttpRequest()
    handshake.META["HTTP_ACCEPT_LANGUAGE"] = (
        dict(scope.get("headers") or []).get(b"accept-language", b"").decode("latin-1")
    )
    return translation.get_language_from_request(handshake)


def recheck_seconds() -> float:
    return float(getattr(settings, "WEBSOCKET_RECHECK_SECONDS", 5))


@database_sync_to_async
def job_state(job_id: int) -> dict[str, Any] | None:
    job = Job.objects.filter(pk=job_id).first()
    return job.state_message() if job else None


@database_sync_to_async
def lines_after(job_id: int, after: int, upto: int | None, limit: int) -> list[list[Any]]:
    # Seqs count from 1 without gaps, so the next `limit` lines lie in (after, after + limit]: a bounded range reads
    # only those rows, where an open one makes the database sort the whole rest of a long log for every chunk.
    last = after + limit if upto is None else min(upto, after + limit)
    rows = JobLogLine.objects.filter(job_id=job_id, seq__gt=after, seq__lte=last)
    fields = ("seq", "ms", "level", "text", "link")
    values = rows.order_by("seq").annotate(ms=EpochMillis("at")).values_list(*fields)[:limit]
    return [list(row) if row[4] else list(row[:4]) for row in values]  # a link only where there is one


def batch_bounds(event: dict[str, Any]) -> tuple[int, int, str]:
    if "frame" in event:
        return int(event["first"]), int(event["last"]), str(event["frame"])
    lines = event["lines"]
    return lines[0][0], lines[-1][0], lines_frame(lines)


def after_from(query_string: bytes) -> int:
    """The last seq the page has, from ?after=; anything but ASCII digits (²) means "from the start"."""
    value = parse_qs(query_string.decode("latin-1")).get("after", ["0"])[-1]
    return parse_id(value) or 0


class RefusingConsumer(AsyncJsonWebsocketConsumer):
    """Refuses with a code the page can read, and keeps refusing: the user is re-checked while the socket is open."""

    groups_joined: list[str]
    watcher: asyncio.Task[None] | None = None
    revoked = False  # the re-check failed: the socket is closing and forwards nothing more
    language = ""  # the viewer's (viewer_language): states and steps are said in it, whoever published them

    async def learn_language(self) -> None:
        self.language = await viewer_language(self.scope)

    def said(self, state: dict[str, Any]) -> dict[str, Any]:
        """A state message in the viewer's language."""
        with translation.override(self.language or settings.LANGUAGE_CODE):
            return spoken_state(state)

    def said_progress(self, progress: dict[str, Any]) -> dict[str, Any]:
        with translation.override(self.language or settings.LANGUAGE_CODE):
            return spoken_progress(progress)

    async def refuse(self, code: int) -> None:
        """Accept, then close with `code`. A close before the accept reaches a browser as 1006 with no code, and
        the page could not tell "log in again" or "no such job" from a network drop."""
        await self.accept()
        await self.close(code=code)

    async def join(self, group: str) -> None:
        self.groups_joined = [*getattr(self, "groups_joined", []), group]
        await self.channel_layer.group_add(group, self.channel_name)

    async def leave_groups(self) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []

    def watch_access(self) -> None:
        """Start re-checking the user in the background; call once the socket is accepted."""
        self.watcher = asyncio.create_task(self.recheck_access())

    async def recheck_access(self) -> None:
        while True:
            await asyncio.sleep(recheck_seconds())
            if not await still_may_view(self.scope):
                self.revoked = True
                await self.leave_groups()
                await self.close(code=CLOSE_FORBIDDEN)
                return

    async def dispatch(self, message: dict[str, Any]) -> None:
        if self.revoked and str(message.get("type", "")).startswith("job."):
            return  # already queued for this socket before it left its groups
        await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
            with suppress(asyncio.CancelledError):
                await self.watcher
        await self.leave_groups()


class JobLogConsumer(RefusingConsumer):
    """Streams one job's log and state to a viewer."""

    job_id: int
    sent_seq: int
    ended: bool

    async def connect(self) -> None:
        if not await may_view(self.scope.get("user")):
            await self.refuse(CLOSE_FORBIDDEN)
            return
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        self.sent_seq = after_from(self.scope.get("query_string", b""))
        self.ended = False
        if await job_state(self.job_id) is None:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        await self.learn_language()
        # Join before reading the database: a line saved after the read arrives through the group.
        await self.join(job_group(self.job_id))
        await self.accept()
        self.watch_access()
        await self.replay()
        state = await job_state(self.job_id)
        if state is not None:
            await self.send_state(state)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections (a thread hop) before every handler; live lines need no
        # database unless a gap is filled, and that goes through database_sync_to_async, which does the same.
        if message["type"] == "job.lines" and not self.revoked:
            await self.job_lines(message)
        else:
            await super().dispatch(message)

    async def replay(self, upto: int | None = None) -> None:
        """Send every saved line after the last one sent (up to `upto`), in chunks."""
        while True:
            lines = await lines_after(self.job_id, self.sent_seq, upto, REPLAY_CHUNK)
            if not lines:
                return
            await self.send_lines(lines)
            if len(lines) < REPLAY_CHUNK:
                return

    async def send_lines(self, lines: list[list[Any]]) -> None:
        await self.send_json({"type": "lines", "lines": lines})
        self.sent_seq = lines[-1][0]

    async def job_lines(self, event: dict[str, Any]) -> None:
        """A published batch: {"first", "last", "frame"} (the frame is encoded once by the runner, for all viewers)
        or {"lines"}. Lines already sent are dropped; a gap before a batch is filled from the database; batches
        that queued up while this viewer was busy go out as one frame."""
        batches, later = self.queued_batches(event)
        frames: list[str] = []
        for batch in batches:
            first, last, frame = batch_bounds(batch)
            if self.ended or last <= self.sent_seq:
                continue
            if first > self.sent_seq + 1:
                # A published batch went missing (Redis pub/sub is best effort): the database has it.
                await self.send_frames(frames)
                await self.replay(upto=first - 1)
            if first <= self.sent_seq:
                frame = lines_frame([line for line in json.loads(frame)["lines"] if line[0] > self.sent_seq])
            frames.append(frame)
            self.sent_seq = last
        await self.send_frames(frames)
        for message in later:
            await self.dispatch(message)

    def queued_batches(self, event: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """This batch, the batches already queued behind it, and the other messages queued after those.

        Reads the consumer's queue in channels_redis' pub/sub layer (no public API for this); with any other
        layer there is nothing to read and every batch goes out on its own."""
        batches: list[dict[str, Any]] = [event]
        later: list[dict[str, Any]] = []
        try:
            queue = self.channel_layer._get_layer().channels[self.channel_name]
        except (AttributeError, KeyError, RuntimeError):
            return batches, later
        while not queue.empty():
            message = self.channel_layer.deserialize(queue.get_nowait())
            (batches if not later and message.get("type") == "job.lines" else later).append(message)
        return batches, later

    async def send_frames(self, frames: list[str]) -> None:
        if frames:
            await self.send(text_data=frames[0] if len(frames) == 1 else join_frames(frames))
            frames.clear()

    async def job_state(self, event: dict[str, Any]) -> None:
        if not self.ended:
            await self.send_state(event["state"])

    async def job_progress(self, event: dict[str, Any]) -> None:
        """A step started or ended: the page's list of steps."""
        if not self.ended:
            await self.send_json({"type": "progress", **self.said_progress(event["progress"])})

    async def send_state(self, state: dict[str, Any]) -> None:
        state = self.said(state)
        if state["state"] in TERMINAL_STATES:
            await self.replay(upto=state["seq"])
            await self.send_json({"type": "state", **state})
            await self.send_json({"type": "end", "seq": self.sent_seq, "state": state["state"]})
            self.ended = True
        else:
            await self.send_json({"type": "state", **state})


def headline_only(progress: dict[str, Any]) -> dict[str, Any]:
    """How far a job has got without its list of steps: the job list shows "step 3 of 7: …" only."""
    return {key: value for key, value in progress.items() if key != "steps"}


class JobListConsumer(RefusingConsumer):
    """Keeps state badges live on the job list and the dashboard: forwards every job's state change."""

    async def connect(self) -> None:
        if not await may_view(self.scope.get("user")):
            await self.refuse(CLOSE_FORBIDDEN)
            return
        await self.learn_language()
        await self.join(JOBS_GROUP)
        await self.accept()
        self.watch_access()

    async def job_state(self, event: dict[str, Any]) -> None:
        state = self.said(event["state"])
        if isinstance(state.get("progress"), dict):
            state["progress"] = headline_only(state["progress"])
        await self.send_json({"type": "state", **state})

    async def job_progress(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "progress", **headline_only(self.said_progress(event["progress"]))})

    async def job_lines(self, event: dict[str, Any]) -> None:
        """Lines are not sent to the list."""
