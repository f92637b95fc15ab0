"""Catalog: local guardians (HgsClient), the `Shielded VM Local Certificates` store, and the PFX files that carry a
guardian's private keys to and from a host.

Every operation is cmdlets with parameter values only. PFX passwords are `Secret`s (sent as SecureString, rendered
as a placeholder). Temporary PFX files live under C:\\Windows\\Temp with random names; workflows always remove them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from ..operation import SWITCH, Cmd, Operation, PipelineResult, Secret
from ..psobjects import byte_string, flag, prop, text, timestamp
from .inventory import GuardianFacts, read_guardian

STORE_PATH = "Cert:\\LocalMachine\\Shielded VM Local Certificates"
TEMP_DIR = "C:\\Windows\\Temp"
NOT_FOUND_HINTS = ("notfound", "not found", "does not exist", "cannot find", "pathnotfound", "objectnotfound")


def certificate_path(thumbprint: str) -> str:
    return f"{STORE_PATH}\\{thumbprint}"


def is_not_found(error: Any) -> bool:
    blob = f"{getattr(error, 'fqid', '')} {getattr(error, 'category', '')} {getattr(error, 'message', '')}".lower()
    return any(hint in blob for hint in NOT_FOUND_HINTS)


def raise_unless_not_found(result: PipelineResult) -> None:
    """For operations where "already gone" is success: raise the first error that is not a not-found."""
    real = [e for e in result.errors if not is_not_found(e)]
    if real:
        raise real[0]


def guardian_facts(obj: Any) -> GuardianFacts:
    facts = read_guardian(obj)
    facts.signing_thumbprint = facts.signing_thumbprint.upper()
    facts.encryption_thumbprint = facts.encryption_thumbprint.upper()
    return facts


def thumbprints_of(guardian: GuardianFacts) -> tuple[str, str]:
    return guardian.signing_thumbprint, guardian.encryption_thumbprint


@dataclass
class GetGuardians(Operation[list[GuardianFacts]]):
    """Every guardian of the host (`Get-HgsGuardian`)."""

    name: ClassVar[str] = "get_guardians"
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-HgsGuardian",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Get-HgsGuardian")]]

    def parse(self, result: PipelineResult) -> list[GuardianFacts]:
        return [guardian_facts(obj) for obj in result.output if obj is not None]


@dataclass
class NewGuardianByThumbprints(Operation[GuardianFacts]):
    """Create a guardian from two certificates already in the store (no files, no password on the wire)."""

    guardian_name: str
    signing_thumbprint: str
    encryption_thumbprint: str
    allow_expired: bool = True
    allow_untrusted_root: bool = True
    name: ClassVar[str] = "new_guardian_by_thumbprints"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("New-HgsGuardian",)

    def statements(self) -> list[list[Cmd]]:
        params: dict[str, Any] = {
            "Name": self.guardian_name,
            "SigningCertificateThumbprint": self.signing_thumbprint,
            "EncryptionCertificateThumbprint": self.encryption_thumbprint,
        }
        if self.allow_expired:
            params["AllowExpired"] = SWITCH
        if self.allow_untrusted_root:
            params["AllowUntrustedRoot"] = SWITCH
        return [[Cmd("New-HgsGuardian", params)]]

    def parse(self, result: PipelineResult) -> GuardianFacts:
        made = [guardian_facts(obj) for obj in result.output if obj is not None]
        if made:
            return made[0]
        return GuardianFacts(self.guardian_name, False, self.signing_thumbprint, self.encryption_thumbprint)


@dataclass
class RemoveGuardian(Operation[None]):
    """Remove a guardian entry; its certificates stay in the store (so it can be re-created by thumbprints)."""

    guardian_name: str
    name: ClassVar[str] = "remove_guardian"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Remove-HgsGuardian",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Remove-HgsGuardian", {"Name": self.guardian_name})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class ExportGuardian(Operation[None]):
    """Write a guardian's public metadata (XML, no private key) to a file on the host.

    `Export-HgsGuardian` has no -Name (only -InputObject, from the pipeline, and -Path): the guardian is piped in from
    `Get-HgsGuardian -Name`, as Microsoft's HgsClient reference shows."""

    guardian_name: str
    path: str
    name: ClassVar[str] = "export_guardian"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-HgsGuardian", "Export-HgsGuardian")

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Get-HgsGuardian", {"Name": self.guardian_name}), Cmd("Export-HgsGuardian", {"Path": self.path})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class ImportGuardianMetadata(Operation[GuardianFacts | None]):
    """Create a guardian from another host's public metadata file (`Import-HgsGuardian`)."""

    path: str
    guardian_name: str
    allow_expired: bool = True
    allow_untrusted_root: bool = True
    name: ClassVar[str] = "import_guardian_metadata"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Import-HgsGuardian",)

    def statements(self) -> list[list[Cmd]]:
        params: dict[str, Any] = {"Path": self.path, "Name": self.guardian_name}
        if self.allow_expired:
            params["AllowExpired"] = SWITCH
        if self.allow_untrusted_root:
            params["AllowUntrustedRoot"] = SWITCH
        return [[Cmd("Import-HgsGuardian", params)]]

    def parse(self, result: PipelineResult) -> GuardianFacts | None:
        made = [guardian_facts(obj) for obj in result.output if obj is not None]
        return made[0] if made else None


