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
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

# Results kept for the console's own use (the next button, the undo's metadata) and never shown as such.
HIDDEN = frozenset({"next_url", "next_label"})


def names(values: Any) -> str:
    """VM names as a sentence quotes them: 'Win11-A', 'Win11-B' (「Win11-A」、「Win11-B」 in Japanese)."""
    if not isinstance(values, list):
        return str(values)
    return _(", ").join(_("'%(name)s'") % {"name": value} for value in values)


def removed_guardian(value: dict[str, Any]) -> SafeString:
    return format_html(
        _(
            "Removed guardian '{guardian}' from {host} (signing {signing}…, encryption {encryption}…); its public "
            "metadata is kept for the undo."
        ),
        guardian=value.get("guardian_name", ""),
        host=value.get("host", ""),
        signing=str(value.get("signing_thumbprint", ""))[:8],
        encryption=str(value.get("encryption_thumbprint", ""))[:8],
    )


def vault_link(pk: Any, sentence: str) -> SafeString:
    """`sentence` with its {link} made a link to the vault entry `pk`."""
    entry = _("vault entry #%(pk)s") % {"pk": pk}
    return format_html(sentence, link=format_html('<a href="{}">{}</a>', reverse("vault_detail", args=[pk]), entry))


def target_vm(value: dict[str, Any]) -> SafeString:
    return format_html(_("The VM is now '{name}' on {host}."), name=value.get("name", ""), host=value.get("host", ""))


def stored(count: int) -> str:
    if count == 0:
        return _("No new pair escrowed in the vault.")
    return ngettext(
        "%(count)s new pair escrowed in the vault.", "%(count)s new pairs escrowed in the vault.", count
    ) % {"count": count}


def already_escrowed(count: int) -> str:
    if count == 0:
        return _("No pair already in the vault.")
    return ngettext("%(count)s pair already in the vault.", "%(count)s pairs already in the vault.", count) % {
        "count": count
    }


SENTENCES: dict[str, Callable[[Any], SafeString | str]] = {
    "removed_guardian": removed_guardian,
    "sealed_vms": lambda vms: (
        _("VMs sealed to it: %(vms)s.") % {"vms": names(vms)} if vms else _("No VM was sealed to it.")
    ),
    "failed_hosts": lambda hosts: (
        _("Not refreshed (unreachable): %(hosts)s.") % {"hosts": ", ".join(hosts)} if hosts else ""
    ),
    "restored_vms": lambda vms: _("Restored and running: %(vms)s.") % {"vms": names(vms)},
    "stored": stored,
    "already_escrowed": already_escrowed,
    "changed": lambda done: _("Changed: %(done)s.") % {"done": "; ".join(done)} if done else _("Nothing changed."),
    "guardian_name": lambda name: _("The guardian is named '%(name)s' on the host.") % {"name": name},
    "vault_entry": lambda pk: vault_link(pk, _("Stored as {link}.")),
    "carried_pair": lambda pk: vault_link(pk, _("The owner guardian's keys were carried from {link}.")),
    "target_vm": target_vm,
    "imported_vm_id": lambda vm_id: _("Imported with VM ID %(id)s.") % {"id": vm_id},
    "steps_done_before_cancel": lambda steps: (
        _("Done before the cancel: %(steps)s.") % {"steps": "; ".join(steps)}
        if steps
        else _("No step had completed before the cancel.")
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
