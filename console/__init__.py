"""The console project: settings, URLs, ASGI routing, the Celery app, roles and the audit trail."""

from .datafiles import keep_private

keep_private()  # before anything is created under the data directory: see console/datafiles.py

from .celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
