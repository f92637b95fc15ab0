"""Benchmark: what every page costs in generated labs of 4 hosts × 4 VMs, 50 × 50 and 200 × 50 (SQLite, this
machine), what the worker spends updating the stored analysis after refreshing one host, and how much memory the
ASGI server needs while 4 clients load every page of the largest lab at once.

Each lab is made by `manage.py generate_lab` in a database of its own, in a process of its own. Per page: the
median and the slowest of 5 requests (after one warm-up request), the queries of a request, the size of the HTML.
Next to them, the figures main had when issue 12 was filed (measured the same way).

    .venv/bin/python benchmarks/pages.py                                  # 4x4, 50x50, 200x50 and the memory run
    .venv/bin/python benchmarks/pages.py --sizes 4x4 --requests 2 --no-memory
    .venv/bin/python benchmarks/pages.py --json after.json                # keep the figures …
    .venv/bin/python benchmarks/pages.py --compare before.json            # … and show another run's next to these
    .venv/bin/python benchmarks/pages.py --keep /tmp/labs                 # build the labs once, reuse them after
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "Bench-Passw0rd-for-pages"  # noqa: S105 - a throwaway user of a throwaway database

# Issue 12's table: main before the stored analysis, 200 hosts × 50 VMs (p50 ms, kB); None where it gave no figure.
MAIN_AT_200X50 = {
    "dashboard": (1708, 854),
    "host": (1574, None),
    "guardians": (768, 907),
    "vms": (3542, 2900),
    "vm": (1844, None),
    "vault pair": (855, None),
    "migrate wizard": (382, None),
    "reset page": (444, None),
}


# Pages of jobs/workflows/ (the preflights): the memory run is made without them, then with them.
WORKFLOW_PAGES = (
    "escrow page",
    "import page",
    "restore page",
    "reset page",
    "reset, no host",
    "vtpm page",
    "migrate wizard",
    "migrate, vm chosen",
)


def pages(host: int, vm: int, pair: int, job: int, vm_name: str = "", target: int = 0) -> dict[str, str]:
    return {
        "dashboard": "/",
        "hosts": "/hosts/",
        "host": f"/hosts/{host}/",
        "guardians": "/guardians/",
        "vms": "/vms/",
        "vms searched": "/vms/?q=Win11&starts=no",
        "vm": f"/vms/{vm}/",
        "risks": "/risks/?code=single_copy",
        "vault": "/vault/",
        "vault pair": f"/vault/{pair}/",
        "audit": "/audit/",
        "jobs": "/jobs/",
        "job": f"/jobs/{job}/",
        "escrow page": f"/jobs/new/escrow/?host={host}&guardian=all",
        "import page": f"/jobs/new/import/?host={host}&pair={pair}",
        "restore page": f"/jobs/new/restore/?host={host}&vm={vm_name}",
        "reset page": f"/jobs/new/reset/?host={host}",
        "reset, no host": "/jobs/new/reset/?host=",
        "vtpm page": f"/jobs/new/vtpm/?host={host}&vm={vm_name}",
        "migrate wizard": f"/jobs/new/migrate/?host={host}",
        "migrate, vm chosen": f"/jobs/new/migrate/?host={host}&vm={vm_name}&target={target}",
    }


# -- one lab, in a process of its own -------------------------------------------------------------------------------


def setup_django(directory: Path, size: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["CONSOLE_VAR_DIR"] = str(directory)
    os.environ["DATABASE_URL"] = f"sqlite:///{directory}/lab-{size}.sqlite3"
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def make_lab(hosts: int, vms: int, database: Path) -> dict[str, Any]:
    """The lab of that size: generated, or the one an earlier run left in `database` (--keep)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from console.roles import set_role

    reused = database.exists()
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    if not reused:
        call_command("generate_lab", hosts=hosts, vms_per_host=vms, seed=12, stdout=open(os.devnull, "w"))  # noqa: SIM115
    generated = None if reused else time.perf_counter() - started
    user, _ = get_user_model().objects.get_or_create(username="bench")
    user.set_password(PASSWORD)
    user.save()
    set_role(user, "admin")
    return {"user": user, "urls": lab_urls(), "generated": generated}