# -- the certificate store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreCertificate:
    thumbprint: str
    subject: str
    not_before: datetime | None
    not_after: datetime | None
    has_private_key: bool


@dataclass
class StoreListing:
    exists: bool
    certificates: list[StoreCertificate] = field(default_factory=list)

    def find(self, thumbprint: str) -> StoreCertificate | None:
        return next((c for c in self.certificates if c.thumbprint == thumbprint.upper()), None)


def store_certificate(obj: Any) -> StoreCertificate:
    return StoreCertificate(
        thumbprint=text(prop(obj, "Thumbprint")).upper(),
        subject=text(prop(obj, "Subject")),
        not_before=timestamp(prop(obj, "NotBefore")),
        not_after=timestamp(prop(obj, "NotAfter")),
        has_private_key=flag(prop(obj, "HasPrivateKey")),
    )


@dataclass
class ListShieldedCertificates(Operation[StoreListing]):
    """The certificates in `Shielded VM Local Certificates`; `exists` is False on a host that never had a vTPM.

    Test-Path first, so a missing store is an answer rather than an error record in the job's log.
    """

    name: ClassVar[str] = "list_shielded_certificates"
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Test-Path", "Get-ChildItem")

    def statements(self) -> list[list[Cmd]]:
        return [
            [Cmd("Test-Path", {"LiteralPath": STORE_PATH})],
            [Cmd("Get-ChildItem", {"Path": STORE_PATH, "ErrorAction": "SilentlyContinue"})],
        ]

    def parse(self, result: PipelineResult) -> StoreListing:
        if result.errors and not all(is_not_found(e) for e in result.errors):
            raise result.errors[0]
        answers = [o for o in result.output if isinstance(o, bool)]
        exists = answers[0] if answers else not result.errors
        certificates = [store_certificate(o) for o in result.output if prop(o, "Thumbprint")]
        return StoreListing(exists or bool(certificates), certificates)


@dataclass
class CreateShieldedStore(Operation[None]):
    """Create the store, as Windows does on the first vTPM; importing before it exists lands in the wrong store."""

    name: ClassVar[str] = "create_shielded_store"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("New-Item",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("New-Item", {"Path": STORE_PATH})]]

    def parse(self, result: PipelineResult) -> None:
        return None


# -- PFX files on the host ---------------------------------------------------------------------------------------


