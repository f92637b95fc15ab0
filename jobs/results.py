"""A job's results as sentences with links, for its page: "Removed guardian 'UntrustedGuardian' from HV03 (signing
ABCD1234…); its public metadata is kept for the undo." rather than "removed guardian host=HV03; guardian_name=…;
metadata_xml=(3,144 characters)". A result this module does not know is shown as "its words: its value".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .words import counted

# Results kept for the console's own use (the next button, the undo's metadata) and never shown as such.
HIDDEN = frozenset({"next_url", "next_label"})


def names(values: Any) -> str:
    return ", ".join(f"'{value}'" for value in values) if isinstance(values, list) else str(values)


def removed_guardian(value: dict[str, Any]) -> SafeString:
    return format_html(
        "Removed guardian '{}' from {} (signing {}…, encryption {}…); its public metadata is kept for the undo.",
        value.get("guardian_name", ""),
        value.get("host", ""),
        str(value.get("signing_thumbprint", ""))[:8],
        str(value.get("encryption_thumbprint", ""))[:8],
    )


def vault_link(pk: Any, sentence: str) -> SafeString:
    return format_html('{} <a href="{}">vault entry #{}</a>.', sentence, reverse("vault_detail", args=[pk]), pk)


def target_vm(value: dict[str, Any]) -> SafeString:
    return format_html("The VM is now '{}' on {}.", value.get("name", ""), value.get("host", ""))


SENTENCES: dict[str, Callable[[Any], SafeString | str]] = {
    "removed_guardian": removed_guardian,
    "sealed_vms": lambda vms: f"VMs sealed to it: {names(vms)}." if vms else "No VM was sealed to it.",
    "failed_hosts": lambda hosts: f"Not refreshed (unreachable): {', '.join(hosts)}." if hosts else "",
    "restored_vms": lambda vms: f"Restored and running: {names(vms)}.",
    "stored": lambda count: f"{counted(count, 'new pair').capitalize()} escrowed in the vault.",
    "already_escrowed": lambda count: f"{counted(count, 'pair').capitalize()} already in the vault.",
    "changed": lambda done: f"Changed: {'; '.join(done)}." if done else "Nothing changed.",
    "guardian_name": lambda name: f"The guardian is named '{name}' on the host.",
    "vault_entry": lambda pk: vault_link(pk, "Stored as"),
    "carried_pair": lambda pk: vault_link(pk, "The owner guardian's keys were carried from"),
    "target_vm": target_vm,
    "imported_vm_id": lambda vm_id: f"Imported with VM ID {vm_id}.",
    "steps_done_before_cancel": lambda steps: (
        f"Done before the cancel: {'; '.join(steps)}." if steps else "No step had completed before the cancel."
    ),
}


def result_sentences(results: dict[str, Any]) -> list[SafeString | str]:
    shown: list[SafeString | str] = []
    for key, value in results.items():
        if key in HIDDEN or value in (None, ""):
            continue
        try:
            sentence = SENTENCES[key](value) if key in SENTENCES else f"{key.replace('_', ' ').capitalize()}: {value}"
        except (AttributeError, TypeError, ValueError):  # a value of an older shape: shown as it is
            sentence = f"{key.replace('_', ' ').capitalize()}: {value}"
        if sentence:
            shown.append(sentence)
    return shown


def as_list(sentences: list[SafeString | str]) -> SafeString:
    return format_html('<ul class="sentences">{}</ul>', format_html_join("", "<li>{}</li>", ((s,) for s in sentences)))
