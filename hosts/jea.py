"""Just Enough Administration for a host: the role capability (.psrc) exposing exactly the cmdlets the console can
send, the session configuration (.pssc) that gives them to the console's account, and the PowerShell that installs
and registers them. Shown on the prepare page; the host then names the endpoint in its `configuration_name`.

The console sends only commands with parameters (never script text), so a RestrictedRemoteServer session in
NoLanguage mode is enough. JEA shows a command only under the field of its own command type: the HgsClient module's
commands are functions (its FunctionsToExport), so they go under VisibleFunctions, the rest under VisibleCmdlets.

Everything interpolated here is either a catalog cmdlet name or a name the caller has checked against a strict
pattern, so nothing a user typed can become PowerShell.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

ENDPOINT_NAME = "GuardianConsole"  # the suggested session configuration name (and role capability name)
MODULE_DIR = r"C:\Program Files\WindowsPowerShell\Modules\GuardianConsole"  # where JEA looks for RoleCapabilities
CONFIG_DIR = r"C:\ProgramData\GuardianConsole"
# The catalog reads the certificate store (Cert:\LocalMachine\Shielded VM Local Certificates) and moves PFX files
# through C:\Windows\Temp; JEA hides every provider that is not listed.
VISIBLE_PROVIDERS = ("Certificate", "FileSystem")
SAFE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\\@-]{0,127}")
CMDLET_NAME = re.compile(r"[A-Za-z]+-[A-Za-z0-9]+")
# Every HgsClient command has a noun starting with "Hgs" (Get-HgsGuardian, ConvertTo-HgsKeyProtector, ...), every
# SmbShare one with "Smb" (Get-SmbShare, a CDXML function), and no other command the console sends has one.
FUNCTION_NOUN = re.compile(r"-(Hgs|Smb)", flags=re.IGNORECASE)
# Stable GUIDs, so the files are the same every time the page is rendered for the same endpoint.
GUID_NAMESPACE = uuid.UUID("6b0f4f2e-6d39-4c55-9a3b-7c1c2d0e9f11")


def is_module_function(command: str) -> bool:
    """Whether the command comes from the HgsClient or SmbShare module, whose commands are functions, not cmdlets."""
    return bool(FUNCTION_NOUN.search(command))


def quoted_list(values: list[str] | tuple[str, ...]) -> str:
    """A PowerShell data-file array of single-quoted strings (the values are checked names: no quote inside)."""
    return ", ".join(f"'{value}'" for value in values)


@dataclass(frozen=True)
class JeaEndpoint:
    """One JEA endpoint for the console: its name, the account allowed in, and the commands it may run (cmdlets
    and functions alike; the role capability files each under its own field)."""

    name: str
    account: str
    cmdlets: tuple[str, ...]

    def __post_init__(self) -> None:
        # Defence in depth: the callers validate too, but these strings end up in files an admin executes.
        for word in (self.name, self.account):
            if not SAFE_WORD.fullmatch(word):
                raise ValueError(f"not a safe name for a JEA file: {word!r}")
        for cmdlet in self.cmdlets:
            if not CMDLET_NAME.fullmatch(cmdlet):
                raise ValueError(f"not a cmdlet name: {cmdlet!r}")

    @property
    def visible_cmdlets(self) -> tuple[str, ...]:
        return tuple(c for c in self.cmdlets if not is_module_function(c))

    @property
    def visible_functions(self) -> tuple[str, ...]:
        return tuple(c for c in self.cmdlets if is_module_function(c))

    @property
    def role_capability_path(self) -> str:
        return rf"{MODULE_DIR}\RoleCapabilities\{ENDPOINT_NAME}.psrc"

    @property
    def session_configuration_path(self) -> str:
        return rf"{CONFIG_DIR}\{self.name}.pssc"

    def role_capability(self) -> str:
        """The .psrc: exactly the catalog's commands, each under its command type's field, and the two providers
        they need."""
        return "\n".join(
            [
                "@{",
                f"GUID = '{uuid.uuid5(GUID_NAMESPACE, 'psrc:' + ENDPOINT_NAME)}'",
                "Author = 'Guardian Console'",
                "Description = 'The cmdlets the Guardian Console sends: inventory, guardians, key protectors, VMs.'",
                f"VisibleCmdlets = {quoted_list(self.visible_cmdlets)}",
                f"VisibleFunctions = {quoted_list(self.visible_functions)}",
                f"VisibleProviders = {quoted_list(VISIBLE_PROVIDERS)}",
                "}",
            ]
        )

    def session_configuration(self) -> str:
        """The .pssc: NoLanguage session run as a virtual (local administrator) account, for the console's account."""
        return "\n".join(
            [
                "@{",
                "SchemaVersion = '2.0.0.0'",
                f"GUID = '{uuid.uuid5(GUID_NAMESPACE, 'pssc:' + self.name)}'",
                "Author = 'Guardian Console'",
                "SessionType = 'RestrictedRemoteServer'",
                "RunAsVirtualAccount = $true",
                f"TranscriptDirectory = '{CONFIG_DIR}\\Transcripts'",
                f"RoleDefinitions = @{{ '{self.account}' = @{{ RoleCapabilities = '{ENDPOINT_NAME}' }} }}",
                "}",
            ]
        )

    def register_command(self) -> str:
        return f"Register-PSSessionConfiguration -Name '{self.name}' -Path '{self.session_configuration_path}' -Force"

    def setup_script(self) -> str:
        """What the admin pastes into an elevated Windows PowerShell: write both files, check, register."""
        return "\n".join(
            [
                f"New-Item -ItemType Directory -Force -Path '{MODULE_DIR}\\RoleCapabilities', '{CONFIG_DIR}'"
                " | Out-Null",
                f"New-ModuleManifest -Path '{MODULE_DIR}\\{ENDPOINT_NAME}.psd1'"
                " -Description 'Guardian Console JEA role'",
                "@'",
                self.role_capability(),
                f"'@ | Set-Content -Path '{self.role_capability_path}' -Encoding UTF8",
                "@'",
                self.session_configuration(),
                f"'@ | Set-Content -Path '{self.session_configuration_path}' -Encoding UTF8",
                f"Test-PSSessionConfigurationFile -Path '{self.session_configuration_path}'   # must print True",
                self.register_command(),
            ]
        )


def visible_cmdlets(role_capability: str) -> set[str]:
    """The VisibleCmdlets of a .psrc text (for checks: with its functions, exactly what the catalog can send)."""
    return _visible(role_capability, "VisibleCmdlets")


def visible_functions(role_capability: str) -> set[str]:
    """The VisibleFunctions of a .psrc text."""
    return _visible(role_capability, "VisibleFunctions")


def visible_commands(role_capability: str) -> set[str]:
    """Every command a .psrc text makes visible, cmdlet or function."""
    return visible_cmdlets(role_capability) | visible_functions(role_capability)


def _visible(role_capability: str, field: str) -> set[str]:
    match = re.search(rf"^{field} = (.*)$", role_capability, flags=re.MULTILINE)
    return set(re.findall(r"'([^']*)'", match.group(1))) if match else set()
