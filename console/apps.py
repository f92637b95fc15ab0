from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console"

    def ready(self) -> None:
        # accounts and roles import auth's models, which cannot be imported before the app registry is ready (it
        # is, here)
        from .accounts import connect_signals
        from .roles import ensure_roles  # see above: auth's models

        post_migrate.connect(ensure_roles, sender=self)
        connect_signals()  # the audit trail of logins, logouts and failed logins
