"""URLs of the hosts app."""

urlpatterns: list = []
