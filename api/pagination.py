"""Pages of the API's lists: 50 rows unless the client asks for up to 500 (`page_size`)."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination


class Pages(PageNumberPagination):  # type: ignore[misc]  # DRF has no type hints here
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
