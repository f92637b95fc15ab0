"""`make run`: the console with everything it needs on one machine, and a demo lab of simulated Hyper-V hosts.

Starts a private Redis (unless REDIS_URL is set), migrates, creates the admin user on first run (printing its
password once, to be changed at the first login), starts the simulated lab, registers its hosts, then runs daphne,
a Celery worker and Celery beat until Ctrl-C, which stops everything it started. A child that dies is started
again after a back-off that doubles with each quick death (1 s up to a minute), and the terminal says so.
It refuses to serve a database that other users of the machine can read (it holds live session keys).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from console.celery import app as celery_app
from console.datafiles import exposed_database_files, private_dir
from console.models import AuditEvent, PasswordChangeRequired
from console.roles import ADMIN, set_role
from console.settings import redis_services
from hosts.models import Host, LabShare
from jobs.inventory import INVENTORY_REFRESH
from jobs.services import create_job

# HV01 healthy, HV02 reinstalled (its VMs will not start), HV03 with deleted certificates, HV04 fresh (a target
# for the migration wizard).
DEMO_SCENARIOS = ["healthy", "reinstalled", "deleted-certs", "fresh"]
# HV05 and HV06, the other world: a pair of domain lab.test reached with CredSSP over HTTPS (the lab CA verified),
# migrations authenticated with CredSSP, the second hop as Windows has it. Live migration runs there; between the
# workgroup hosts above the wizard explains why it cannot.
DOMAIN_LAB = ["--first", "5", "--scenario", "migration", "--https", "--user", "LAB\\labadmin", "--domain", "lab.test"]
DOMAIN_LAB += ["--migration-authentication", "CredSSP", "--credssp-server", "--strict", "second_hop"]
DOMAIN_HOSTS = 2
# HV01-HV04 are a workgroup (NTLM sessions, no second hop): each host shares a folder with a local account of its
# own, which the console stores per share, so the wizard's "copy from the source's own share" works between them.
DEMO_SHARE = "VMExports=D:\\VMExports"
# The lab share is listed too: the wizard explains why the workgroup cannot export to it; the CredSSP pair can.
LAB_SHARE_PATH = "\\\\LAB\\share"
# A child that dies is started again after FIRST_BACKOFF seconds, doubling up to MAX_BACKOFF while it keeps dying
# within STABLE_SECONDS of its start (a crash loop must not spin the machine); one that ran that long starts over.
FIRST_BACKOFF, MAX_BACKOFF, STABLE_SECONDS = 1.0, 60.0, 60.0


@dataclass
class Child:
    """A process runconsole started and keeps alive: how to start it again, and its back-off."""

    name: str
    argv: list[str]
    env: dict[str, str]
    options: dict[str, Any]
    process: subprocess.Popen[Any]
    after_restart: Callable[[subprocess.Popen[Any]], object] | None = None
    started_at: float = field(default_factory=time.monotonic)
    quick_deaths: int = 0
    restart_at: float | None = None  # set while it is dead and waiting for its back-off

    def backoff(self) -> float:
        return min(MAX_BACKOFF, FIRST_BACKOFF * 2**self.quick_deaths)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, process: subprocess.Popen[Any], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"{what} exited with code {process.returncode} while starting")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise CommandError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def point_at_redis(url: str) -> None:
    """Settings were read before the private Redis existed: point this process's broker and layers at it."""
    os.environ["REDIS_URL"] = url
    settings.REDIS_URL = settings.CELERY_BROKER_URL = url
    settings.CHANNEL_LAYERS, settings.CACHES = redis_services(url, settings.REDIS_PREFIX)
    celery_app.conf.update(broker_url=url)


