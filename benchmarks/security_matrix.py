"""The closing figures of the security review (issue 11), re-run by the test suite's own tests: this runs them with
pytest and counts what each case recorded it exercised (`record_property`), never what a list says it should.

- URLs × roles × methods of the security sweep (tests/console/test_security_sweep.py): the pages (GET for every
  role, POST for every role without the permission and once without a CSRF token, PUT/PATCH/DELETE for every role)
  and the REST API (every role × every method, with a personal token of the role);
- websocket routes × roles × origins;
- hostile values tried per form (every field of every form, one value at a time), with the server errors among them;
- the fault cases (paused worker, killed worker, task queue away, Redis restarted, host down): passed or not, with
  the lost and duplicated log lines and the commands sent after the loss of ownership that the tests measured.

A failed case is counted as failed, and the script exits 1 if any did.

    .venv/bin/python benchmarks/security_matrix.py                # everything (about 3 minutes on 2 cores)
    .venv/bin/python benchmarks/security_matrix.py --no-faults    # the sweep only
    .venv/bin/python benchmarks/security_matrix.py --workers 0    # in one process
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SWEEP = "tests/console/test_security_sweep.py"
FAULT_TESTS = {
    "paused worker (SIGSTOP, the reaper takes the job, SIGCONT)": "tests/jobs/test_fencing.py::"
    "test_a_paused_worker_resumed_after_its_job_was_declared_lost_sends_nothing_more",
    "killed worker (SIGKILL mid-job)": "tests/jobs/test_worker.py::"
    "test_a_killed_worker_leaves_a_lost_job_and_a_free_host",
    "task queue away (Redis unreachable from the console, then back)": "tests/jobs/test_task_queue.py::"
    "test_a_job_created_while_the_task_queue_was_unreachable_runs_once_it_answers",
    "host down (a migration's target)": "tests/workflows/test_reset_worker.py::"
    "test_migration_job_with_the_target_down_changes_nothing",
    "Redis restarted mid-job (killed, started again empty)": "tests/jobs/test_redis_restart.py::"
    "test_a_redis_restart_mid_job_loses_and_duplicates_no_log_line",
}


@dataclass
class Collected:
    """What the run's cases recorded, and how each ended (a pytest plugin: it sees xdist workers' reports too)."""

    exercised: list[tuple[str, ...]] = field(default_factory=list)
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)  # nodeid → what the fault test recorded
    outcomes: dict[str, str] = field(default_factory=dict)  # nodeid → passed | failed | skipped | xfailed

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
            self.outcomes[report.nodeid] = outcome
        for name, value in getattr(report, "user_properties", []):
            if report.when != "call":
                continue
            if name == "exercised":
                # One request, or a case's list of them (xdist hands tuples over as lists).
                many = isinstance(value, list) and (not value or isinstance(value[0], list | tuple))
                items = value if many else [value]
                self.exercised += [tuple(str(part) for part in item) for item in items]
            elif name == "fault":
                self.faults[report.nodeid] = dict(value)


def run(tests: list[str], workers: int) -> Collected:
    import pytest

    collected = Collected()
    os.chdir(REPO)
    args = [*tests, "-q", "-p", "no:cacheprovider", "-n", str(workers), "--no-header", "-rN"]
    pytest.main(args, plugins=[collected])
    return collected


def matrix(collected: Collected, what: str) -> tuple[int, set[str], set[str], set[str]]:
    rows = [row for row in collected.exercised if row[0] == what]
    return len(rows), {row[1] for row in rows}, {row[2] for row in rows}, {row[3] for row in rows}


def failed(collected: Collected, test: str) -> int:
    return sum(1 for nodeid, outcome in collected.outcomes.items() if test in nodeid and outcome == "failed")


def print_figures(collected: Collected, faults: bool) -> None:
    print("\nSecurity matrix, as the tests exercised it")
    for what, title in (("page", "Pages"), ("api", "REST API")):
        count, routes, roles, methods = matrix(collected, what)
        named = ", ".join(sorted(methods))
        print(f"  {title}: {len(routes)} URLs × {len(roles)} roles × {len(methods)} methods ({named})")
        combinations = {row[1:4] for row in collected.exercised if row[0] == what}
        print(f"    {len(combinations)} distinct URL × role × method combinations in {count} requests")
        by_method = Counter(row[3] for row in collected.exercised if row[0] == what)
        print("    per method: " + ", ".join(f"{m} {n}" for m, n in sorted(by_method.items())))
    csrf = matrix(collected, "csrf")
    print(f"  POST without a CSRF token: {csrf[0]} URLs")
    count, routes, roles, origins = matrix(collected, "websocket")
    print(f"  Websockets: {len(routes)} routes × {len(roles)} roles × {len(origins)} origins = {count} connections")
    per_form: dict[str, int] = defaultdict(int)
    fields: dict[str, set[str]] = defaultdict(set)
    for row in collected.exercised:
        if row[0] == "form":
            per_form[row[1]] += 1
            fields[row[1]].add(row[2])
    print(f"  Hostile inputs: {sum(per_form.values())} requests over {len(per_form)} forms (route, method, action)")
    for form, tried in sorted(per_form.items()):
        print(f"    {tried:4} into {len(fields[form]):2} fields  {form}")
    sweep_failures = failed(collected, SWEEP)
    print(f"  Failed sweep cases (a 500 fails its case): {sweep_failures}")
    if faults:
        print("  Fault cases:")
        for case, test in FAULT_TESTS.items():
            outcome = collected.outcomes.get(test, "not run")
            recorded = collected.faults.get(test, {})
            figures = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in recorded.items() if k != "case")
            print(f"    {outcome:8} {case}: {figures or 'nothing recorded'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-faults", action="store_true", help="only the sweep, not the worker fault tests")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist processes (0: this one)")
    parser.add_argument("--sweep", default=SWEEP, help="the sweep's tests, or a -k style subset of them (nodeids)")
    options = parser.parse_args()
    sys.path.insert(0, str(REPO))
    tests = [options.sweep, *([] if options.no_faults else FAULT_TESTS.values())]
    collected = run(tests, options.workers)
    print_figures(collected, not options.no_faults)
    return 1 if any(outcome == "failed" for outcome in collected.outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
