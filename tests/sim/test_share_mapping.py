"""A share reached with explicit credentials (docs/fidelity.md): from a session that cannot pass its own credentials
on (NTLM, the second hop), a share of another host answers only once the session maps it with the share's own
account (New-PSDrive -Credential); wrong credentials, a share that is not there and one that goes away in the middle
of a copy fail with Windows' texts; the mapping belongs to the session and goes with Remove-PSDrive."""

from __future__ import annotations

import pytest

from hypervsim import logon
from hypervsim.logon import Logon
from hypervsim.model import HostModel
from hypervsim.types import Credential, Secret
from tests.sim.test_cmdlets import error, lab, make_host, out  # noqa: F401 - fixtures

SHARE = r"\\HV01\VMExports"
FOLDER = r"D:\VMExports"
ACCOUNT, PASSWORD = r"HV01\vmshare", "Share-Pa55!"


def ntlm() -> Logon:
    return Logon(logon.NTLM, "labadmin")  # a fresh session: no drives


@pytest.fixture
def pair(make_host) -> tuple[HostModel, HostModel]:  # noqa: F811 - the fixture imported above
    source, target = make_host("healthy", "HV01"), make_host("fresh", "HV02")
    source.share_folder("VMExports", FOLDER, {ACCOUNT: PASSWORD})
    source.write_file(rf"{FOLDER}\out\Win11-B\disk.vhdx", b"disk")
    source.write_file(rf"{FOLDER}\out\Win11-B\Virtual Machines\A.vmcx", b"config")
    return source, target


def mapped(target: HostModel, user: str = ACCOUNT, password: str = PASSWORD, root: str = SHARE) -> list:
    return out(target, "New-PSDrive", Name="gcx", PSProvider="FileSystem", Root=root,
               Credential=Credential(user, Secret(password)), Scope="Global")  # fmt: skip


def test_an_ntlm_session_reaches_a_share_only_through_a_mapping_with_its_account(pair):
    source, target = pair
    with logon.impersonating(ntlm()):
        assert out(target, "Test-Path", Path=rf"{SHARE}\out") == [False]  # the second hop
        assert "Access to the path" in error(target, "Get-ChildItem", Path=SHARE).message
        (drive,) = mapped(target)
        assert drive.Name == "gcx" and drive.Root == SHARE
        assert out(target, "Test-Path", Path=rf"{SHARE}\out") == [True]  # the connection serves the UNC path too
        out(target, "Copy-Item", LiteralPath=r"gcx:\out\Win11-B", Destination=r"C:\Incoming\Win11-B", Recurse=None)
        copied = target.files.snapshot(r"C:\Incoming")
        assert copied == {r"C:\Incoming\Win11-B\disk.vhdx": b"disk",
                          r"C:\Incoming\Win11-B\Virtual Machines\A.vmcx": b"config"}  # fmt: skip
        out(target, "Remove-PSDrive", Name="gcx", Scope="Global", Force=None)
        assert out(target, "Test-Path", Path=rf"{SHARE}\out") == [False]
        assert error(target, "Remove-PSDrive", Name="gcx").fqid.startswith("DriveNotFound,")
    with logon.impersonating(ntlm()):  # another session never saw the mapping
        assert "Cannot find drive" in error(target, "Get-ChildItem", Path=r"gcx:\out").message


@pytest.mark.parametrize(
    ("user", "password", "root", "message"),
    [
        (ACCOUNT, "wrong", SHARE, "The user name or password is incorrect."),
        (r"HV02\vmshare", PASSWORD, SHARE, "The user name or password is incorrect."),
        (ACCOUNT, PASSWORD, r"\\HV01\Nothing", "The network name cannot be found."),
        (ACCOUNT, PASSWORD, r"\\HV09\VMExports", "The network path was not found."),
    ],
    ids=["wrong-password", "another-hosts-account", "no-such-share", "no-such-host"],
)
def test_a_mapping_windows_refuses_fails_with_its_text_and_maps_nothing(pair, user, password, root, message):
    _, target = pair
    session = ntlm()
    with logon.impersonating(session):
        refused = error(target, "New-PSDrive", Name="gcx", PSProvider="FileSystem", Root=root,
                        Credential=Credential(user, Secret(password)))  # fmt: skip
        assert refused.message == message and refused.fqid.startswith("CouldNotMapNetworkDrive,")
        assert password not in repr(refused.__dict__)
        assert session.drives == {}


