"""Command line: `python -m hypervsim serve ...` for one host, `python -m hypervsim lab ...` for several.

Each started host is announced as one JSON line on stdout; the process then serves until it is terminated.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from hypervsim import DEFAULT_PASSWORD, DEFAULT_USER, SimHost, Strictness, scenarios, start_host, start_lab
from hypervsim.capture import Capture
from hypervsim.logon import Delegation
from hypervsim.model import EDITIONS
from hypervsim.server import default_idle_timeout

SHARE_ACCOUNT = "vmshare"  # the local account --share makes a share readable by (as New-SmbShare -ReadAccess)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hypervsim", description="Simulated Hyper-V hosts over WinRM.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="one host")
    serve.add_argument("--name", default=None, help="the host's name (default: HV01, or the captured host's)")
    serve.add_argument("--state", required=True, type=Path, help="state directory (kept across restarts)")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--scenario", default="healthy")
    serve.add_argument(
        "--capture",
        type=Path,
        metavar="FILE",
        help="answer every command as the host of this capture did (manage.py capture_host writes one)",
    )
    lab = commands.add_parser("lab", help="several hosts sharing one lab share")
    lab.add_argument("--dir", required=True, type=Path)
    lab.add_argument("--hosts", type=int, default=2)
    lab.add_argument("--first", type=int, default=1, help="number of the first host (HV05 with 5)")
    lab.add_argument("--scenario", action="extend", nargs="+", dest="scenarios", metavar="NAME")
    for sub in (serve, lab):
        sub.add_argument("--auth", choices=["negotiate", "basic"], default="negotiate")
        sub.add_argument("--https", action="store_true")
        sub.add_argument("--user", default=DEFAULT_USER)
        sub.add_argument("--password", default=DEFAULT_PASSWORD)
        sub.add_argument("--log-level", default="WARNING")
        sub.add_argument(
            "--configuration",
            action="append",
            dest="configurations",
            metavar="NAME",
            help="a registered session configuration (repeatable); without it any name opens",
        )
        sub.add_argument(
            "--strict",
            type=Strictness.default().amended,
            default=None,
            metavar="SPEC",
            help=f"where to be as strict as Windows: all, none or switches ({', '.join(Strictness.names())}), "
            "comma-separated, '-' before one turns it off; applied over the defaults",
        )
        sub.add_argument("--domain", help="join the host(s) to this domain (default: a workgroup)")
        sub.add_argument(
            "--migration-authentication",
            choices=["CredSSP", "Kerberos"],
            help="VirtualMachineMigrationAuthenticationType (Hyper-V's default: CredSSP)",
        )
        sub.add_argument(
            "--credssp-server", action="store_true", help="the WinRM service accepts delegated credentials"
        )
        sub.add_argument(
            "--keytab",
            type=Path,
            metavar="FILE",
            help="accept Kerberos with the service keys in this keytab (host/, HTTP/ or WSMAN/<name> as clients name "
            "the host; the realm's krb5.conf comes from KRB5_CONFIG), besides NTLM",
        )
        sub.add_argument(
            "--delegate-to",
            action="append",
            metavar="SPN",
            help="the domain lets the host delegate a Kerberos logon to this service (msDS-AllowedToDelegateTo, "
            "e.g. 'Microsoft Virtual System Migration Service/HV02' or 'cifs/LAB'); repeatable",
        )
        sub.add_argument(
            "--delegate-any-protocol",
            action="store_true",
            help="with --delegate-to: protocol transition (TrustedToAuthForDelegation), so a ticket that is not "
            "forwardable is delegated too",
        )
        sub.add_argument(
            "--share",
            action="append",
            dest="shares",
            default=[],
            metavar="NAME=FOLDER",
            help=f"share a local folder on each host, readable by its local account '{SHARE_ACCOUNT}' (repeatable); "
            "the announcement gives the account and its password",
        )
        sub.add_argument(
            "--edition",
            choices=sorted(EDITIONS),
            default=None,
            help="the Windows edition the host presents: server (Windows Server 2022, a new host's default) or "
            "client (Windows 11 Pro, ProductType 1)",
        )
        sub.add_argument(
            "--idle-timeout",
            type=float,
            default=default_idle_timeout(),
            metavar="SECONDS",
            help="close a keep-alive connection idle this long (HTTP.sys: 120)",
        )
    return parser


def _start(args: argparse.Namespace) -> list[SimHost]:
    credentials = {"auth": args.auth, "https": args.https, "user": args.user, "password": args.password}
    credentials["configurations"] = tuple(args.configurations) if args.configurations else None
    credentials |= {"strict": args.strict, "idle_timeout": args.idle_timeout, "edition": args.edition}
    credentials["keytab"] = args.keytab
    if args.command == "serve":
        capture = Capture.load(args.capture) if args.capture else None
        name = args.name or (capture.host if capture else "HV01")
        hosts = [start_host(name, args.state, args.scenario, port=args.port, capture=capture, **credentials)]
    else:
        hosts = start_lab(args.dir, args.hosts, args.scenarios, first=args.first, **credentials).hosts
    for host in hosts:
        _second_hop_facts(host, args)
        _share_folders(host, args.shares)
    return hosts


def _share_folders(host: SimHost, specs: list[str]) -> None:
    """New-SmbShare on the host for each NAME=FOLDER, readable by its local account SHARE_ACCOUNT; a share it already
    has (a restarted lab) keeps its password."""
    with host.model.changing() as model:
        for spec in specs:
            name, _, folder = spec.partition("=")
            if not name or not folder:
                raise ValueError(f"--share wants NAME=FOLDER, not {spec!r}")
            if name.casefold() not in model.shares:
                model.share_folder(name, folder, {SHARE_ACCOUNT: secrets.token_urlsafe(12)})


def _second_hop_facts(host: SimHost, args: argparse.Namespace) -> None:
    """Domain membership, migration authentication, the CredSSP role and delegation, where the command line sets
    them."""
    with host.model.changing() as model:
        if args.domain is not None:
            model.domain = args.domain or None
        if args.migration_authentication:
            model.migration_authentication = args.migration_authentication
        if args.credssp_server:
            model.credssp_server = True
        if args.delegate_to:
            model.delegation = Delegation(tuple(args.delegate_to), args.delegate_any_protocol)


def _announcement(host: SimHost) -> dict[str, Any]:
    """The host's JSON line. A reinstalled host's lost guardian gets its backup written to the lab share first (as an
    admin would have exported it), so a demo can show the restore; the line says where and with which password."""
    line = host.announcement()
    shares = [
        {"path": f"\\\\{host.name}\\{share.name}", "account": f"{host.name}\\{user}", "password": password}
        for share in host.model.shares.values()
        for user, password in share.accounts.items()
    ]
    line |= {"shares": shares} if shares else {}
    if scenarios.has_previous_guardian(host) and host.model.lab is not None:
        directory = host.model.lab.share / "backup" / host.name
        scenarios.backup_files(host, directory)
        line |= {"backup_dir": str(directory), "backup_password": scenarios.BACKUP_PASSWORD}
    return line


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        hosts = _start(args)
    except (ValueError, KeyError, OSError) as exc:
        print(f"hypervsim: {exc}", file=sys.stderr)
        return 2
    for host in hosts:
        print(json.dumps(_announcement(host)), flush=True)
    stop.wait()
    for host in hosts:
        host.stop()
    return 0