@dataclass
class ExportPfx(Operation[None]):
    """Export one certificate of the store, with its private key, to a PFX file on the host."""

    thumbprint: str
    path: str
    password: Secret
    name: ClassVar[str] = "export_pfx"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Export-PfxCertificate",)

    def statements(self) -> list[list[Cmd]]:
        params = {"Cert": certificate_path(self.thumbprint), "FilePath": self.path, "Password": self.password}
        return [[Cmd("Export-PfxCertificate", params)]]

    def parse(self, result: PipelineResult) -> None:
        return None

    def __repr__(self) -> str:
        return f"ExportPfx({self.thumbprint!r}, {self.path!r}, password=********)"


@dataclass
class ImportPfx(Operation[str]):
    """Import a PFX file on the host into the shielded store. The private keys are not exportable unless
    `exportable` (an admin's choice): whoever administers the host could otherwise export them and walk away."""

    path: str
    password: Secret
    exportable: bool = False
    name: ClassVar[str] = "import_pfx"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Import-PfxCertificate",)

    def statements(self) -> list[list[Cmd]]:
        params = {"FilePath": self.path, "CertStoreLocation": STORE_PATH, "Password": self.password}
        if self.exportable:
            params["Exportable"] = SWITCH  # type: ignore[assignment]
        return [[Cmd("Import-PfxCertificate", params)]]

    def parse(self, result: PipelineResult) -> str:
        """The imported certificate's thumbprint ('' when the host did not say)."""
        return next((text(prop(o, "Thumbprint")).upper() for o in result.output if prop(o, "Thumbprint")), "")

    def __repr__(self) -> str:
        return f"ImportPfx({self.path!r}, password=********, exportable={self.exportable})"


@dataclass
class ReadFileBytes(Operation[bytes]):
    """The bytes of a file on the host (Windows PowerShell 5.1 syntax: -Encoding Byte -Raw)."""

    path: str
    name: ClassVar[str] = "read_file_bytes"
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-Content",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Get-Content", {"LiteralPath": self.path, "Encoding": "Byte", "Raw": SWITCH})]]

    def parse(self, result: PipelineResult) -> bytes:
        chunks = [byte_string(o) for o in result.output]
        if not any(chunks) and result.output and all(isinstance(o, int) for o in result.output):
            return bytes(result.output)  # without -Raw, PowerShell streams one byte per object
        return b"".join(chunks)


@dataclass
class WriteFileBytes(Operation[None]):
    """Write bytes to a file on the host (Set-Content -Encoding Byte). The log shows the size, not the bytes."""

    path: str
    data: bytes
    name: ClassVar[str] = "write_file_bytes"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Set-Content",)

    def statements(self) -> list[list[Cmd]]:
        # -Path, not -LiteralPath: the console makes these names itself (no wildcard characters in them).
        return [[Cmd("Set-Content", {"Path": self.path, "Value": self.data, "Encoding": "Byte"})]]

    def parse(self, result: PipelineResult) -> None:
        return None

    def __repr__(self) -> str:
        return f"WriteFileBytes({self.path!r}, <{len(self.data)} bytes>)"


@dataclass
class RemoveFiles(Operation[list[str]]):
    """Delete files on the host; a file that is already gone is fine. Returns the paths that could not be removed."""

    paths: list[str]
    name: ClassVar[str] = "remove_files"
    read_only: ClassVar[bool] = False
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Remove-Item",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Remove-Item", {"LiteralPath": path, "Force": SWITCH})] for path in self.paths]

    def parse(self, result: PipelineResult) -> list[str]:
        return [e.target or str(e) for e in result.errors if not is_not_found(e)]


ALL_OPERATIONS = (
    GetGuardians,
    NewGuardianByThumbprints,
    RemoveGuardian,
    ExportGuardian,
    ImportGuardianMetadata,
    ListShieldedCertificates,
    CreateShieldedStore,
    ExportPfx,
    ImportPfx,
    ReadFileBytes,
    WriteFileBytes,
    RemoveFiles,
)
