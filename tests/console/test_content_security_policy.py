"""A page cannot be made to run someone else's script: every page says (Content-Security-Policy) that scripts and
styles come from the console's own files only, and no template relies on inline script or style to work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((REPO / "templates").rglob("*.html"))
INLINE = {
    "an inline <script> block": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "an on…= event handler": re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE),
    "a style= attribute": re.compile(r"<[^>]*\sstyle\s*=", re.IGNORECASE),
    "a <style> block": re.compile(r"<style\b", re.IGNORECASE),
    "a javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
}


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


@pytest.mark.parametrize("page", ["/login/", "/", "/hosts/prepare/", "/jobs/"])
def test_every_page_allows_scripts_and_styles_from_the_console_only(admin: Any, page: str) -> None:
    client = Client()
    client.force_login(admin)
    response = client.get(page) if page != "/login/" else Client().get(page)
    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: str(path.relative_to(REPO / "templates")))
def test_no_template_needs_inline_script_or_style(template: Path) -> None:
    text = template.read_text()
    found = [what for what, pattern in INLINE.items() if pattern.search(text)]
    assert not found, f"{template.relative_to(REPO)} has {', '.join(found)}: the policy would block it"


def test_the_scripts_inject_no_style_element() -> None:
    for script in (REPO / "static").glob("*.js"):
        text = script.read_text()
        assert 'createElement("style")' not in text and "innerHTML" not in text, script.name


def test_host_pickers_submit_through_the_static_script(admin: Any) -> None:
    client = Client()
    client.force_login(admin)
    page = client.get("/").content.decode()
    assert '<script src="/static/console.js" defer></script>' in page
    assert "data-autosubmit" in (REPO / "templates/workflows/_host_picker.html").read_text()
    assert client.get("/static/console.js").status_code == 200
