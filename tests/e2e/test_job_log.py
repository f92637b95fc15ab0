"""Watching a job live in Chromium: lines stream in, the badge follows the state, a dropped connection comes back
with no gap and no duplicate, and a 100k-line log opens without freezing the page."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from jobs.kinds import JobContext, job_kind
from jobs.models import Job, JobLogLine, JobState
from jobs.services import create_job
from tests.plugins.browser import login
from tests.plugins.jobs import wait_for_job

WORKER_JOB_KINDS = True  # the worker process imports this module for the kind below

pytestmark = [pytest.mark.e2e, pytest.mark.worker]


@job_kind("test_stream", label="Stream lines (test)", mutating=False, refresh_inventory=False)
def stream_lines(ctx: JobContext) -> str:
    """150 lines, a pause until the test opens the gate, then 150 more lines at a steady pace."""
    for i in range(1, 151):
        ctx.log(f"\x1b[32mfirst half\x1b[0m line {i}" if i == 150 else f"first half line {i}")
    gate = Path(ctx.params["gate"])
    while not gate.exists():
        ctx.check_cancelled()
        time.sleep(0.02)
    for i in range(1, 151):
        ctx.log(f"second half line {i}", "warning" if i % 50 == 0 else "info")
        time.sleep(0.004)
    ctx.log("the end", "error")
    ctx.record("lines_written", 301)
    ctx.record("next_url", f"/jobs/?kind={ctx.job.kind}")
    return "streamed"


def snapshot(page: Any) -> dict[str, Any]:
    return page.evaluate("window.guardianJobLog.snapshot()")


def wait_until(page: Any, condition: str, timeout: float = 20) -> None:
    page.wait_for_function(
        # The viewer is a deferred script: right after a navigation (the cancel form's POST and redirect) it is not
        # there yet, which is "not yet", not an error.
        f"(() => {{ if (!window.guardianJobLog) return false; const s = window.guardianJobLog.snapshot(); "
        f"return {condition}; }})()",
        timeout=timeout * 1000,
    )


def test_watching_a_job_through_a_network_drop_shows_every_line_once(
    browser_page: Any, live_console: Any, celery_worker_process: Any, operator: Any, tmp_path: Path
) -> None:
    page = browser_page
    login(page, live_console, operator)
    gate = tmp_path / "gate"
    job = create_job(operator, "test_stream", params={"gate": str(gate)})
    page.goto(f"{live_console.url}/jobs/{job.pk}/")
    page.wait_for_function(
        "window.guardianJobLog && window.guardianJobLog.snapshot().count >= 151"
        " && document.querySelector('.jl-row .ansi-32')"
    )
    assert page.locator(f'[data-job-state="{job.pk}"]').inner_text() == "running"
    assert page.locator(".jl-row .ansi-32").first.inner_text() == "first half"

    # Every frame the page gets from now on, with the connection it came on, to tell replayed lines from live ones.
    page.evaluate(
        """() => {
          const log = window.guardianJobLog;
          window.received = [];
          const handle = log.onMessage.bind(log);
          log.onMessage = (m) => {
            if (m.type === "lines") window.received.push([log.connects, m.lines.map((line) => line[0])]);
            handle(m);
          };
        }"""
    )

    # The network goes away while the job keeps writing. Going offline does not close a websocket that is already
    # open (Chromium only refuses new connections), so the page's own socket is closed too: the drop is real.
    page.context.set_offline(True)
    page.evaluate("window.dropped = window.guardianJobLog.socket.socket; window.dropped.close()")
    page.wait_for_function("document.querySelector('.jl-status').textContent.startsWith('reconnecting')")
    dropped = snapshot(page)
    gate.touch()
    wait_for_job(job, {JobState.SUCCEEDED}, timeout=20)
    # The page kept retrying while offline and got nothing: every line written meanwhile is still to come.
    wait_until(page, f"s.connects > {dropped['connects']} + 1")
    offline = snapshot(page)
    assert page.evaluate("window.dropped.readyState === WebSocket.CLOSED")
    assert offline["lastSeq"] == dropped["lastSeq"] and not offline["ended"]
    saved = JobLogLine.objects.filter(job=job).count()
    assert saved >= dropped["lastSeq"] + 150  # the second half was written while the page was cut off
    page.context.set_offline(False)

    wait_until(page, "s.ended")
    final = snapshot(page)
    assert final["endSeq"] == saved == final["count"] == final["lastSeq"]
    assert final["contiguous"] and final["gaps"] == 0 and final["duplicates"] == 0
    # Those lines came by replay on the connection that came back, each once and in order; none came before.
    received: list[tuple[int, list[int]]] = page.evaluate("window.received")
    assert all(seq > dropped["lastSeq"] for _, seqs in received for seq in seqs)
    assert {connection for connection, _ in received} == {final["connects"]}
    assert [seq for _, seqs in received for seq in seqs] == list(range(dropped["lastSeq"] + 1, saved + 1))
    assert page.locator(f'[data-job-state="{job.pk}"]').inner_text() == "succeeded"
    assert not page.locator("#job-ran").inner_text().endswith("…")  # the end time arrived live
    # The card comes back with what only the end knows, without a reload: results, next step, "Run again".
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().cardRefreshes === 1")
    assert "Lines written: 301" in page.locator("#job-card").inner_text()
    assert page.locator("#next-action").get_attribute("href") == "/jobs/?kind=test_stream"
    assert page.locator("#next-action").inner_text() == "Next step…"
    assert page.locator("#rerun").inner_text() == "Run again" and page.locator("#cancel-form").count() == 0
    # Following: the last line is in view.
    assert page.locator(".jl-row").last.inner_text().endswith("Job succeeded: streamed")
    # Level filter: only the error lines remain.
    page.select_option(".jl-level", "error")
    page.wait_for_function("document.querySelector('.jl-count').textContent.includes('(1 shown)')")
    assert page.locator(".jl-row").first.inner_text().endswith("the end")


def test_a_100k_line_log_opens_quickly_and_renders_only_what_is_in_view(
    browser_page: Any, live_console: Any, viewer: Any
) -> None:
    job = Job.objects.create(kind="test_stream", state=JobState.SUCCEEDED, requested_by_name="otto")
    now = timezone.now()
    JobLogLine.objects.bulk_create(
        (JobLogLine(job=job, seq=i, at=now, level="info", text=f"line {i} " + "x" * 60) for i in range(1, 100_001)),
        batch_size=5000,
    )
    Job.objects.filter(pk=job.pk).update(last_seq=100_000)
    page = browser_page
    login(page, live_console, viewer)
    started = time.monotonic()
    page.goto(f"{live_console.url}/jobs/{job.pk}/")
    wait_until(page, "s.ended", timeout=30)
    loaded = time.monotonic() - started
    assert snapshot(page)["count"] == 100_000
    assert page.locator(".jl-row").count() < 200  # windowed, not 100k DOM nodes
    # The page still answers at once: scroll to the top and read the first line.
    page.uncheck(".jl-follow")
    page.evaluate("document.querySelector('.jl-view').scrollTop = 0")
    page.wait_for_function("document.querySelector('.jl-row') && document.querySelector('.jl-row').dataset.seq === '1'")
    assert loaded < 15, f"100k lines took {loaded:.1f}s"


def test_the_job_list_badge_follows_the_job_live(
    browser_page: Any, live_console: Any, celery_worker_process: Any, operator: Any, tmp_path: Path
) -> None:
    page = browser_page
    login(page, live_console, operator)
    gate = tmp_path / "gate"
    job = create_job(operator, "test_stream", params={"gate": str(gate)})
    wait_for_job(job, {JobState.RUNNING}, timeout=20)
    page.goto(f"{live_console.url}/jobs/")
    badge = page.locator(f'[data-job-state="{job.pk}"]')
    assert badge.inner_text() == "running"
    cancel = page.locator(f'[data-job-cancel="{job.pk}"] button')
    assert cancel.inner_text() == "Cancel"
    page.wait_for_timeout(300)  # the list socket is connected
    gate.touch()
    page.wait_for_function(
        f"document.querySelector('[data-job-state=\"{job.pk}\"]').textContent === 'succeeded'", timeout=20_000
    )
    assert "succeeded" in (badge.get_attribute("class") or "")
    assert cancel.count() == 0  # nothing left to cancel: the row's button went with the end
    # A job started after the page loaded appears in the list by itself (the first page fetches its rows again).
    new = create_job(operator, "test_stream", params={"gate": str(gate)})
    page.locator(f'#job-list a[href="/jobs/{new.pk}/"]').wait_for(timeout=20_000)
    assert page.locator(".jobs-new").is_hidden()


def test_cancelling_from_the_job_page_stops_the_job_and_says_so(
    browser_page: Any, live_console: Any, celery_worker_process: Any, operator: Any, tmp_path: Path
) -> None:
    page = browser_page
    login(page, live_console, operator)
    job = create_job(operator, "test_stream", params={"gate": str(tmp_path / "never")})
    page.goto(f"{live_console.url}/jobs/{job.pk}/")
    page.wait_for_function("window.guardianJobLog && window.guardianJobLog.snapshot().count >= 150")
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_selector("text=Cancel requested")
    wait_until(page, "s.ended && s.state === 'cancelled'")
    assert page.locator(f'[data-job-state="{job.pk}"]').inner_text() == "cancelled"
    assert page.locator("#job-summary").inner_text().startswith("Cancelled by otto")
    assert page.locator("#cancel-form").count() == 0


def test_a_viewer_whose_session_ended_is_told_to_log_in_again_and_the_page_stops_retrying(
    browser_page: Any, live_console: Any, viewer: Any
) -> None:
    # A running job with a live heartbeat, so no reaper ends it while the page watches.
    job = Job.objects.create(
        kind="test_stream",
        state=JobState.RUNNING,
        requested_by_name="otto",
        heartbeat_at=timezone.now() + timedelta(hours=1),
    )
    page = browser_page
    login(page, live_console, viewer)
    page.goto(f"{live_console.url}/jobs/{job.pk}/")
    page.wait_for_function("document.querySelector('.jl-status').textContent === 'live'")
    page.context.clear_cookies()  # the session is gone, as after it expired
    page.evaluate("window.guardianJobLog.socket.socket.close()")
    page.wait_for_function(
        "document.querySelector('.jl-status').textContent === 'not allowed — log in again'", timeout=10_000
    )
    connects = snapshot(page)["connects"]
    page.wait_for_timeout(1500)  # a retry would have come after 250 ms
    final = snapshot(page)
    assert final["refused"] == 4403 and final["connects"] == connects == 2
