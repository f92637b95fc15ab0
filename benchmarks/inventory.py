"""Benchmark: what an inventory refresh costs in WinRM requests and wall time, next to the well-known scripts' way.

The console reads a host in two pipelines on one session (the second asks the host who may unseal each VM whose key
protector it has not read before), a constant number of round trips whatever the VM count, though hundreds of key
protectors (~3 KB each) fill WinRM's 500 KB envelopes: the first refresh sends them up and reads the answers back,
which costs a few more requests once ("first"); a refresh of VMs whose protectors did not change skips that pipeline
("again"). The scripts people use today open a new session per cmdlet (Invoke-Command / New-PSSession each time) and
visit hosts one after another. Every simulated host adds 20 ms to each HTTP request, like a LAN round trip to a busy
host.

    .venv/bin/python benchmarks/inventory.py            # 1, 20, 200 VMs; 50 hosts in parallel
    .venv/bin/python benchmarks/inventory.py --hosts 10 --latency 0.02
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_TMP = tempfile.mkdtemp(prefix="gc-bench-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("CONSOLE_VAR_DIR", _TMP)
os.environ.setdefault("DATABASE_URL", f"sqlite:///{_TMP}/bench.sqlite3")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from hosts.inventory.models import VirtualMachine  # noqa: E402
from hosts.inventory.refresh import refresh_host, refresh_hosts  # noqa: E402
from hosts.models import Host  # noqa: E402
from hosts.remoting import Cmd, ConnectionSpec, Operation, PipelineResult, open_session  # noqa: E402
from hosts.remoting.catalog import all_cmdlets  # noqa: E402
from hosts.remoting.catalog.inventory import SHIELDED_STORE  # noqa: E402
from hypervsim import Strictness, start_host  # noqa: E402
from hypervsim.keyprotector import KeyProtector  # noqa: E402


@dataclass
class OneCmdlet(Operation[int]):
    """What the scripts send: one cmdlet per remote call."""

    cmd: Cmd
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = tuple(sorted(all_cmdlets()))  # the same cmdlets, one call at a time

    def statements(self) -> list[list[Cmd]]:
        return [[self.cmd]]

    def parse(self, result: PipelineResult) -> int:
        return len(result.output)


@dataclass
class Measure:
    requests: int
    seconds: float


def seed_vms(sim: Any, count: int) -> None:
    """Replace the healthy scenario's VMs by `count` TPM VMs sealed to the host's UntrustedGuardian."""
    guardian = sim.model.guardian("UntrustedGuardian")
    signing = sim.model.store[guardian.signing.thumbprint]
    encryption = sim.model.store[guardian.encryption.thumbprint]
    with sim.model.changing() as model:
        model.vms.clear()
        for i in range(count):
            kp = KeyProtector.create(signing, encryption).to_bytes()
            model.add_vm(f"VM-{i:03}", tpm_enabled=True, key_protector=kp)


def register(sim: Any, auth: str) -> Host:
    host = Host(
        name=sim.name,
        address=sim.address,
        port=sim.port,
        transport="http",
        auth=auth,
        username=sim.user,
    )
    host.set_password(sim.password)
    host.save()
    return host


def strictness() -> str:
    """Which of Windows' behaviours the simulated hosts show (HYPERVSIM_STRICT changes it)."""
    default = Strictness.default()
    on = [name for name in Strictness.names() if getattr(default, name)]
    return "every way" if len(on) == len(Strictness.names()) else ", ".join(on) or "no way"


def spec_of(sim: Any, auth: str) -> ConnectionSpec:
    return ConnectionSpec(sim.address, sim.port, False, auth, sim.user, sim.password, label=sim.name)


def console_refresh(host: Host) -> Measure:
    started = time.perf_counter()
    outcome = refresh_host(host)
    elapsed = time.perf_counter() - started
    if not outcome.ok:
        raise SystemExit(f"refresh of {host} failed: {outcome.error}")
    return Measure(outcome.requests, elapsed)


