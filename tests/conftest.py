"""Shared fixtures. Feature-specific fixtures live in tests/plugins/ and are loaded here."""

from __future__ import annotations

pytest_plugins = [
    "tests.plugins.users",
    "tests.plugins.sim",  # simulated Hyper-V hosts (hypervsim) over real sockets
    "tests.plugins.hosts",  # registered hosts pointing at simulated hosts
    "tests.plugins.worker",  # a real Celery worker process
    "tests.plugins.browser",  # Chromium through Playwright, and a live console server
]
