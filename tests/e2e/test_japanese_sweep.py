"""In Chromium set to Japanese: every page an admin can open in a generated lab is read for English left
untranslated (the detector of test_japanese.py) and must fit a 390 px phone in Japanese too; a few forms are sent
with wrong input and answer in Japanese."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import translation

from console.notifications.models import Destination, EventKind
from hosts.inventory.models import VirtualMachine
from hosts.inventory.rules import RISK_TITLES
from hosts.models import Host
from hosts.vault.models import EscrowedPair
from jobs.models import Job, JobState
from jobs.workflows.reset.kind import reset_approval
from tests.hosts.test_vault_support import make_pair
from tests.plugins.browser import ARTIFACTS, PHONE, VISIBLE_TEXT, WIDEST, login, untranslated

pytestmark = [pytest.mark.e2e, pytest.mark.browser_locale("ja-JP"), pytest.mark.timeout(180)]

JAPANESE = "[ぁ-んァ-ン一-龥]"


def every_page(admin: Any) -> dict[str, str]:
    """A generated lab whose jobs were written in Japanese, and a job waiting for approval: every page an admin can
    open, by name."""
    call_command(
        "generate_lab", hosts=4, vms_per_host=3, seed=5, prefix="JA", jobs_per_host=3, audit_per_host=3, language="ja"
    )
    host = Host.objects.order_by("name").first()
    target = Host.objects.order_by("name").last()
    vm = VirtualMachine.objects.filter(host=host).order_by("name").first()
    pair = EscrowedPair.objects.order_by("pk").first()
    job = Job.objects.order_by("-pk").first()
    assert host and target and vm and pair and job
    # Asked for by an English-speaking operator: the approval page says why in its reader's words (its job page
    # titles the steps in the job's language, as the log that will record them).
    with translation.override("en"):
        reason = reset_approval([host], {})
    waiting = Job.objects.create(
        kind="reset_guardian",
        state=JobState.AWAITING_APPROVAL,
        host_names=[host.name],
        requested_by_name="otto",
        language="en",
        approval_reason=reason,
    )
    waiting.hosts.add(host)
    destination = Destination(name="Team chat", type=Destination.WEBHOOK, kinds=[EventKind.JOB_FAILED.value])
    destination.set_url("https://hooks.lab.example/console")
    destination.save()
    wizard = f"/jobs/new/migrate/?host={host.pk}&vm={vm.name}&target={target.pk}"
    return every_kind_of(host) | {
        "dashboard": "/",
        "hosts": "/hosts/",
        "host": f"/hosts/{host.pk}/",
        "host-edit": f"/hosts/{host.pk}/edit/",
        "new-host": "/hosts/new/",
        "prepare": "/hosts/prepare/",
        "shares": "/hosts/shares/",
        "guardians": "/guardians/",
        "vms": "/vms/",
        "vm": f"/vms/{vm.pk}/",
        "risks": "/risks/",
        "marks": "/marks/",
        "vault": "/vault/",
        "vault-pair": f"/vault/{pair.pk}/",
        "vault-upload": "/vault/upload/",
        "recovery-kit": "/vault/recovery-kit/",
        "jobs": "/jobs/",
        "job": f"/jobs/{job.pk}/",
        "approval": f"/jobs/{waiting.pk}/approval/",
        "refresh": "/jobs/refresh/",
        "escrow": f"/jobs/new/escrow/?host={host.pk}",
        "import": f"/jobs/new/import/?host={host.pk}",
        "restore": f"/jobs/new/restore/?host={host.pk}",
        "restore-all": f"/jobs/new/restore/all/?host={host.pk}",
        "rescue": f"/jobs/new/rescue/?host={host.pk}",
        "reset": f"/jobs/new/reset/?host={host.pk}",
        "reset-undo": f"/jobs/new/reset/undo/?host={host.pk}",
        "vtpm": f"/jobs/new/vtpm/?host={host.pk}",
        "migrate": "/jobs/new/migrate/",
        "migrate-vm": f"/jobs/new/migrate/?host={host.pk}",
        "migrate-target": f"{wizard}&step=target",
        "migrate-method": f"{wizard}&step=method",
        "migrate-unseal": f"{wizard}&step=unseal&method=export",
        "migrate-review": f"{wizard}&step=review&method=export",
        "audit": "/audit/",
        "users": "/users/",
        "new-user": "/users/new/",
        "user": f"/users/{admin.pk}/",
        "team-notifications": "/notifications/",
        "destination": f"/notifications/destinations/{destination.pk}/",
        "my-notifications": "/account/notifications/",
        "account": "/account/",
        "api-tokens": "/account/tokens/",
        "two-factor": "/account/two-factor/",
        "password": "/account/password/",
        "missing": "/hosts/999999/",
    }


def every_kind_of(first: Host) -> dict[str, str]:
    """The other hosts' pages (the generated lab's first four hosts differ: healthy, stale, never read…), a VM with
    each kind of risk, and each kind of risk's list."""
    pages = {f"host-{h.name}": f"/hosts/{h.pk}/" for h in Host.objects.exclude(pk=first.pk).order_by("name")}
    for code in RISK_TITLES:
        pages[f"risks-{code}"] = f"/risks/?code={code}"
        if vm := VirtualMachine.objects.filter(facts__risk=code).order_by("name").first():
            pages[f"vm-{code}"] = f"/vms/{vm.pk}/"
    return pages