@pytest.mark.parametrize("user", [ACCOUNT, r".\vmshare", "vmshare", r"hv01\VMSHARE"])
def test_the_shares_account_is_accepted_as_administrators_type_it(pair, user):
    _, target = pair
    with logon.impersonating(ntlm()):
        mapped(target, user=user)


def test_a_share_that_goes_away_in_the_middle_of_a_copy_fails_it_there(pair):
    source, target = pair
    with logon.impersonating(ntlm()):
        mapped(target)
        source.shares["vmexports"].vanishes_after = 2  # the folder and one file open, then the share is gone
        failed = error(target, "Copy-Item", LiteralPath=r"gcx:\out\Win11-B", Destination=r"C:\In", Recurse=None)
        assert failed.message == "The specified network name is no longer available."
        assert len(target.files.snapshot(r"C:\In")) == 1  # half copied
        assert out(target, "Test-Path", Path=SHARE) == [False]


def test_get_smb_share_names_the_folder_behind_a_share(pair):
    source, _ = pair
    (share,) = out(source, "Get-SmbShare", Name="vmexports")
    assert share.Name == "VMExports" and share.Path == FOLDER
    missing = error(source, "Get-SmbShare", Name="Nothing")
    assert missing.fqid == "CmdletizationQuery_NotFound_Name,Get-SmbShare" and "MSFT_SmbShare" in missing.message


def test_a_share_survives_a_restart_of_its_host(pair, tmp_path):
    source, _ = pair
    source.save()
    again = HostModel.load_or_create(source.state_dir, "HV01")
    assert again.shares["vmexports"].path == FOLDER and again.shares["vmexports"].accepts("HV01", "vmshare", PASSWORD)


def test_copy_item_takes_no_credentials_of_its_own(pair):
    """The reason the console maps a drive: the FileSystem provider takes credentials only through New-PSDrive."""
    _, target = pair
    with logon.impersonating(ntlm()):
        refused = error(target, "Copy-Item", LiteralPath=rf"{SHARE}\out", Destination=r"C:\In", Recurse=None,
                        Credential=Credential(ACCOUNT, Secret(PASSWORD)))  # fmt: skip
        assert refused.message.startswith("The provider does not support the use of credentials.")


@pytest.mark.parametrize(
    ("session", "without_mapping"),
    [
        (Logon(logon.NTLM, "labadmin"), False),
        (Logon(logon.BASIC, "labadmin"), False),
        (Logon(logon.KERBEROS, "labadmin@LAB.TEST"), False),
        (Logon(logon.KERBEROS, "labadmin@LAB.TEST", frozenset({logon.SHARE_SERVICE})), True),
        (Logon(logon.CREDSSP, "LAB\\labadmin"), True),
    ],
    ids=["ntlm", "basic", "kerberos", "kerberos-delegated-to-cifs", "credssp"],
)
def test_every_session_kind_reaches_a_share_mapped_with_its_account(pair, session, without_mapping):
    """The share's own account works whatever the session: it is not a second hop. Only a logon that can delegate
    reaches the share on its own credentials."""
    _, target = pair
    with logon.impersonating(session):
        assert out(target, "Test-Path", Path=rf"{SHARE}\out") == [without_mapping]
        mapped(target)
        assert out(target, "Test-Path", Path=r"gcx:\out\Win11-B\disk.vhdx") == [True]
        out(target, "Remove-PSDrive", Name="gcx")
