from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console"

    def ready(self) -> None:
        # roles imports auth's models, which cannot be imported before the app registry is ready (it is, here)
        from .roles import ensure_roles

        post_migrate.connect(ensure_roles, sender=self)
