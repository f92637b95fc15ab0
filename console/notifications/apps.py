from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "console.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # The receivers import the jobs' and the inventory's models, which need the app registry ready (it is, here).
        from . import sources

        sources.connect()
