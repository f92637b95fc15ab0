"""Where the files of a VM "registered in place" may lie: on the target's own drives, under a folder the target
reported itself (Get-VMHost's VirtualMachinePath and VirtualHardDiskPath, the folders its VMs live in).

Import-VM -Register makes the target open whatever .vmcx it is given, so a path from a form could otherwise make
the host read a network share (and authenticate to it) or a file outside Hyper-V's folders. Paths are compared as
Windows does (case-insensitively, `\\` between parts) after refusing everything that could make two spellings name
different places: `..`, `/`, UNC and device paths, alternate data streams, control characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.utils.translation import gettext as _

DRIVE_PATH = re.compile(r"^[A-Za-z]:\\[^\\]")  # C:\something: a full path on a local drive, not the drive's root


def local_path_refusal(path: str) -> str:
    """Why `path` is not a plain full path on one of the target's drives ("" when it is): what the path must be or
    may not contain, said after "The configuration file's path"."""
    if path.startswith(("\\\\", "//", "\\??\\")):
        return _("must be on one of the target's own drives, not a network or device path (\\\\server\\…).")
    if "/" in path:
        return _("must use backslashes (\\) between folders.")
    if not DRIVE_PATH.match(path):
        return _("must be a full path on a drive of the target, such as C:\\…\\<ID>.vmcx.")
    if ":" in path[2:]:
        return _("may not contain ':' after the drive letter (alternate data streams are not VM files).")
    if not path.isprintable():
        return _("may not contain control or invisible characters.")
    if any(part in ("..", ".") or part != part.rstrip(" .") for part in path[3:].split("\\")):
        return _("may not contain '..' or '.' or a folder name that ends in a dot or a space.")
    return ""


def reported_folders(folders: Iterable[str]) -> list[str]:
    """The folders a target reported, each once, without a trailing backslash; a drive's root is never one (it
    would let a path anywhere on that drive through), nor anything that is not a plain local path."""
    kept: dict[str, str] = {}
    for folder in folders:
        folder = folder.rstrip("\\")
        if folder and not local_path_refusal(folder):
            kept.setdefault(folder.casefold(), folder)
    return list(kept.values())


def lies_under(path: str, folders: Iterable[str]) -> bool:
    """Is `path` (a plain local path) inside one of `folders` (as reported_folders gives them)?"""
    folded = path.casefold()
    return any(folded.startswith(folder.casefold() + "\\") for folder in folders)
