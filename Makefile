# The two commands: `make run` starts the console with a demo lab; `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/guardian_console

.PHONY: run test test-sqlite test-postgres lint chromium ldap-build-deps kerberos-build-deps sso-test-servers \
	kerberos-test-servers redis-test-server i18n-tools messages

# Debian packages, installed when missing (as root): python-ldap builds against OpenLDAP's and SASL's headers,
# python-gssapi and krb5 (the kerberos extra) against MIT Kerberos'; the single sign-on tests start their own slapd
# (and load it with ldap-utils), the Kerberos tests their own MIT KDC.
DEBIAN_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

$(VENV)/.installed: pyproject.toml | ldap-build-deps kerberos-build-deps
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,kerberos]'
	touch $@

run: $(VENV)/.installed
	@[ -n "$$REDIS_URL" ] || command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	CONSOLE_ENV=development $(PY) manage.py runconsole $(ARGS)

# Chromium for the browser tests, and a Japanese font so that their screenshots of Japanese pages show the words.
chromium:
	@command -v chromium >/dev/null && fc-list :lang=ja | grep -q . || { $(DEBIAN_INSTALL) chromium fonts-ipafont-gothic; }

ldap-build-deps:
	@[ -e /usr/include/ldap.h ] && [ -e /usr/include/sasl/sasl.h ] || { $(DEBIAN_INSTALL) libldap2-dev libsasl2-dev; }

# The single sign-on tests start their own slapd on a loopback port, loaded with ldap-utils' ldapadd.
sso-test-servers:
	@command -v slapd >/dev/null && command -v ldapadd >/dev/null || { $(DEBIAN_INSTALL) slapd ldap-utils; }

kerberos-build-deps:
	@[ -e /usr/include/gssapi/gssapi_krb5.h ] && command -v krb5-config >/dev/null || { $(DEBIAN_INSTALL) libkrb5-dev; }

# The Kerberos tests start their own MIT KDC on a loopback port (krb5kdc; kdb5_util from krb5-kdc, kadmin.local
# from krb5-admin-server), and one whose clock is wrong under faketime. Their krb5.conf is their own (KRB5_CONFIG).
kerberos-test-servers:
	@PATH="$$PATH:/usr/sbin:/sbin"; command -v krb5kdc >/dev/null && command -v kadmin.local >/dev/null && \
		command -v faketime >/dev/null || { $(DEBIAN_INSTALL) krb5-kdc krb5-admin-server faketime; }

# The Redis-restart fault test starts (and kills, and starts again) a redis-server of its own on a loopback port.
redis-test-server:
	@command -v redis-server >/dev/null || { $(DEBIAN_INSTALL) redis-server; }

# GNU gettext (xgettext, msgmerge, msgfmt): Django's makemessages and compilemessages. The compiled catalogue is
# committed, so running the console needs none of it; the catalogue test re-extracts every string with it.
i18n-tools:
	@command -v xgettext >/dev/null && command -v msgmerge >/dev/null && command -v msgfmt >/dev/null || \
		{ $(DEBIAN_INSTALL) gettext; }

# After changing a user-visible string: extract every string into locale/ja (then translate the new entries and
# clear their "fuzzy" flags), and compile. tests/console/test_translations.py fails until both are done.
MESSAGE_IGNORES := -i '.venv/*' -i 'tests/*' -i 'hypervsim/*' -i 'benchmarks/*' -i 'var/*' -i 'docs/*' -i 'test-artifacts/*'
messages: $(VENV)/.installed i18n-tools
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemessages -l ja --no-location --no-obsolete $(MESSAGE_IGNORES)
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemessages -l ja --no-location --no-obsolete -d djangojs $(MESSAGE_IGNORES)
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py compilemessages -l ja -i '.venv'

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

# SQLite runs everything; PostgreSQL runs everything but what cannot differ between the two: the browser tests (they
# exercise pages, not the database), the simulator's own tests (tests/sim: no database at all), the refusals of
# roles and methods (decided before any query), the Show PowerShell comparisons (tests/workflows/test_*_shown.py), the
# cells of the migration worlds table that differ only in the simulated hosts' logons (each method and refusal runs
# once) and every test that never touches the test database (tests/conftest.py marks those same_on_every_database).
# Every page's GET by every role and the hostile-input sweep (which found a PostgreSQL-only error) run on both.
# `make test` runs both passes and the linters at the same time, each pass in two pytest processes that take whole
# files (pytest-xdist): the tests mostly wait on sockets, subprocesses and the browser, so it takes about as long as
# the slowest part, not the sum. Each part's output is printed when that part ends.
XDIST := -n 2 --dist loadfile
# The SQLite pass has more to do (the browser tests run only there): a third process keeps both cores busy after
# the PostgreSQL pass ends (7 min 39 s against 7 min 58 s with two; three in both passes: 7 min 45 s).
XDIST_SQLITE := -n 3 --dist loadfile
# Every pass prints its 25 slowest tests (setup, call and teardown each): where the next minute of `make test` is.
DURATIONS := --durations=25

test: $(VENV)/.installed chromium sso-test-servers kerberos-test-servers redis-test-server i18n-tools
	$(MAKE) --jobs=3 --keep-going --output-sync=target test-sqlite test-postgres lint

# Python's bytecode caches stay on for the test passes even where the environment turns them off
# (PYTHONDONTWRITEBYTECODE): otherwise each pytest process rewrites every test module's asserts again (~5 s of CPU)
# and each worker, daphne and settings subprocess compiles the console again. The caches are in .gitignore.
test-sqlite test-postgres: export PYTHONDONTWRITEBYTECODE :=

test-sqlite:
	$(PYTEST) -p no:cacheprovider $(XDIST_SQLITE) $(DURATIONS)

test-postgres:
	DATABASE_URL=$(PG_TEST_URL) $(PYTEST) -p no:cacheprovider $(XDIST) $(DURATIONS) -m "not e2e and not same_on_every_database" \
		--ignore=tests/sim
