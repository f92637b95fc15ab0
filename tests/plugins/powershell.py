"""Reading a page's Show PowerShell blocks as a person would copy them, and checking they run as shown."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from hosts.remoting.operation import SWITCH, Credential, Secret, Switch


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


# Shown versus sent ---------------------------------------------------------------------------------------------
# A preflight's Show PowerShell and the job must be one plan: the commands a simulated host received are compared
# with the commands the preview rendered, in order, with what legitimately differs between the two made equal:
# secrets (a prompt in the preview, a SecureString or PSCredential sent), byte arrays (a variable in the preview,
# bytes sent) and the random token of temporary names (a sample in the preview, a fresh one in the job).

TEMP_TOKEN = re.compile(r"gc-[0-9a-f]{6,}-")


def comparable(value: Any) -> Any:
    if isinstance(value, Secret) or value == "********":
        return "<secret>"
    if isinstance(value, Credential):  # the simulator logs a PSCredential as PSCredential(<user>, ********)
        return f"PSCredential({value.user}, ********)"
    if isinstance(value, bytes | bytearray) or (isinstance(value, str) and re.fullmatch(r"<\d+ bytes>", value)):
        return "<bytes>"
    if isinstance(value, Switch) or value is True:
        return True
    if isinstance(value, list | tuple):
        return [comparable(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    return TEMP_TOKEN.sub("gc-*-", str(value))


def command_key(name: str, params: dict[str, Any]) -> tuple[str, tuple[tuple[str, Any], ...]]:
    return name, tuple(sorted((key, repr(comparable(value))) for key, value in params.items()))


def shown_commands(script: Any, host: str | None = None) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """The commands of a PowerShellScript (jobs.workflows.powershell), optionally those shown for one host."""
    return [command_key(cmd.name, cmd.params) for on, cmd in script.commands() if host is None or on == str(host)]


def sent_commands(sim: Any, since: int = 0) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """The commands a simulated host received (its command log from entry `since` on), comparable with
    shown_commands."""
    return [command_key(entry["cmdlet"], entry["parameters"]) for entry in sim.command_log[since:]]


def assert_shown_is_sent(shown: list[Any], sent: list[Any]) -> None:
    """The preview and the job ran the same commands in the same order (a readable diff when they did not)."""
    if shown != sent:
        width = max(len(shown), len(sent))
        rows = []
        for i in range(width):
            a = shown[i] if i < len(shown) else "—"
            b = sent[i] if i < len(sent) else "—"
            rows.append(f"{'  ' if a == b else '≠ '}{i:>2} shown {a}\n      sent  {b}")
        raise AssertionError("Show PowerShell differs from what the host received:\n" + "\n".join(rows))


# Shown lines back into commands ----------------------------------------------------------------------------------
# A printed line (a recovery kit's README) read back as the structured commands it stands for, so a test can send
# exactly what a person pasting it would run. Only what the renderer writes is understood: anything else fails.

PROMPT = "(Read-Host -AsSecureString '<password>')"
QUOTES = "'\u2018\u2019\u201a\u201b"  # PowerShell takes each of these as a single quote
_WORD = re.compile(r"\s*(-[A-Za-z]+:?|\$true|\$false|-?\d+|\(Read-Host -AsSecureString '<password>'\)|\|)")


def parse_line(line: str, typed_password: str = "") -> list[tuple[str, dict[str, Any]]]:
    """The pipeline of one rendered line: [(cmdlet, {parameter: value})]; a password prompt becomes `typed_password`
    (what the person types at it) as a Secret, a switch a Switch. Strings are read as PowerShell reads them."""
    name, _, rest = line.strip().partition(" ")
    pipeline: list[tuple[str, dict[str, Any]]] = [(name, {})]
    position, pending = 0, ""
    while position < len(rest):
        if rest[position] == " ":
            position += 1
            continue
        if rest[position] in QUOTES:
            value, position = _quoted(rest, position)
            assert pending, f"a value without a parameter in {line!r}"
            pipeline[-1][1][pending], pending = value, ""
            continue
        match = _WORD.match(rest, position)
        assert match is not None, f"not something the renderer writes: {rest[position:]!r} in {line!r}"
        token, position = match.group(1), match.end()
        if token == "|":
            next_name, _, rest = rest[position:].strip().partition(" ")
            pipeline.append((next_name, {}))
            position, pending = 0, ""
        elif token.startswith("-") and not token[1:].isdigit():
            pending = token[1:].rstrip(":")
            pipeline[-1][1][pending] = SWITCH  # until a value follows
        else:
            assert pending, f"a value without a parameter in {line!r}"
            pipeline[-1][1][pending], pending = _value(token, typed_password), ""
    return pipeline


def _quoted(text: str, start: int) -> tuple[str, int]:
    """A single-quoted string from `start`: a quote character doubled stands for the second one (PowerShell's
    tokenizer), a single one ends it."""
    out, position = [], start + 1
    while position < len(text):
        char = text[position]
        if char in QUOTES:
            if position + 1 < len(text) and text[position + 1] in QUOTES:
                out.append(text[position + 1])
                position += 2
                continue
            return "".join(out), position + 1
        out.append(char)
        position += 1
    raise AssertionError(f"an unterminated string in {text!r}")


def _value(token: str, typed_password: str) -> Any:
    if token == PROMPT:
        return Secret(typed_password)
    if token in ("$true", "$false"):
        return token == "$true"
    return int(token)