def lab_urls() -> dict[str, str]:
    """The pages, on objects of HV001 (a host with protected VMs) and a target HV002."""
    from urllib.parse import quote

    from hosts.inventory.models import VirtualMachine
    from hosts.models import Host
    from hosts.vault.models import EscrowedPair
    from jobs.models import Job

    host = Host.objects.get(name="HV001")
    target = Host.objects.filter(name="HV002").first()
    sealed = VirtualMachine.objects.order_by("-has_key_protector", "host__name", "name")  # HV001's protected VMs first
    vm = sealed.filter(host=host).first() or sealed.first()
    pair = EscrowedPair.objects.filter(source_host__isnull=False).order_by("pk").first()
    job = Job.objects.filter(hosts=host).order_by("-pk").first()
    return pages(
        host.pk,
        vm.pk if vm else 0,
        pair.pk if pair else 0,
        job.pk if job else 0,
        quote(vm.name) if vm else "",
        target.pk if target else 0,
    )


def measure_pages(user: Any, urls: dict[str, str], requests: int) -> dict[str, dict[str, Any]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="localhost")  # one of the development ALLOWED_HOSTS
    client.force_login(user)
    found = {}
    for name, url in urls.items():
        status = client.get(url).status_code
        if status == 404:  # a page this version of the console does not have, or an object a tiny lab lacks
            continue
        if status != 200:
            raise SystemExit(f"{url} answered {status}")
        times = []
        for _ in range(requests):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
        found[name] = {
            "p50": statistics.median(times) * 1000,
            "max": max(times) * 1000,
            "queries": len(queries),
            "kb": len(response.content) / 1024,
            "status": response.status_code,
        }
    return found


def reading_from_rows(host: Any) -> Any:
    """What a refresh of the host would read, rebuilt from its stored rows: an unchanged host's next refresh."""
    from hosts.inventory.models import Certificate, Guardian, HostInventory, VirtualMachine
    from hosts.inventory.refresh import HostReading
    from hosts.remoting.catalog.host import HostFacts
    from hosts.remoting.catalog.inventory import CertificateFacts, GuardianFacts, HostInventoryFacts, VmDetails, VmFacts
    from hosts.remoting.keyprotector import GuardianRef, KeyProtectorInfo

    state = HostInventory.objects.get(host=host)
    facts = HostFacts(computer_name=host.name, os_caption="Windows Server", mode=state.mode)
    guardians = [
        GuardianFacts(
            g.name, g.has_private_signing_key, g.signing_thumbprint, g.encryption_thumbprint, g.signing_subject
        )
        for g in Guardian.objects.filter(host=host)
    ]
    certificates = [
        CertificateFacts(c.thumbprint, c.subject, c.not_before, c.not_after, c.has_private_key)
        for c in Certificate.objects.filter(host=host)
    ]
    vms, details = [], {}
    for vm in VirtualMachine.objects.filter(host=host):
        refs = [GuardianRef(g["signing"], g["encryption"], g.get("subject", "")) for g in vm.kp_guardian_thumbprints]
        owner = vm.kp_owner_thumbprints
        kp = KeyProtectorInfo(
            vm.has_key_protector,
            refs,
            GuardianRef(owner["signing"], owner["encryption"]) if owner else None,
            vm.kp_readable,
        )
        vms.append(VmFacts(vm.name, vm.vm_id, vm.state, vm.generation, vm.path))
        details[vm.name] = VmDetails(vm.name, True, vm.tpm_enabled, vm.shielded, kp, True, vm.checkpoint_count)
    inventory = HostInventoryFacts(facts, guardians, certificates, vms, details=details, details_complete=True)
    return HostReading(inventory, details)


