"""Reading values people type or send in URLs: one place, so every page refuses the same bad input the same way;
and which page of a long list they asked for."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest


def parse_id(raw: Any) -> int | None:
    """A database id from a query string or form: ASCII digits only ("²" and "٣" are digits to str.isdigit but not
    to int()), else None."""
    if not isinstance(raw, str) or not raw or len(raw) > 18 or not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)


def search_text(request: HttpRequest, name: str, limit: int = 200) -> str:
    """A filter or search typed into a list page's query string, trimmed, with control characters dropped: PostgreSQL
    refuses a NUL in a text comparison (a 500 otherwise), and no name the console shows holds one."""
    raw = request.GET.get(name, "")
    return "".join(ch for ch in raw[:limit] if ch.isprintable()).strip()


class RowsField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]  # generic in django-stubs only
    """Several rows (hosts) chosen by their ids, each read as parse_id reads one: a number too large for the
    database's integer, or digits that are not ASCII, is refused as a choice that does not exist (never a 500)."""

    def clean(self, value: Any) -> Any:
        for pk in value or []:
            if parse_id(str(pk)) is None:
                raise ValidationError(
                    self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": pk}
                )
        return super().clean(value)


def page_of(request: HttpRequest, items: Sequence[Any] | QuerySet[Any], per_page: int, param: str = "page") -> Listing:
    """The page of a long list that the request asks for (`?page=`, the last one when past the end), with the rest
    of the query string for the pager's links (filters stay on when paging)."""
    page = Paginator(items, per_page).get_page(request.GET.get(param))
    query = request.GET.copy()
    query.pop(param, None)
    return Listing(page, query.urlencode(), param)


@dataclass(frozen=True)
class Listing:
    """A page of a list, and what its pager needs (templates/_pager.html)."""

    page: Page[Any]
    query: str  # the other parameters, URL-encoded
    param: str

    def __iter__(self) -> Iterator[Any]:
        return iter(self.page)
