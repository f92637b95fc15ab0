"""Throughput of one simulator process serving many hosts, and its CPU while every client sits in a long poll.

    .venv/bin/python benchmarks/sim_throughput.py [--hosts 50] [--seconds 20] [--workers 4]

Starts `python -m hypervsim lab` with N hosts (HTTP, Negotiate/NTLM with message encryption, the console's usual
transport), then N pypsrp clients (one per host, spread over worker processes so the clients' own NTLM crypto
does not serialize on one GIL) each running a Get-VM pipeline in a loop. Prints pipelines/s, p50/p99 latency and
the simulator's CPU under load and while all clients wait in a Receive long poll.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

REPO = Path(__file__).resolve().parent.parent


def _client(host: dict[str, Any], start: float, stop: float, idle: float, latencies: list[float]) -> None:
    port = int(host["url"].rsplit(":", 1)[1].split("/")[0])
    wsman = WSMan(
        "127.0.0.1",
        port=port,
        ssl=False,
        auth="negotiate",
        username=host["user"],
        password=host["password"],
        operation_timeout=20,
        read_timeout=30,
    )
    with RunspacePool(wsman) as pool:
        time.sleep(max(0.0, start - time.time()))
        while time.time() < stop:
            began = time.perf_counter()
            ps = PowerShell(pool)
            ps.add_cmdlet("Get-VM")
            if not ps.invoke():
                raise RuntimeError(f"no VMs from {host['name']}")
            if time.time() <= stop:
                latencies.append(time.perf_counter() - began)
        # Nothing is queued for the pool, so this Receive is held by the simulator until its timeout.
        try:
            pool._receive(timeout=max(1, round(idle)))
        except WSManFaultError as fault:
            if fault.code != 2150858793:
                raise


def client_batch(hosts: list[dict[str, Any]], start: float, stop: float, idle: float) -> list[float]:
    latencies: list[float] = []
    threads = [threading.Thread(target=_client, args=(h, start, stop, idle, latencies)) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load phase")
    parser.add_argument("--idle", type=float, default=8.0, help="long-poll phase")
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as lab_dir:
        command = [sys.executable, "-m", "hypervsim", "lab", "--dir", lab_dir, "--hosts", str(args.hosts)]
        simulator = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            assert simulator.stdout is not None
            hosts = [json.loads(simulator.stdout.readline()) for _ in range(args.hosts)]
            measure(psutil.Process(simulator.pid), hosts, args)
        finally:
            simulator.terminate()
            simulator.wait(10)


def measure(simulator: psutil.Process, hosts: list[dict[str, Any]], args: argparse.Namespace) -> None:
    start = time.time() + 10  # time for every client to open its runspace pool
    stop = start + args.seconds
    with ProcessPoolExecutor(args.workers) as pool:
        batches = [hosts[i :: args.workers] for i in range(args.workers)]
        futures = [pool.submit(client_batch, batch, start, stop, args.idle + 3) for batch in batches]
        time.sleep(max(0.0, start - time.time()))
        load_cpu = cpu_seconds(simulator)
        time.sleep(max(0.0, stop - time.time()))
        load_cpu = cpu_seconds(simulator) - load_cpu
        time.sleep(1.5)  # every client has finished its last pipeline and sits in the long poll
        idle_cpu, idle_began = cpu_seconds(simulator), time.time()
        time.sleep(args.idle)
        idle_cpu, idle_wall = cpu_seconds(simulator) - idle_cpu, time.time() - idle_began
        latencies = [latency for future in futures for latency in future.result()]

    print(f"simulator: 1 process, {len(hosts)} hosts (HTTP, NTLM + message encryption); {len(hosts)} clients")
    print(
        f"pipelines: {len(latencies)} Get-VM in {args.seconds:.0f} s = {len(latencies) / args.seconds:.1f} pipelines/s"
    )
    print(
        f"latency:   p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms,"
        f" mean {statistics.mean(latencies) * 1000:.0f} ms"
    )
    print(f"simulator CPU under load:        {load_cpu / args.seconds * 100:.0f}% of one core")
    print(f"simulator CPU, all in long poll: {idle_cpu / idle_wall * 100:.2f}% of one core ({idle_wall:.1f} s)")
    print(f"machine: {psutil.cpu_count()} logical CPUs; clients and simulator share them")


if __name__ == "__main__":
    main()
