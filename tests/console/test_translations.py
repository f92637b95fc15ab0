"""Every word the console shows goes through Django's translation machinery, and the Japanese catalogue is complete.

Three checks, each a promise to the Japanese reader:
- no template writes a user-visible English word outside {% translate %} / {% blocktranslate %} (text between tags,
  and the attributes people read: title, alt, placeholder, aria-label, a button's value). Text inside <code>, <pre>,
  <kbd>, <samp>, <script>, <style> or an element marked translate="no" is not translated, as in any HTML page;
- the committed catalogue holds every string the code marks (re-extracted here with Django's makemessages, which
  uses GNU gettext), each translated, none fuzzy, with the same placeholders as its English;
- the compiled .mo files say what the .po files say (compilemessages was run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from gettext import GNUTranslations
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.template.base import Lexer, TokenType

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "locale" / "ja" / "LC_MESSAGES"
DOMAINS = ("django", "djangojs")
SOURCE_DIRS = ("api", "console", "hosts", "jobs", "templates", "static")
TEMPLATE_DIRS = [ROOT / "templates", *(path for name in SOURCE_DIRS for path in (ROOT / name).glob("**/templates"))]

WORDS = re.compile(r"[A-Za-z]{2,}")
READ_ATTRIBUTES = frozenset({"title", "alt", "placeholder", "aria-label", "data-copied", "data-label"})
UNTRANSLATED_ELEMENTS = frozenset({"code", "pre", "kbd", "samp", "script", "style"})
VOID_ELEMENTS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
# A literal string given to a tag or filter that is shown to people: `default:"none"`, `with label="Host"`.
SHOWN_LITERAL = re.compile(r'(?:default(?:_if_none)?:|\b(?:label|title|heading|text|empty|caption|legend)=)"([^"]*)"')


def templates() -> list[Path]:
    return sorted(path for folder in TEMPLATE_DIRS if folder.is_dir() for path in folder.rglob("*.html"))


class ShownText(HTMLParser):
    """Collects the text a person reads in an HTML fragment, skipping what HTML itself says is not to translate."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skipping: list[str] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in VOID_ELEMENTS:
            self.read_attributes(tag, attributes)
            return
        if self.skipping or tag in UNTRANSLATED_ELEMENTS or attributes.get("translate") == "no":
            self.skipping.append(tag)
            return
        self.read_attributes(tag, attributes)

    def read_attributes(self, tag: str, attributes: dict[str, str | None]) -> None:
        if self.skipping:
            return
        shown = {name: value for name, value in attributes.items() if name in READ_ATTRIBUTES}
        if tag == "input" and attributes.get("type") in {"submit", "button", "reset"}:
            shown["value"] = attributes.get("value")
        self.found.extend(value for value in shown.values() if value and WORDS.search(value))

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self.skipping and WORDS.search(data):
            self.found.append(" ".join(data.split()))


def shown_literals(contents: str, line: int) -> list[str]:
    return [f"{line}: {literal}" for literal in SHOWN_LITERAL.findall(contents) if WORDS.search(literal)]


def untranslated_strings(path: Path) -> list[str]:
    """The English a template writes without translating it, as "line: text"."""
    source = path.read_text(encoding="utf-8")
    inside_block_translate = False
    html: list[str] = []
    problems: list[str] = []
    for token in Lexer(source).tokenize():
        line = token.lineno
        if token.token_type == TokenType.BLOCK:
            name = token.contents.split()[0] if token.contents else ""
            if name in {"blocktranslate", "blocktrans"}:
                inside_block_translate = True
            elif name in {"endblocktranslate", "endblocktrans"}:
                inside_block_translate = False
            problems += [
                f"{line}: {literal}" for literal in SHOWN_LITERAL.findall(token.contents) if WORDS.search(literal)
            ]
            html.append(" ")  # a tag separates text the way markup does
        elif token.token_type == TokenType.VAR:
            problems += [
                f"{line}: {literal}" for literal in SHOWN_LITERAL.findall(token.contents) if WORDS.search(literal)
            ]
            html.append("{{}}" if not inside_block_translate else "")
        elif token.token_type == TokenType.TEXT and not inside_block_translate:
            html.append(token.contents)
    parser = ShownText()
    parser.feed("".join(html))
    parser.close()
    problems += [text for text in parser.found if WORDS.search(text.replace("{{}}", ""))]
    return problems


