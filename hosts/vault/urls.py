"""URLs of the vault app."""

from django.urls import path

from . import views

urlpatterns = [
    path("vault/", views.vault_list, name="vault_list"),
    path("vault/upload/", views.vault_upload, name="vault_upload"),
    path("vault/<int:pk>/", views.vault_detail, name="vault_detail"),
    path("vault/<int:pk>/verify/", views.vault_verify, name="vault_verify"),
    path("vault/<int:pk>/download/", views.vault_download, name="vault_download"),
    path("vault/<int:pk>/download/<str:token>/", views.vault_download_file, name="vault_download_file"),
]
