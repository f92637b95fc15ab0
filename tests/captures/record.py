"""Record the captures of this folder from hypervsim hosts as strict as Windows (every switch of hypervsim/strict.py
on), anonymised as `manage.py capture_host --anonymise` does:

    .venv/bin/python -m tests.captures.record            # rewrites tests/captures/<scenario>.json

A capture sent by a user (manage.py capture_host on a real host) goes in this folder beside them; the tests run the
console's parsers over every *.json here (tests/hosts/test_captures.py).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

SCENARIOS = {"healthy": {}, "reinstalled": {}, "deleted-certs": {}, "desktop-pc": {"edition": "client"}}
HERE = Path(__file__).parent


def record(scenario: str, into: Path, **host_options: str) -> Path:
    from hosts.remoting import capture, open_session
    from hosts.remoting.connection import ConnectionSpec
    from hypervsim import Strictness, start_host

    seed = "healthy" if scenario == "desktop-pc" else scenario
    with tempfile.TemporaryDirectory() as state:
        sim = start_host("HV01", state, seed, strict=Strictness.windows(), **host_options)  # type: ignore[arg-type]
        try:
            spec = ConnectionSpec(sim.address, sim.port, False, "ntlm", sim.user, sim.password, label=sim.name)
            with open_session(spec, record=True) as session:
                recorded = capture.record_host(session, sim.name, sim.user)
        finally:
            sim.stop()
    anonymised = capture.anonymise(recorded, capture.names_to_hide([sim.name], sim.user))
    path = into / f"{scenario}.json"
    path.write_text(json.dumps(anonymised, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    for scenario, options in SCENARIOS.items():
        print(record(scenario, HERE, **options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
