"""URLs of the jobs app."""

urlpatterns: list = []
