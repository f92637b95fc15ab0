from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "hosts.inventory"
    label = "inventory"

    def ready(self) -> None:
        # Connects the receivers that keep the stored analysis in step with writes outside a refresh.
        from . import signals  # noqa: F401, PLC0415
