"""The console project: settings, URLs, ASGI routing, the Celery app, roles and the audit trail."""

from .celery import app as celery_app

__all__ = ["celery_app"]
