"""The benchmarks still run: each one, cut down to seconds, exits cleanly and prints its figures (not timed here).

They are not part of the measurements (those are run by hand and reported); this only keeps them from rotting
when the code they drive changes. They make their own SQLite database, so the PostgreSQL run skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# One case of the security sweep: what the security matrix counts, cut down to a single request.
SWEEP_CASE = (
    "tests/console/test_security_sweep.py::"
    "test_the_api_answers_each_role_and_method_as_its_permissions_say[admin-api-jobs-GET]"
)
BENCHMARKS = {
    "inventory": ["inventory.py", "--vms", "1", "--hosts", "2", "--latency", "0"],
    "sim_throughput": ["sim_throughput.py", "--hosts", "2", "--seconds", "1", "--idle", "1", "--workers", "1"],
    "joblog": ["joblog.py", "--seconds", "1", "--viewers", "1", "--replay-lines", "2000"],
    # One lab of 10 hosts (the fewest that measure saving a refresh), with the memory run: a smaller lab before it
    # would only measure the same pages again.
    "pages": ["pages.py", "--sizes", "10x2", "--requests", "1", "--clients", "1"],
    "security_matrix": ["security_matrix.py", "--no-faults", "--workers", "0", "--sweep", SWEEP_CASE],
}

pytestmark = [
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the benchmarks use their own SQLite database"),
    pytest.mark.timeout(180),
]


@dataclass
class BenchmarkRun:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        """The benchmark's standard output once it has exited cleanly."""
        try:
            returncode = self.process.wait(timeout=170)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        stdout, stderr = self.stdout.read_text(), self.stderr.read_text()
        assert returncode == 0, stdout + stderr
        assert "Traceback" not in stderr, stderr
        return stdout


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BenchmarkRun]]:
    """All five start together: each mostly waits (sim_throughput gives its clients ten seconds to connect), so
    together they take about as long as the slowest one instead of the sum."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSOLE_", "DJANGO_", "DATABASE_"))}
    directory = tmp_path_factory.mktemp("benchmarks")
    runs = {}
    for name, (script, *args) in BENCHMARKS.items():
        stdout, stderr = directory / f"{name}.out", directory / f"{name}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            command = [sys.executable, str(REPO / "benchmarks" / script), *args]
            runs[name] = BenchmarkRun(
                subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err), stdout, stderr
            )
    yield runs
    for run in runs.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def test_the_inventory_benchmark_runs(benchmarks: dict[str, BenchmarkRun]) -> None:
    out = benchmarks["inventory"].output()
    assert "fewer requests" in out and "2 hosts in parallel" in out


def test_the_simulator_throughput_benchmark_runs(benchmarks: dict[str, BenchmarkRun]) -> None:
    out = benchmarks["sim_throughput"].output()
    assert "pipelines/s" in out and "long poll" in out


def test_the_job_log_benchmark_runs(benchmarks: dict[str, BenchmarkRun]) -> None:
    out = benchmarks["joblog"].output()
    assert "lost 0, duplicated 0" in out and "replay of a 2000-line job from seq 0: 2000 lines" in out


def test_the_pages_benchmark_runs(benchmarks: dict[str, BenchmarkRun]) -> None:
    out = benchmarks["pages"].output()
    assert "dashboard" in out and "saving one host's refresh (unchanged)" in out and "peak" in out


def test_the_security_matrix_counts_what_the_sweep_exercised(benchmarks: dict[str, BenchmarkRun]) -> None:
    out = benchmarks["security_matrix"].output()
    assert "REST API: 1 URLs × 1 roles × 1 methods (GET)" in out and "Pages: 0 URLs" in out
