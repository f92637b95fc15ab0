"""A VM's state as Hyper-V names it (Get-VM's State: Running, Off, Saved…) in the reader's words.

The inventory stores Hyper-V's own name, which code compares ("Saved"); only what a page or a log line shows is
translated, as Hyper-V Manager shows it in the reader's language. A state not listed here is shown as Hyper-V named it.
"""

from __future__ import annotations

from django.utils.translation import pgettext_lazy

VM_STATES = {
    "Running": pgettext_lazy("VM state", "Running"),
    "Off": pgettext_lazy("VM state", "Off"),
    "Saved": pgettext_lazy("VM state", "Saved"),
    "Paused": pgettext_lazy("VM state", "Paused"),
    "Starting": pgettext_lazy("VM state", "Starting"),
    "Stopping": pgettext_lazy("VM state", "Stopping"),
    "Saving": pgettext_lazy("VM state", "Saving"),
    "Pausing": pgettext_lazy("VM state", "Pausing"),
    "Resuming": pgettext_lazy("VM state", "Resuming"),
    "Reset": pgettext_lazy("VM state", "Reset"),
    "Hibernated": pgettext_lazy("VM state", "Hibernated"),
    "Other": pgettext_lazy("VM state", "Other"),
}


def vm_state_words(state: str) -> str:
    """`state` (Hyper-V's name) in the active language; an unknown one, or none, as it is."""
    return str(VM_STATES[state]) if state in VM_STATES else state
