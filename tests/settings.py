"""Settings for the test suite: development mode with fixed test keys, SQLite unless DATABASE_URL says otherwise.

Subprocesses the tests start (Celery worker, daphne) get the same environment, so they see the same database.
"""

import os
import tempfile

os.environ.setdefault("CONSOLE_ENV", "development")
os.environ.setdefault("CONSOLE_SECRET_KEY", "test-secret-key-that-is-long-enough-0123456789abcdef")
# Two keys so that key rotation is exercised: the first seals, the second still opens.
os.environ.setdefault(
    "CONSOLE_ENCRYPTION_KEYS",
    "ZmVybmV0LXRlc3Qta2V5LW5ld2VzdC0wMDAwMDAwMDA=,ZmVybmV0LXRlc3Qta2V5LW9sZGVyLTAwMDAwMDAwMDA=",
)
os.environ.setdefault("CONSOLE_VAR_DIR", os.path.join(tempfile.gettempdir(), "guardian-console-tests"))
os.environ.setdefault("CONSOLE_HTTPS", "0")
# Per test run: Redis channels, Celery queue and cache keys, so concurrent runs on one Redis never cross-talk.
# Subprocesses (worker, daphne) inherit it through the environment. pytest-xdist's workers inherit the environment
# of the run that started them too, so each adds its own id (gw0, gw1, ...) and keeps a queue and database of its own.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER")
_prefix = os.environ.setdefault("CONSOLE_REDIS_PREFIX", f"test-{os.getpid()}")
if _xdist_worker and not _prefix.endswith(f"-{_xdist_worker}"):
    os.environ["CONSOLE_REDIS_PREFIX"] = f"{_prefix}-{_xdist_worker}"
# A recovery kit's scrypt costs 2^14 here, not 2^17: the same code, a few milliseconds per kit (the header says which).
os.environ.setdefault("CONSOLE_RECOVERY_KIT_SCRYPT_LOG2N", "14")
os.makedirs(os.environ["CONSOLE_VAR_DIR"], exist_ok=True)

from console.settings import *  # noqa: E402,F403
from console.settings import DATABASES  # noqa: E402

# A file, not :memory:, so a Celery worker process started by a test sees the same SQLite test database.
# Per test run as well (several runs may share a machine); the file is removed by pytest-django afterwards.
_RUN = os.environ["CONSOLE_REDIS_PREFIX"]
if str(DATABASES["default"]["ENGINE"]).endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["CONSOLE_VAR_DIR"], f"{_RUN}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_guardian_console_{_RUN.replace('-', '_')}"}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# Jobs run in this process heartbeat as often as the test workers' (tests/plugins/worker.py): a worker started by an
# earlier test shares this database, and its reaper calls a job lost after 3 s of silence.
JOBS_HEARTBEAT_SECONDS = 0.5