class Command(BaseCommand):
    help = "Start the console, a Celery worker and beat, a private Redis and a demo lab of simulated Hyper-V hosts."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=8000,
            help="HTTP port of the console (default 8000; 0 or a busy port: any free one)",
        )
        parser.add_argument("--no-lab", action="store_true", help="do not start the simulated demo lab")
        parser.add_argument(
            "--fresh-lab", action="store_true", help="forget the demo lab's state: start from the seed scenarios again"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.children: list[Child] = []
        self.backups: list[str] = []
        refuse_exposed_database()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started from a script
        try:
            if options["fresh_lab"]:
                shutil.rmtree(Path(settings.VAR_DIR) / "lab", ignore_errors=True)
            self.start(options["port"], with_lab=not options["no_lab"])
            self.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop_children()

    def start(self, port: int, with_lab: bool) -> None:
        var = private_dir(Path(settings.VAR_DIR))
        env = os.environ.copy()
        env.setdefault("CONSOLE_ENV", settings.ENV)
        env["CONSOLE_VAR_DIR"] = str(var)
        if with_lab:  # the demo lab shows automatic escrow at work: its coverage reaches 100% without a click
            env.setdefault("CONSOLE_ESCROW_POLICY", "1")
        if not os.environ.get("REDIS_URL"):
            env["REDIS_URL"] = self.start_private_redis(var)
            point_at_redis(env["REDIS_URL"])
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write(self.ensure_admin())  # at once: a later failure must not swallow a new password
        lab_hosts = self.start_lab(var, env) if with_lab else []
        if port == 0 or not port_is_free(port):
            port = free_port()
        worker = [sys.executable, "-m", "celery", "-A", "console"]
        self.spawn("worker", [*worker, "worker", "--loglevel=WARNING", "--pool=threads", "--concurrency=4"], env)
        # Beat in its own process: a beat embedded in the worker (-B) outlives a killed worker and swallows tasks.
        self.spawn("beat", [*worker, "beat", "--loglevel=WARNING", "--schedule", str(var / "celerybeat-schedule")], env)
        daphne = self.spawn(
            "daphne",
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "console.asgi:application"],
            env,
        )
        wait_for_port(port, daphne, "daphne")
        self.refresh_demo_hosts(lab_hosts)
        self.stdout.write(self.style.SUCCESS(f"\nGuardian Console is running at http://127.0.0.1:{port}/"))
        for backup in self.backups:
            self.stdout.write(backup)
        if lab_hosts:
            self.stdout.write(
                f"Demo lab: {', '.join(lab_hosts)} (simulated Hyper-V hosts; their state stays in {var / 'lab'}, "
                "`make run ARGS=--fresh-lab` starts them over)"
            )
        self.stdout.write(escrow_policy_line(env))
        self.stdout.write(f"Logs of the worker, beat, daphne, Redis and the lab: {var / 'log'}")
        self.stdout.write("Press Ctrl-C to stop everything.\n")

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        after_restart: Callable[[subprocess.Popen[Any]], object] | None = None,
        **options: Any,
    ) -> subprocess.Popen[Any]:
        """Start a child whose chatter goes to var/log/<name>.log, so the terminal shows only what matters; `wait`
        starts it again if it dies (then calls `after_restart` with the new process)."""
        child = Child(name, argv, env, options, self.launch(name, argv, env, options), after_restart)
        self.children.append(child)
        return child.process

    def launch(self, name: str, argv: list[str], env: dict[str, str], options: dict[str, Any]) -> subprocess.Popen[Any]:
        log_path = private_dir(Path(settings.VAR_DIR) / "log") / f"{name}.log"
        with open(log_path, "ab") as log:
            log_path.chmod(0o600)  # a log an older run left readable
            options = {"stdout": log, **options}
            # A session of its own: Ctrl-C reaches only this command, which then stops the children in order.
            return subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR, stderr=log, start_new_session=True, **options)

    def start_private_redis(self, var: Path) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise CommandError("REDIS_URL is not set and redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        data = private_dir(var / "redis")
        redis = self.spawn(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(data / "redis.log"),
            ],
            os.environ.copy(),
        )
        wait_for_port(port, redis, "redis-server")
        return f"redis://127.0.0.1:{port}/0"

    def ensure_admin(self) -> str:
        users = get_user_model()
        if users.objects.filter(username="admin").exists():
            return (
                "Log in as 'admin' with the password printed on the first run "
                "(forgotten? `.venv/bin/python manage.py changepassword admin`)."
            )
        password = secrets.token_urlsafe(12)
        admin = users.objects.create_superuser("admin", password=password)
        set_role(admin, ADMIN)
        PasswordChangeRequired.set_for(admin, True)  # it was printed in a terminal
        AuditEvent.record(None, "user.create", admin, role=ADMIN, via="runconsole")
        return f"Log in as 'admin' with password: {password}   (shown once; the console asks you to change it)"

    def start_lab(self, var: Path, env: dict[str, str]) -> list[str]:
        """Both worlds, each a `hypervsim lab` of its own, started together (startup waits for the slower one)."""
        lab = [sys.executable, "-m", "hypervsim", "lab"]
        workgroup = [*lab, "--dir", str(var / "lab"), "--hosts", str(len(DEMO_SCENARIOS))]
        for scenario in DEMO_SCENARIOS:
            workgroup += ["--scenario", scenario]
        workgroup += ["--share", DEMO_SHARE]
        # One directory for both: one lab share (\\LAB\share) that every host sees, as in one building.
        domain = [*lab, "--dir", str(var / "lab"), "--hosts", str(DOMAIN_HOSTS), *DOMAIN_LAB]
        labs = [(self.spawn_lab("lab", workgroup, env, len(DEMO_SCENARIOS)), len(DEMO_SCENARIOS))]
        labs.append((self.spawn_lab("lab-domain", domain, env, DOMAIN_HOSTS), DOMAIN_HOSTS))
        return [name for process, count in labs for name in self.read_lab(process, count)]

    def spawn_lab(self, name: str, argv: list[str], env: dict[str, str], count: int) -> subprocess.Popen[Any]:
        again = lambda process: self.read_lab(process, count)  # noqa: E731 - re-register after a restart
        return self.spawn(name, argv, env, after_restart=again, stdout=subprocess.PIPE, text=True)

    def read_lab(self, lab: subprocess.Popen[Any], count: int) -> list[str]:
        """Register the hosts the lab announces (again after a restart: their ports change)."""
        assert lab.stdout is not None
        hosts, shares = [], []
        for _ in range(count):
            line = lab.stdout.readline()
            if not line:
                raise CommandError(f"the simulated lab exited with code {lab.wait()} before it was ready")
            announced = json.loads(line)
            hosts.append(self.register(announced))
            shares += announced.get("shares", [])
            self.backups.extend(text for text in self.describe_backup(announced) if text not in self.backups)
        register_demo_shares(shares, list(Host.objects.filter(name__in=hosts)))
        return hosts

    @staticmethod
    def describe_backup(announced: dict[str, Any]) -> list[str]:
        """The reinstalled demo host comes with the PFX backup of its lost guardian: the restore story needs it."""
        if not announced.get("backup_dir"):
            return []
        return [
            f"Backup of {announced['name']}'s lost guardian (upload it in Vault, then restore the VMs): "
            f"{announced['backup_dir']} (PFX password: {announced['backup_password']})"
        ]

    def register(self, announced: dict[str, Any]) -> str:
        """Register (or re-point, since ports change per run) a simulated host."""
        url = urlsplit(announced["url"])
        host, created = Host.objects.get_or_create(name=announced["name"], defaults={"address": url.hostname})
        host.address = url.hostname or "127.0.0.1"
        host.port = url.port or 5985
        host.transport = "https" if url.scheme == "https" else "http"
        host.auth = self.demo_auth(host.transport, announced)
        host.cert_check = "ca_bundle" if announced.get("ca_file") else "system"
        host.ca_bundle = Path(announced["ca_file"]).read_text() if announced.get("ca_file") else ""
        host.username = announced["user"]
        host.set_password(announced["password"])
        host.full_clean()
        host.save()
        AuditEvent.record(None, "host.create" if created else "host.update", host, via="runconsole (demo lab)")
        return host.name

    @staticmethod
    def demo_auth(transport: str, announced: dict[str, Any]) -> str:
        """CredSSP where the host offers it over HTTPS (the domain pair), Basic where it asks for it, else Negotiate."""
        if transport == "https" and announced.get("credssp"):
            return "credssp"
        return "basic" if transport == "https" and announced.get("auth") == "basic" else "negotiate"

    def refresh_demo_hosts(self, names: list[str]) -> None:
        """Queue a first inventory refresh so the dashboard shows the lab's risks straight away."""
        if not names:
            return
        try:
            create_job(None, kind=INVENTORY_REFRESH, hosts=list(Host.objects.filter(name__in=names)), vms=[], params={})
        except Exception as error:  # the console is still useful; the user can press Refresh
            self.stderr.write(f"Could not queue the first inventory refresh ({error}); use Refresh on the hosts page.")

    def wait(self) -> None:
        while True:
            for child in self.children:
                self.supervise(child)
            time.sleep(0.5)

    def supervise(self, child: Child) -> None:
        """Restart a child that died, once its back-off has passed; say so in the terminal either way."""
        now = time.monotonic()
        if child.process.poll() is None:
            if now - child.started_at >= STABLE_SECONDS:
                child.quick_deaths = 0
            return
        if child.restart_at is None:
            delay = child.backoff()
            child.quick_deaths += 1
            child.restart_at = now + delay
            self.stderr.write(
                f"{child.name} exited with code {child.process.returncode}; starting it again in {delay:.0f} s "
                f"(its log: {Path(settings.VAR_DIR) / 'log' / (child.name + '.log')})"
            )
        elif now >= child.restart_at:
            child.process = self.launch(child.name, child.argv, child.env, child.options)
            child.started_at, child.restart_at = time.monotonic(), None
            self.stdout.write(f"{child.name} restarted (pid {child.process.pid}).")
            if child.after_restart is not None:
                try:
                    child.after_restart(child.process)
                except CommandError as error:  # it died again at once: the next round backs off further
                    self.stderr.write(str(error))

    def stop_children(self) -> None:
        processes = [child.process for child in reversed(self.children)]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def escrow_policy_line(env: dict[str, str]) -> str:
    """The banner's word on automatic escrow, as the worker will see it (the environment it was started with)."""
    if env.get("CONSOLE_ESCROW_POLICY", "").strip().lower() in ("1", "true", "yes"):
        return (
            "Automatic escrow is on: after each refresh the console's account 'escrow-policy' escrows every guardian "
            "a host holds that the vault lacks (CONSOLE_ESCROW_POLICY=0 turns it off)."
        )
    return "Automatic escrow is off (CONSOLE_ESCROW_POLICY=1 turns it on)."


def refuse_exposed_database() -> None:
    """The database holds live session keys: anyone who can read it can log in as anyone."""
    exposed = exposed_database_files(settings.DATABASES["default"])
    if exposed:
        names = " ".join(str(path) for path in exposed)
        raise CommandError(
            f"Other users of this machine can read the console's database ({names}): it holds live session keys. "
            f"Make it private, then start again:\n    chmod 600 {names}\n    chmod 700 {Path(settings.VAR_DIR)}"
        )


def register_demo_shares(announced: list[dict[str, Any]], hosts: list[Host]) -> None:
    """List the demo hosts' shares for all of them, each with the account the lab gave it (sealed, never printed),
    and the lab share, which the wizard then rates as unreachable from NTLM sessions."""
    for entry in [{"path": LAB_SHARE_PATH}, *announced]:
        share, created = LabShare.objects.get_or_create(path=entry["path"])
        share.account = entry.get("account", "")
        share.set_password(entry.get("password", ""))
        share.save()
        share.hosts.add(*hosts)  # each world's lab adds its hosts
        if created:
            detail = {"path": share.path, "hosts": sorted(h.name for h in hosts), "account": share.account}
            AuditEvent.record(None, "share.create", share, via="runconsole (demo lab)", **detail)