def test_every_template_string_is_translatable() -> None:
    """A template that writes English outside {% translate %} fails here, naming the template and the text."""
    found = {str(path.relative_to(ROOT)): untranslated_strings(path) for path in templates()}
    found = {name: texts for name, texts in found.items() if texts}
    assert not found, "Untranslatable text (wrap it in {% translate %} / {% blocktranslate %}):\n" + "\n".join(
        f"{name}: {text}" for name, texts in found.items() for text in texts
    )


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        '{% load i18n %}<h1>{% translate "Hosts" %}</h1><p title="Hover me">Plain words</p>'
        '<code>Get-HgsGuardian</code><span translate="no">HV01</span>'
        '{% blocktranslate %}Sealed to {{ name }}{% endblocktranslate %}{{ value|default:"none" }}'
        '<input type="submit" value="Save">',
        encoding="utf-8",
    )
    assert untranslated_strings(page) == ["1: none", "Hover me", "Plain words", "Save"]


def catalogue(domain: str) -> polib.POFile:
    """The committed catalogue of `domain`; none yet (djangojs before any script had words) reads as empty."""
    path = CATALOGUE / f"{domain}.po"
    return polib.pofile(str(path)) if path.exists() else polib.POFile()


def placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"%\([a-z_0-9]+\)[sdf]|%[sdf]|\{[a-z_0-9]*\}", text))


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_japanese_catalogue_is_complete(domain: str) -> None:
    po = catalogue(domain)
    untranslated = [entry.msgid for entry in po.untranslated_entries()]
    fuzzy = [entry.msgid for entry in po.fuzzy_entries()]
    assert not untranslated, f"{len(untranslated)} untranslated in {domain}.po: {untranslated[:20]}"
    assert not fuzzy, f"{len(fuzzy)} fuzzy (check the Japanese, then drop the flag) in {domain}.po: {fuzzy[:20]}"
    wrong = [
        entry.msgid
        for entry in po.translated_entries()
        if (not entry.msgid_plural and placeholders(entry.msgid) != placeholders(entry.msgstr))  # a plural: msgstr[n]
        or any(placeholders(entry.msgid_plural) != placeholders(text) for text in entry.msgstr_plural.values())
    ]
    assert not wrong, f"Japanese with other placeholders than its English in {domain}.po: {wrong[:20]}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_compiled_catalogue_is_up_to_date(domain: str) -> None:
    if not (CATALOGUE / f"{domain}.po").exists():
        return
    with open(CATALOGUE / f"{domain}.mo", "rb") as compiled:
        mo = GNUTranslations(compiled)
    for entry in catalogue(domain).translated_entries():
        if entry.msgid_plural:
            assert mo.ngettext(entry.msgid, entry.msgid_plural, 1) == entry.msgstr_plural[0], entry.msgid
        elif entry.msgctxt:
            assert mo.pgettext(entry.msgctxt, entry.msgid) == entry.msgstr, entry.msgid
        else:
            assert mo.gettext(entry.msgid) == entry.msgstr, f"run `make messages`: {entry.msgid!r} is not compiled"


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext is installed by `make i18n-tools`")
@pytest.mark.same_on_every_database
def test_the_catalogue_holds_every_marked_string(tmp_path: Path) -> None:
    """makemessages, run on a copy of the sources, finds no string the committed catalogue lacks."""
    for name in (*SOURCE_DIRS, "manage.py"):
        source = ROOT / name
        copy = tmp_path / name
        if source.is_dir():
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy)
    (tmp_path / "locale").mkdir()
    for domain in DOMAINS:
        subprocess.run(
            [sys.executable, "manage.py", "makemessages", "-l", "ja", "--no-location", "-d", domain],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)},
        )
        made = tmp_path / CATALOGUE.relative_to(ROOT) / f"{domain}.po"
        extracted = {(entry.msgctxt, entry.msgid) for entry in (polib.pofile(str(made)) if made.exists() else [])}
        committed = {(entry.msgctxt, entry.msgid) for entry in catalogue(domain) if not entry.obsolete}
        missing = sorted(msgid for _, msgid in extracted - committed)
        assert not missing, (
            f"{len(missing)} strings not in locale/ja/LC_MESSAGES/{domain}.po (run `make messages`): {missing[:20]}"
        )