def per_cmdlet_refresh(sim: Any, auth: str, sample: int | None = None) -> Measure:
    """The scripts' way: a new session for every cmdlet, VMs one after another.

    With `sample`, only that many VMs are read and the per-VM cost is scaled to all VMs (an estimate: every VM
    costs the same three sessions), so a 200-VM run does not take five minutes of a shared machine.
    """
    spec = spec_of(sim, auth)
    host_calls = [
        Cmd("Get-CimInstance", {"ClassName": "Win32_OperatingSystem"}),
        Cmd("Get-HgsClientConfiguration"),
        Cmd("Get-HgsGuardian"),
        Cmd("Get-ChildItem", {"Path": SHIELDED_STORE}),
        Cmd("Get-VM"),
    ]
    names = sorted(vm.name for vm in sim.model.vms.values())
    read = names[:sample] if sample else names
    vm_calls = [Cmd(c, {"VMName": n}) for n in read for c in ("Get-VMSecurity", "Get-VMKeyProtector", "Get-VMSnapshot")]
    host_part, vm_part = run_each(spec, host_calls), run_each(spec, vm_calls)
    scale = len(names) / len(read) if read else 0
    return Measure(host_part.requests + round(vm_part.requests * scale), host_part.seconds + vm_part.seconds * scale)


def run_each(spec: ConnectionSpec, calls: list[Cmd]) -> Measure:
    requests = 0
    started = time.perf_counter()
    for cmd in calls:
        with open_session(spec) as session:
            session.run(OneCmdlet(cmd))
        requests += session.request_count
    return Measure(requests, time.perf_counter() - started)


@dataclass
class RemoteSim:
    """A simulated host served by the fleet process: what the console needs to reach it, nothing more."""

    name: str
    address: str
    port: int
    user: str
    password: str
    names: list[str]

    @property
    def model(self) -> Any:  # per_cmdlet_refresh lists VM names through sim.model.vms
        return type("Model", (), {"vms": {n: type("VM", (), {"name": n}) for n in self.names}})


def serve_fleet(count: int, latency: float, directory: Path) -> None:
    """Child process: start `count` healthy hosts with added latency, announce them, serve until stdin closes.

    The fleet runs in its own process so the simulators' CPU work does not share the console's GIL — as real
    hosts would not.
    """
    import json

    sims = [
        start_host(name=f"HV{i + 1:02}", state_dir=directory / f"fleet-{i}", scenario="healthy", auth="negotiate")
        for i in range(count)
    ]
    for sim in sims:
        sim.faults.latency = latency
        names = [vm.name for vm in sim.model.vms.values()]
        print(json.dumps([sim.name, sim.address, sim.port, sim.user, sim.password, names]), flush=True)
    sys.stdin.read()
    for sim in sims:
        sim.stop()


