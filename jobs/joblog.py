"""Job log lines from plain logging: domain code (workflows, inventory, vault) writes `log.info(...)` on its module's
logger, and while a job runs in this thread (or task) those records become lines of that job's log, as NetBox's
`JobLogHandler` does. No `log=` callables are passed around.

A line's level is the record's (debug, info, warning, error); `extra={"job_level": "progress"}` (or "verbose")
picks one of the job log's own levels instead. `extra={"job_link": "/jobs/new/reset/?host=3"}` gives the line the
page of this console that fixes what it reports (a remedy): the job page shows it as a link. Records logged outside
a job go only to the usual handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

LineWriter = Callable[..., None]  # write(text, level) or write(text, level, link)

# The loggers whose records are job lines: the domain code, not the job machinery's own diagnostics.
DOMAIN_LOGGERS = ("jobs.workflows", "jobs.inventory", "hosts")

_writer: ContextVar[LineWriter | None] = ContextVar("job_log_writer", default=None)


def job_level(record: logging.LogRecord) -> str:
    chosen = getattr(record, "job_level", "")
    if chosen:
        return str(chosen)
    if record.levelno >= logging.ERROR:
        return "error"
    if record.levelno >= logging.WARNING:
        return "warning"
    return "info" if record.levelno >= logging.INFO else "debug"


class JobLogHandler(logging.Handler):
    """Writes each record to the log of the job running in the current context, if any."""

    def emit(self, record: logging.LogRecord) -> None:
        write = _writer.get()
        if write is None:
            return
        link = str(getattr(record, "job_link", "") or "")
        try:
            if link:
                write(record.getMessage(), job_level(record), link)
            else:
                write(record.getMessage(), job_level(record))
        except Exception:  # noqa: BLE001 - logging must never break the job
            self.handleError(record)


HANDLER = JobLogHandler(level=logging.DEBUG)


def install() -> None:
    """Attach the handler to the domain loggers (idempotent; called when the jobs app is ready)."""
    for name in DOMAIN_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        if HANDLER not in logger.handlers:
            logger.addHandler(HANDLER)


@contextmanager
def lines_to(write: LineWriter) -> Iterator[None]:
    """Within this block, records of the domain loggers become lines written by `write(text, level)`."""
    token = _writer.set(write)
    try:
        yield
    finally:
        _writer.reset(token)
