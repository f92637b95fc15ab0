"""JEA endpoints on a simulated host: what a role capability (.psrc) makes visible in a restricted session.

A role lists cmdlets under VisibleCmdlets and functions under VisibleFunctions; Windows shows a command only under
the field of its own command type ("JEA Role Capabilities", Microsoft Learn), and a RestrictedRemoteServer session
always has a few default commands ("JEA Session Configurations"), of which the simulator implements Select-Object
and Get-Command. A host without the `hgs_functions` strictness accepts a command under either field, as the
simulator did before it knew the HgsClient commands are functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ALWAYS_VISIBLE = ("Select-Object", "Get-Command")  # RestrictedRemoteServer's defaults the simulator implements
RoleSpec = Iterable[str] | Mapping[str, Iterable[str]]


@dataclass(frozen=True)
class Role:
    """Visible command names of one endpoint's role capability, casefolded."""

    cmdlets: frozenset[str]
    functions: frozenset[str]

    @classmethod
    def of(cls, spec: RoleSpec) -> Role:
        """A list is VisibleCmdlets (as the console's .psrc has it); a mapping may carry both fields."""
        if isinstance(spec, Mapping):
            cmdlets, functions = spec.get("VisibleCmdlets", ()), spec.get("VisibleFunctions", ())
        else:
            cmdlets, functions = spec, ()
        return cls(_folded(cmdlets), _folded(functions))

    def exposes(self, command: str, command_type: str, by_type: bool) -> bool:
        """Whether the command is visible; by_type: only under the field of its own command type, as on Windows."""
        name = command.casefold()
        if name in _ALWAYS:
            return True
        if not by_type:
            return name in self.cmdlets or name in self.functions
        return name in (self.functions if command_type == "Function" else self.cmdlets)


def _folded(names: Iterable[str]) -> frozenset[str]:
    return frozenset(n.casefold() for n in ([names] if isinstance(names, str) else names))


_ALWAYS = _folded(ALWAYS_VISIBLE)
