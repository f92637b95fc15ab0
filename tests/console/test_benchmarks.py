"""The benchmarks still run: each one, cut down to seconds, exits cleanly and prints its figures (not timed here).

They are not part of the measurements (those are run by hand and reported); this only keeps them from rotting
when the code they drive changes. They make their own SQLite database, so the PostgreSQL run skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the benchmarks use their own SQLite database"),
    pytest.mark.timeout(180),
]


def run_benchmark(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSOLE_", "DJANGO_", "DATABASE_"))}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_the_inventory_benchmark_runs() -> None:
    out = run_benchmark("inventory.py", "--vms", "1", "--hosts", "2", "--latency", "0")
    assert "fewer requests" in out and "2 hosts in parallel" in out


def test_the_simulator_throughput_benchmark_runs() -> None:
    out = run_benchmark("sim_throughput.py", "--hosts", "2", "--seconds", "1", "--idle", "1", "--workers", "1")
    assert "pipelines/s" in out and "long poll" in out


def test_the_job_log_benchmark_runs() -> None:
    out = run_benchmark("joblog.py", "--seconds", "1", "--viewers", "1", "--replay-lines", "2000")
    assert "lost 0, duplicated 0" in out and "replay of a 2000-line job from seq 0: 2000 lines" in out


def test_the_pages_benchmark_runs() -> None:
    out = run_benchmark("pages.py", "--sizes", "2x2,10x2", "--requests", "1", "--clients", "1")
    assert "dashboard" in out and "saving one host's refresh (unchanged)" in out and "peak" in out
