"""PowerShell wildcard patterns (about_Wildcards): `*`, `?`, `[abc]`, `[a-c]`, and the backtick that makes the next
character literal. Matching ignores case, as Hyper-V's name parameters do.
"""

from __future__ import annotations

import re

from hypervsim.cmdlets import CmdletError

WILDCARD_CHARACTERS = "*?[]"  # WildcardPattern.ContainsWildcardCharacters looks for these, skipping escaped ones
ESCAPE = "`"
WILDCARD_EXCEPTION = [
    "System.Management.Automation.WildcardPatternException",
    "System.Management.Automation.RuntimeException",
    "System.SystemException",
    "System.Exception",
]


def has_wildcards(pattern: str) -> bool:
    """Whether the text has an unescaped wildcard character, i.e. is a pattern rather than a name."""
    index = 0
    while index < len(pattern):
        if pattern[index] == ESCAPE:
            index += 2
            continue
        if pattern[index] in WILDCARD_CHARACTERS:
            return True
        index += 1
    return False


def unescaped(pattern: str) -> str:
    """The literal text a pattern without wildcards stands for (backticks removed)."""
    return re.sub(r"`(.)", r"\1", pattern, flags=re.DOTALL)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The pattern as a regular expression matching whole names; CmdletError when a bracket is never closed."""
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == ESCAPE and index + 1 < len(pattern):
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        if char == "[":
            end = _closing_bracket(pattern, index)
            parts.append(_character_class(pattern[index + 1 : end]))
            index = end + 1
            continue
        parts.append({"*": ".*", "?": "."}.get(char) or re.escape(char))
        index += 1
    return re.compile("".join(parts) + r"\Z", re.IGNORECASE | re.DOTALL)


def _closing_bracket(pattern: str, start: int) -> int:
    index = start + 1
    while index < len(pattern):
        if pattern[index] == ESCAPE:
            index += 2
            continue
        if pattern[index] == "]":
            return index
        index += 1
    raise CmdletError(
        f"The specified wildcard character pattern is not valid: {pattern}",
        "RuntimeException",
        "InvalidArgument",
        WILDCARD_EXCEPTION,
        pattern,
    )


def _character_class(body: str) -> str:
    """`[a-c_x]`: single characters and ranges; a backtick makes the next character literal."""
    items: list[str] = []
    chars = list(re.finditer(r"`(.)|(.)", body, flags=re.DOTALL))
    literal = [m.group(1) or m.group(2) for m in chars]
    index = 0
    while index < len(literal):
        is_range = index + 2 < len(literal) and literal[index + 1] == "-" and chars[index + 1].group(2) == "-"
        if is_range:
            items.append(f"{re.escape(literal[index])}-{re.escape(literal[index + 2])}")
            index += 3
        else:
            items.append(re.escape(literal[index]))
            index += 1
    return f"[{''.join(items)}]" if items else "(?!)"
