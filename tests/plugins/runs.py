"""Running a workflow outside a job, for tests: DirectRun is what a workflow needs from a run (jobs.kinds.Run)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jobs.joblog import lines_to
from jobs.kinds import Step


class DirectRun:
    """What a workflow needs from a JobContext — log, step, record, check_cancelled, user — for running it
    directly (tests, scripts). Lines are kept in `lines`, results in `results`."""

    def __init__(self, user: Any = None) -> None:
        self.user = user
        self.lines: list[tuple[str, str]] = []
        self.results: dict[str, Any] = {}
        self.steps: list[str] = []
        self.links: list[tuple[str, str]] = []  # (text, link) of the lines that carry a link

    def __enter__(self) -> DirectRun:
        """`with DirectRun() as run:` also keeps what domain code logs through its logger in `lines`."""
        self._capture = lines_to(self.log)
        self._capture.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._capture.__exit__(None, None, None)

    def log(self, text: str, level: str = "info", link: str = "") -> None:
        self.lines.append((level, text))
        if link:
            self.links.append((text, link))

    @property
    def text(self) -> str:
        return "\n".join(line for _level, line in self.lines)

    @contextmanager
    def step(self, title: str, destructive: bool = False) -> Iterator[Step]:
        self.log(f"▶ {title}")
        yield Step(title=title, needed=True)
        self.steps.append(title)

    def record(self, key: str, value: Any) -> None:
        self.results[key] = value

    def check_cancelled(self) -> None:
        return None


@contextmanager
def job_lines() -> Iterator[list[tuple[str, str]]]:
    """The (level, text) lines domain code logs inside the block, as a job's log would get them (jobs/joblog.py)."""
    lines: list[tuple[str, str]] = []
    with lines_to(lambda text, level: lines.append((level, text))):
        yield lines
