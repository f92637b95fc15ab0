"""Reading a page's Show PowerShell blocks as a person would copy them, and checking they run as shown."""

from __future__ import annotations

import re
from html import unescape


def shown_powershell(html: str) -> list[str]:
    """The lines of every Show PowerShell block of a page, as a person would copy them."""
    blocks = re.findall(r'<pre class="powershell">(.*?)</pre>', html, flags=re.S)
    return [unescape(line) for block in blocks for line in block.splitlines() if line.strip()]


def assert_runnable(lines: list[str]) -> None:
    """Pasted in order, the lines run: every variable is assigned before it is used, no byte array is shown by
    its size, and no name has a placeholder Windows would refuse."""
    assigned: set[str] = set()
    for line in lines:
        if line.startswith("#"):
            continue
        target, _, expression = line.partition(" = ") if re.match(r"^\$\w+ = ", line) else ("", "", line)
        used = set(re.findall(r"\$(\w+)", expression)) - {"true", "false", "null"}
        assert used <= assigned, f"{line!r} uses {used - assigned} before it is assigned"
        assigned |= {target.lstrip("$")} if target else set()
        assert "bytes>" not in line and "<random>" not in line, line
        # A quoted '<…>' stand-in would reach Windows as a literal name; only the password prompt may show one.
        assert re.findall(r"'<[^']*>'", line.replace("-AsSecureString '<password>'", "")) == [], line
