# The two commands: `make run` starts the console with a demo lab; `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/guardian_console

.PHONY: run test test-sqlite test-postgres lint chromium ldap-build-deps sso-test-servers redis-test-server

# Debian packages, installed when missing (as root): python-ldap builds against OpenLDAP's and SASL's headers; the
# single sign-on tests start their own slapd (and load it with ldap-utils).
DEBIAN_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

$(VENV)/.installed: pyproject.toml | ldap-build-deps
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	@[ -n "$$REDIS_URL" ] || command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	CONSOLE_ENV=development $(PY) manage.py runconsole $(ARGS)

chromium:
	@command -v chromium >/dev/null || { $(DEBIAN_INSTALL) chromium; }

ldap-build-deps:
	@[ -e /usr/include/ldap.h ] && [ -e /usr/include/sasl/sasl.h ] || { $(DEBIAN_INSTALL) libldap2-dev libsasl2-dev; }

# The single sign-on tests start their own slapd on a loopback port, loaded with ldap-utils' ldapadd.
sso-test-servers:
	@command -v slapd >/dev/null && command -v ldapadd >/dev/null || { $(DEBIAN_INSTALL) slapd ldap-utils; }

# The Redis-restart fault test starts (and kills, and starts again) a redis-server of its own on a loopback port.
redis-test-server:
	@command -v redis-server >/dev/null || { $(DEBIAN_INSTALL) redis-server; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

# SQLite runs everything; PostgreSQL runs everything but the browser tests (they exercise pages, not the database).
# `make test` runs both passes and the linters at the same time, each pass in two pytest processes that take whole
# files (pytest-xdist): the tests mostly wait on sockets, subprocesses and the browser, so it takes about as long as
# the slowest part, not the sum. Each part's output is printed when that part ends.
XDIST := -n 2 --dist loadfile

test: $(VENV)/.installed chromium sso-test-servers redis-test-server
	$(MAKE) --jobs=3 --keep-going --output-sync=target test-sqlite test-postgres lint

test-sqlite:
	$(PYTEST) -p no:cacheprovider $(XDIST)

test-postgres:
	DATABASE_URL=$(PG_TEST_URL) $(PYTEST) -p no:cacheprovider $(XDIST) -m "not e2e"
