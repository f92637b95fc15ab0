"""In Chromium: an admin puts a backed-up guardian pair into the vault and takes it out again for offline use."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.hosts.test_vault_support import PASSWORD, make_pair
from tests.plugins.browser import ARTIFACTS, login

pytestmark = pytest.mark.e2e


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"vault-{name}.png"), full_page=True)


@pytest.fixture
def backup_files(tmp_path: Path) -> tuple[Path, Path]:
    """The two files of the well-known export script, as a person would have them on disk."""
    signing, encryption = make_pair(host="OLDHV01")
    (tmp_path / "UntrustedGuardian-signing.pfx").write_bytes(signing)
    (tmp_path / "UntrustedGuardian-encryption.pfx").write_bytes(encryption)
    return tmp_path / "UntrustedGuardian-signing.pfx", tmp_path / "UntrustedGuardian-encryption.pfx"


def upload(page: Any, files: tuple[Path, Path], password: str) -> None:
    page.set_input_files("input[name=signing_pfx]", str(files[0]))
    page.set_input_files("input[name=encryption_pfx]", str(files[1]))
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("#store-pair")


def test_an_admin_uploads_a_backup_pair_and_downloads_the_same_files(
    live_console: Any, admin: Any, backup_files: tuple[Path, Path], browser_page: Any
) -> None:
    page = browser_page
    login(page, live_console, admin)
    page.goto(f"{live_console.url}/vault/")
    page.click("text=Upload a PFX pair")

    upload(page, backup_files, "not-the-password")
    assert "the password does not open UntrustedGuardian-signing.pfx" in page.inner_text("main")
    shoot(page, "1-wrong-password")

    upload(page, backup_files, PASSWORD)
    assert "/vault/" in page.url and "Stored" in page.inner_text(".messages")
    assert "OLDHV01" in page.content() and page.locator(".badge.ok").first.inner_text() == "ok"
    assert PASSWORD not in page.content()
    shoot(page, "2-stored")

    page.click("text=Download for offline use")
    with page.expect_navigation():
        page.click("text=Show the password and download")
    assert page.inner_text("#pfx-password") == PASSWORD
    shoot(page, "3-password-once")
    with page.expect_download() as download_info:
        page.click("text=Download the zip")
    archive = Path(download_info.value.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        assert z.read("UntrustedGuardian-signing.pfx") == backup_files[0].read_bytes()
        assert z.read("UntrustedGuardian-encryption.pfx") == backup_files[1].read_bytes()

    page.goto(f"{live_console.url}/audit/")
    assert "vault.download" in page.content() and "vault.upload" in page.content()
    assert PASSWORD not in page.content()