def measure_refresh(rounds: int = 5) -> dict[str, Any]:
    """The worker's cost of saving one host's refresh (rows and stored analysis), unchanged and with its keys lost
    and found again — what a refresh does once the host has answered."""
    from hosts.inventory.refresh import save_reading
    from hosts.models import Host

    host = Host.objects.get(name="HV010")
    same = reading_from_rows(host)
    lost = reading_from_rows(host)
    for cert in lost.inventory.certificates:
        cert.has_private_key = False
    for guardian in lost.inventory.guardians:
        guardian.has_private_signing_key = False
    found: dict[str, Any] = {}
    for label, readings in (("unchanged", [same]), ("keys lost, then back", [lost, same])):
        walls, cpus = [], []
        for _ in range(rounds):
            for reading in readings:
                wall, cpu = time.perf_counter(), time.process_time()
                save_reading(host, reading)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
        found[label] = {"wall": statistics.median(walls) * 1000, "cpu": statistics.median(cpus) * 1000}
    try:
        from hosts.inventory import facts

        walls = []
        for _ in range(rounds):
            started = time.perf_counter()
            facts.update({host.pk})
            walls.append(time.perf_counter() - started)
        found["analysis update alone"] = {"wall": statistics.median(walls) * 1000, "cpu": None}
    except ImportError:  # the console before the stored analysis
        pass
    return found


