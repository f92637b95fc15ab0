"""The jobs app: registers the job kinds (built-in, workflows, and any module named in CONSOLE_JOB_KIND_MODULES)."""

from __future__ import annotations

import importlib
import logging
import os

from django.apps import AppConfig

from .joblog import install
from .workflows import KIND_MODULES


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        install()
        for module in workflow_modules() + extra_kind_modules():
            try:
                importlib.import_module(module)
            except Exception:
                # One broken workflow must not take the whole console down; its kind is missing and says so.
                logging.getLogger(__name__).exception("job kinds of %s could not be loaded", module)


def workflow_modules() -> list[str]:
    """The modules that register the console's kinds: the inventory refresh, and the workflows' (listed in
    jobs.workflows.KIND_MODULES). Imported once the app registry is ready, since kinds use models."""
    return ["jobs.inventory", *KIND_MODULES]


def extra_kind_modules() -> list[str]:
    """Extra kinds for a worker process (the test suite registers test-only kinds in its own modules this way)."""
    return [name.strip() for name in os.environ.get("CONSOLE_JOB_KIND_MODULES", "").split(",") if name.strip()]