def start_fleet(count: int, latency: float, directory: Path) -> tuple[Any, list[RemoteSim]]:
    import json
    import subprocess

    command = [
        sys.executable,
        __file__,
        "--serve-fleet",
        str(count),
        "--latency",
        str(latency),
        "--dir",
        str(directory),
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    fleet = [RemoteSim(*json.loads(process.stdout.readline())) for _ in range(count)]
    return process, fleet


def cpu_floor(console: float, hosts: float, count: int, one: float) -> str:
    """Per host refresh, the CPU the console and the simulated host spent; and the shortest the parallel refresh
    could take here if both kept every core busy and nothing else ran: their CPU over this machine's cores."""
    cores = os.cpu_count() or 1
    floor = (console + hosts) / cores
    ours, theirs = console / count * 1000, hosts / count * 1000
    return (
        f"    per host refresh: console {ours:.0f} ms CPU, simulated host {theirs:.0f} ms CPU; on {cores} cores no "
        f"run can take less than {floor:.2f}s = {floor / one:.1f}x one host"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every HTTP request")
    parser.add_argument("--vms", default="1,20,200", help="VM counts of the single-host runs")
    parser.add_argument("--hosts", type=int, default=50, help="hosts refreshed in parallel")
    parser.add_argument("--auth", default="ntlm", help="negotiate or ntlm (message encryption either way)")
    parser.add_argument(
        "--full", action="store_true", help="measure the per-cmdlet way on every VM and host (slow) instead of a sample"
    )
    parser.add_argument("--serve-fleet", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fleet:
        serve_fleet(args.serve_fleet, args.latency, args.dir)
        return
    call_command("migrate", verbosity=0)
    state = Path(_TMP) / "sims"
    sims: list[Any] = []
    try:
        print(f"WinRM over HTTP, {args.auth} with message encryption, +{args.latency * 1000:.0f} ms per request")
        print(f"simulated hosts as strict as Windows in: {strictness()}\n")
        print(
            f"{'VMs':>5} | {'console first: requests':>23} {'time':>7} | {'again: requests':>15} {'time':>7} | "
            f"{'per-cmdlet: requests':>20} {'time':>8} | ratio (first)",
            flush=True,
        )
        for count in [int(v) for v in args.vms.split(",")]:
            sim = start_host(
                name=f"HV{count:03}", state_dir=state / f"single-{count}", scenario="healthy", auth="negotiate"
            )
            sims.append(sim)
            seed_vms(sim, count)
            host = register(sim, args.auth)
            console_refresh(host)  # warm-up: imports, first NTLM context
            VirtualMachine.objects.filter(host=host).update(kp_sha256="")  # as if the host had never been read
            sim.faults.latency = args.latency
            ours = console_refresh(host)
            paced = sim.paced_replies
            again = console_refresh(host)
            paced = sim.paced_replies - paced
            sample = None if args.full or count <= 20 else 20
            theirs = per_cmdlet_refresh(sim, args.auth, sample)
            note = f"  (per-cmdlet scaled from {sample} VMs)" if sample else ""
            note += f"  (again: {paced} replies the host sent before its pipeline ended)" if paced else ""
            print(
                f"{count:>5} | {ours.requests:>23} {ours.seconds:>6.2f}s | "
                f"{again.requests:>15} {again.seconds:>6.2f}s | "
                f"{theirs.requests:>20} {theirs.seconds:>7.2f}s | {theirs.requests / ours.requests:.0f}x fewer requests"
                f"{note}",
                flush=True,
            )
        fleet_process, fleet = start_fleet(args.hosts, args.latency, state)
        hosts = [register(sim, args.auth) for sim in fleet]
        console_refresh(hosts[-1])  # warm-up
        one = console_refresh(hosts[0])
        import psutil

        fleet_cpu = psutil.Process(fleet_process.pid)
        sim_cpu = sum(fleet_cpu.cpu_times()[:2])
        started, cpu = time.perf_counter(), time.process_time()
        outcomes = refresh_hosts(hosts, max_workers=args.hosts)
        parallel, cpu = time.perf_counter() - started, time.process_time() - cpu
        sim_cpu = sum(fleet_cpu.cpu_times()[:2]) - sim_cpu
        failed = [o for o in outcomes.values() if not o.ok]
        served = sum(o.requests for o in outcomes.values())
        print(
            f"\n{args.hosts} hosts (healthy scenario, 4 VMs each, served by another process), "
            f"+{args.latency * 1000:.0f} ms per request:"
        )
        print(f"  console, one host:               {one.seconds:6.2f}s  {one.requests} requests")
        print(
            f"  console, {args.hosts} hosts in parallel:   {parallel:6.2f}s  {served} requests "
            f"({served / args.hosts:.1f} per host)  = {parallel / one.seconds:.1f}x one host"
            + (f"  FAILED: {len(failed)}" if failed else "")
            + f"\n    CPU used meanwhile: console {cpu:.2f}s, the {args.hosts} simulated hosts {sim_cpu:.2f}s"
            + f" (this machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})"
        )
        print(cpu_floor(cpu, sim_cpu, args.hosts, one.seconds))
        visited = fleet if args.full else fleet[:5]
        sequential = sum(per_cmdlet_refresh(sim, args.auth).seconds for sim in visited) * len(fleet) / len(visited)
        note = "" if args.full else f" (scaled from {len(visited)} hosts)"
        print(f"  per-cmdlet, hosts one after another: {sequential:6.2f}s  = {sequential / parallel:.0f}x slower{note}")
        fleet_process.stdin.close()
        fleet_process.wait(timeout=60)
    finally:
        for sim in sims:
            sim.stop()


if __name__ == "__main__":
    main()