# -- memory: the ASGI server under 4 clients -------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_memory(directory: Path, size: str, urls: dict[str, str], clients: int, rounds: int) -> dict[str, Any]:
    import psutil
    import requests

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    log = open(directory / f"daphne-{size}.log", "w")  # noqa: SIM115
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "console.asgi:application"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{base}/login/", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or its first answer is slow
                time.sleep(0.1)
        process = psutil.Process(server.pid)
        idle = process.memory_info().rss
        peak = [idle]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.02)

        def browse(times: list[float]) -> None:
            session = requests.Session()
            session.get(f"{base}/login/", timeout=60)
            form = {"username": "bench", "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]}
            session.post(f"{base}/login/", data=form, headers={"Referer": f"{base}/login/"}, timeout=60)
            for _ in range(rounds):
                for url in urls.values():
                    started = time.perf_counter()
                    session.get(base + url, timeout=300)
                    times.append(time.perf_counter() - started)

        watcher = threading.Thread(target=watch)
        watcher.start()
        timings: list[list[float]] = [[] for _ in range(clients)]
        started = time.perf_counter()
        threads = [threading.Thread(target=browse, args=(t,)) for t in timings]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        done.set()
        watcher.join()
        every = [t for times in timings for t in times]
        return {
            "clients": clients,
            "idle_mib": idle / 2**20,
            "peak_mib": peak[0] / 2**20,
            "seconds": elapsed,
            "requests": len(every),
            "p50": statistics.median(every) * 1000,
            "max": max(every) * 1000,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def run_lab(size: str, directory: Path, requests: int, memory: bool, clients: int) -> None:
    """Child process: make the lab, print its figures as one JSON line."""
    hosts, vms = (int(part) for part in size.split("x"))
    setup_django(directory, size)
    lab = make_lab(hosts, vms, directory / f"lab-{size}.sqlite3")
    result: dict[str, Any] = {"size": size, "generated": lab["generated"]}
    result["pages"] = measure_pages(lab["user"], lab["urls"], requests)
    if hosts >= 10:
        result["refresh"] = measure_refresh()
    if memory:
        ours = {name: url for name, url in lab["urls"].items() if name not in WORKFLOW_PAGES}
        result["memory"] = measure_memory(directory, size, ours, clients, rounds=2)
        result["memory, workflow pages too"] = measure_memory(directory, size, lab["urls"], clients, rounds=2)
    print(json.dumps(result), flush=True)


# -- the parent: one child per lab, then the table ------------------------------------------------------------------


def run_child(size: str, directory: Path, args: argparse.Namespace, memory: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--lab", size, "--dir", str(directory), "--requests", str(args.requests)]
    command += ["--clients", str(args.clients)] + (["--memory"] if memory else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSOLE_", "DJANGO_", "DATABASE_"))}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SystemExit(f"the {size} lab failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def cell(figures: dict[str, Any] | None) -> str:
    if not figures:
        return f"{'—':>26}"
    return f"{figures['p50']:6.0f} {figures['max']:6.0f} ms {figures['queries']:3} q {figures['kb']:6.0f} kB"


def print_table(results: list[dict[str, Any]], before: dict[str, dict[str, Any]]) -> None:
    sizes = [r["size"] for r in results]
    print("Per page: median and slowest of the requests, queries of one request, HTML size.\n")
    head = "".join(f" | {size + ' (p50 max)':>26}" for size in sizes)
    extra = " | main at 200x50 (issue 12)" + (" | before, largest lab" if before else "")
    print(f"{'page':<16}{head}{extra}")
    names = list(dict.fromkeys(name for r in results for name in r["pages"]))
    largest = results[-1]["size"]
    for name in names:
        row = "".join(f" | {cell(r['pages'].get(name))}" for r in results)
        main = MAIN_AT_200X50.get(name)
        row += f" | {f'{main[0]} ms' + (f', {main[1]} kB' if main[1] else ''):>26}" if main else f" | {'':>26}"
        if before:
            row += f" | {cell(before.get(largest, {}).get('pages', {}).get(name))}"
        print(f"{name:<16}{row}")
    for r in results:
        made = f"generated in {r['generated']:.1f} s" if r["generated"] is not None else "reused (--keep)"
        print(f"\n{r['size']}: {made}")
        for label, figures in r.get("refresh", {}).items():
            cpu = f", {figures['cpu']:.0f} ms CPU" if figures.get("cpu") is not None else ""
            print(f"  saving one host's refresh ({label}): {figures['wall']:.0f} ms{cpu}")
        if before.get(r["size"], {}).get("refresh"):
            for label, figures in before[r["size"]]["refresh"].items():
                print(f"  before: saving one host's refresh ({label}): {figures['wall']:.0f} ms")
        for key, pages_loaded in (
            ("memory", "every page but the workflows'"),
            ("memory, workflow pages too", "every page"),
        ):
            if key in r:
                m = r[key]
                print(
                    f"  ASGI server, {m['clients']} clients loading {pages_loaded} twice: RSS {m['idle_mib']:.0f} MiB "
                    f"idle, peak {m['peak_mib']:.0f} MiB; {m['requests']} requests in {m['seconds']:.1f} s, p50 "
                    f"{m['p50']:.0f} ms, slowest {m['max']:.0f} ms"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4x4,50x50,200x50", help="labs as HOSTSxVMS, comma-separated")
    parser.add_argument("--requests", type=int, default=5, help="timed requests per page")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the memory run")
    parser.add_argument("--no-memory", action="store_true", help="skip the ASGI memory run on the largest lab")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--compare", type=Path, help="figures of another run (--json) to show next to these")
    parser.add_argument(
        "--keep", type=Path, help="keep the labs in this directory, and reuse those an earlier run left there"
    )
    parser.add_argument("--lab", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lab:
        run_lab(args.lab, args.dir, args.requests, args.memory, args.clients)
        return
    sizes = args.sizes.split(",")
    directory = args.keep or Path(tempfile.mkdtemp(prefix="gc-pages-"))
    directory.mkdir(parents=True, exist_ok=True)
    results = []
    for size in sizes:
        print(f"generating and measuring the {size} lab…", file=sys.stderr, flush=True)
        results.append(run_child(size, directory, args, memory=size == sizes[-1] and not args.no_memory))
    before = {r["size"]: r for r in json.loads(args.compare.read_text())} if args.compare else {}
    print_table(results, before)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
