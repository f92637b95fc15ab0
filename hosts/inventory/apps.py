from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "hosts.inventory"
    label = "inventory"
