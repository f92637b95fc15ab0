from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "hosts.vault"
    label = "vault"