# A code where words belong (job_failed, vm_cannot_start): English to a Japanese reader, though one "word".
CODE = re.compile(r"\b[a-z]+_[a-z_]+\b")


def codes_shown(page: Any) -> list[str]:
    return [text for text in page.evaluate(VISIBLE_TEXT) if CODE.search(text)]


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"japanese-sweep-{name}.png"), full_page=True)


def test_every_page_an_admin_opens_is_japanese_and_fits_a_phone(
    browser_page: Any, live_console: Any, admin: Any
) -> None:
    pages = every_page(admin)
    page = browser_page
    page.goto(f"{live_console.url}/login/")
    assert untranslated(page) == []
    shoot(page, "login")
    login(page, live_console, admin)
    page.goto(f"{live_console.url}/guardians/")
    pages["guardian"] = page.locator("main a[href^='/guardians/']").first.get_attribute("href")
    english: dict[str, list[str]] = {}
    too_wide: dict[str, Any] = {}
    for name, path in pages.items():
        page.set_viewport_size({"width": 1280, "height": 900})
        response = page.goto(f"{live_console.url}{path}")
        assert response is not None and response.status == (404 if name == "missing" else 200), f"{name}: {path}"
        assert page.get_attribute("html", "lang") == "ja"
        left = untranslated(page) + codes_shown(page)
        shoot(page, name)
        page.set_viewport_size(PHONE)  # the phone's layout shows what the desktop's hides ("Menu")
        if left := left + [text for text in untranslated(page) if text not in left]:
            english[name] = left
        if page.evaluate("document.scrollingElement.scrollWidth") > PHONE["width"]:
            too_wide[name] = page.evaluate(WIDEST)
    assert not english, f"English left on Japanese pages: {english}"
    # Single words escape the detector: a VM's state is said as Hyper-V Manager says it in Japanese.
    page.goto(f"{live_console.url}/vms/")
    states = set(page.locator("main table tr td:nth-child(3)").all_inner_texts())
    assert states and states <= {"実行中", "オフ", "保存済み", "一時停止"}, states
    assert not too_wide, f"Japanese pages wider than {PHONE['width']} px: {too_wide}"


def refused_in_japanese(page: Any, name: str, expected: int) -> None:
    """The page shows `expected` errors, each in Japanese, and no English left anywhere on it."""
    errors = page.locator("main .errorlist li").all_inner_texts()
    assert len(errors) == expected, errors
    assert all(re.search(JAPANESE, error) for error in errors), errors
    assert untranslated(page) == []
    shoot(page, name)


def test_wrong_input_is_refused_in_japanese(browser_page: Any, live_console: Any, admin: Any, tmp_path: Path) -> None:
    page = browser_page
    login(page, live_console, admin)

    page.goto(f"{live_console.url}/hosts/new/")
    page.fill("input[name=name]", "HVX")
    page.fill("input[name=address]", "not an address!")
    page.fill("input[name=port]", "70000")
    page.fill("input[name=username]", "LAB\\hv")
    page.fill("input[name=password]", "secret")
    page.evaluate("document.querySelectorAll('form').forEach(f => f.noValidate = true)")
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    refused_in_japanese(page, "host-form-errors", 2)  # the address, the port
    assert "65535" in " ".join(page.locator("main .errorlist").all_inner_texts())

    signing, encryption = make_pair(host="OLDHV01")
    (tmp_path / "UntrustedGuardian-signing.pfx").write_bytes(signing)
    (tmp_path / "UntrustedGuardian-encryption.pfx").write_bytes(encryption)
    page.goto(f"{live_console.url}/vault/upload/")
    page.set_input_files("input[name=signing_pfx]", str(tmp_path / "UntrustedGuardian-signing.pfx"))
    page.set_input_files("input[name=encryption_pfx]", str(tmp_path / "UntrustedGuardian-encryption.pfx"))
    page.fill("input[name=password]", "not-the-password")
    with page.expect_navigation():
        page.click("#store-pair")
    refused_in_japanese(page, "vault-wrong-password", 1)
    assert "UntrustedGuardian-signing.pfx" in " ".join(page.locator("main .errorlist").all_inner_texts())

    page.goto(f"{live_console.url}/hosts/shares/")
    page.fill("input[name=path]", "C:\\not a share")
    page.evaluate("document.querySelectorAll('form').forEach(f => f.noValidate = true)")
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    refused_in_japanese(page, "share-bad-path", 2)  # the path, and no host chosen
