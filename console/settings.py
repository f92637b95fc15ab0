"""Settings of the console, read from the environment.

Production is the default: it refuses to start without a real secret key and encryption keys. `make run` and the
test suite set CONSOLE_ENV=development, where missing secrets are generated once under var/ so a fresh machine
starts with one command.
"""

from __future__ import annotations

import math
import os
import secrets
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from console.datafiles import private_dir

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CONSOLE_VAR_DIR", BASE_DIR / "var"))

ENV = os.environ.get("CONSOLE_ENV", "production")
if ENV not in ("production", "development"):
    raise ImproperlyConfigured(f"CONSOLE_ENV must be 'production' or 'development', not {ENV!r}")
DEVELOPMENT = ENV == "development"

# Values that must never protect a production console: Django's placeholder and anything we ever printed.
KNOWN_DEFAULT_SECRETS = {"", "changeme", "secret", "django-insecure", "please-change-me"}


def env(name: str, default: str = "") -> str:
    """A setting from NAME, or from the file named by NAME_FILE (for container secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    value = env(name, "1" if default else "0").lower()
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")
    return value in ("1", "true", "yes")


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def envnumber(name: str, default: float) -> float:
    value = env(name, str(default))
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ImproperlyConfigured(f"{name} must be a positive number, not {value!r}")
    return number


def envint(name: str, default: int) -> int:
    number = envnumber(name, default)
    if number != int(number):
        raise ImproperlyConfigured(f"{name} must be a whole number, not {number}")
    return int(number)


def secret_entropy_bits(secret: str) -> float:
    """A rough estimate of a secret's strength: its length times the Shannon entropy of its characters' frequencies.
    Patterns escape it ("abcdabcd…" scores as if random), hence `is_repetition` beside it."""
    counts = Counter(secret)
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values()) if secret else 0.0
    return len(secret) * per_char


def is_repetition(secret: str) -> bool:
    """ "abcdefgh" * 5 and the like: the text equals itself shifted by less than half its length."""
    return any(secret[shift:] == secret[:-shift] for shift in range(1, len(secret) // 2 + 1))


def is_predictable(secret: str) -> bool:
    """A secret typed by hand rather than generated. A random key of 32+ characters from any usual alphabet (hex,
    base64, token_urlsafe) has more than 8 different characters and scores well above 80 bits here."""
    return len(set(secret)) < 8 or secret_entropy_bits(secret) < 80 or is_repetition(secret)


def development_secret(filename: str, make: str) -> str:
    """Read or create a secret under var/ — only ever used in development."""
    path = VAR_DIR / filename
    if not path.exists():
        private_dir(VAR_DIR)
        path.write_text(make)
        path.chmod(0o600)
    return path.read_text().strip()


def database_from_url(url: str) -> dict[str, object]:
    """DATABASE_URL → Django DATABASES entry: postgres://user:pass@host:port/name or sqlite:///path."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:]) if parts.path.startswith("//") else unquote(parts.path.lstrip("/"))
        name = path or str(VAR_DIR / "console.sqlite3")
        if not Path(name).parent.exists():
            private_dir(Path(name).parent)
        # WAL lets pages read while a worker writes job log lines; IMMEDIATE avoids lock-upgrade deadlocks.
        options = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name, "OPTIONS": options}
    if parts.scheme in ("postgres", "postgresql"):
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured("DATABASE_URL must start with postgres:// or sqlite://")


SECRET_KEY = env("CONSOLE_SECRET_KEY")
if not SECRET_KEY and DEVELOPMENT:
    SECRET_KEY = development_secret("secret_key", secrets.token_urlsafe(50))
if SECRET_KEY.lower() in KNOWN_DEFAULT_SECRETS or SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("CONSOLE_SECRET_KEY is missing, a default, or shorter than 32 characters")
if is_predictable(SECRET_KEY):
    raise ImproperlyConfigured(
        "CONSOLE_SECRET_KEY is too predictable (few different characters, or a repetition): make a random one, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`"
    )

# Fernet keys (urlsafe base64, 32 bytes), newest first. Never derived from SECRET_KEY: rotating one must not
# touch the other. See hosts/crypto.py.
ENCRYPTION_KEYS = envlist("CONSOLE_ENCRYPTION_KEYS")
if not ENCRYPTION_KEYS and DEVELOPMENT:
    from cryptography.fernet import Fernet

    ENCRYPTION_KEYS = [development_secret("encryption_key", Fernet.generate_key().decode())]
if not ENCRYPTION_KEYS:
    raise ImproperlyConfigured("CONSOLE_ENCRYPTION_KEYS is missing: give one or more Fernet keys, newest first")


def check_encryption_keys(raw_keys: list[str]) -> None:
    """Refuse to start with a key that could not seal anything, rather than fail at the first secret saved."""
    from cryptography.fernet import Fernet

    for position, raw in enumerate(raw_keys, start=1):
        try:
            Fernet(raw.encode())
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"CONSOLE_ENCRYPTION_KEYS entry #{position} is not a Fernet key (32 bytes, urlsafe base64; "
                "make one with `manage.py generate_encryption_key`)"
            ) from None
        if raw == SECRET_KEY:
            raise ImproperlyConfigured(
                f"CONSOLE_ENCRYPTION_KEYS entry #{position} is CONSOLE_SECRET_KEY: use its own key"
            )


check_encryption_keys(ENCRYPTION_KEYS)

DEBUG = envbool("CONSOLE_DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEVELOPMENT else "")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is missing: list the host names the console is served under")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
HTTPS = envbool("CONSOLE_HTTPS", not DEVELOPMENT)
# Behind a proxy that terminates TLS, Django sees plain HTTP: the proxy must set X-Forwarded-Proto (and overwrite
# any value the client sent), which tells Django the request was HTTPS. Client addresses come from the last
# X-Forwarded-For entry, the one the proxy appended (console/accounts.py).
BEHIND_PROXY = envbool("CONSOLE_BEHIND_PROXY", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # the live log page reads it for POSTs made from JavaScript
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if HTTPS and BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# With HTTPS every plain-HTTP request is redirected, behind a proxy too: there Django reads the scheme from
# X-Forwarded-Proto, so a proxy that forwards plain HTTP gets a redirect to HTTPS and one that forwards HTTPS does not.
SECURE_SSL_REDIRECT = envbool("CONSOLE_SSL_REDIRECT", HTTPS)
# HSTS: browsers refuse plain HTTP to this name for that long once they have seen it over HTTPS (one year).
SECURE_HSTS_SECONDS = envint("CONSOLE_HSTS_SECONDS", 365 * 24 * 3600) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("CONSOLE_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading puts the whole domain into browsers' built-in HTTPS-only list, a decision for the domain's owner, not
# for one console on an internal name: off unless asked for, and Django's reminder (W021) silenced when off.
SECURE_HSTS_PRELOAD = envbool("CONSOLE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Sessions end after CONSOLE_SESSION_IDLE_SECONDS without a request (the session's age, renewed by requests at most
# once a minute rather than SESSION_SAVE_EVERY_REQUEST's write per request) and CONSOLE_SESSION_MAX_SECONDS after the
# login whatever happens (console/sessions.py).
SESSION_COOKIE_AGE = envint("CONSOLE_SESSION_IDLE_SECONDS", 8 * 3600)
SESSION_MAX_SECONDS = envint("CONSOLE_SESSION_MAX_SECONDS", 24 * 3600)
# An open websocket re-checks its session and user this often, and closes once they may no longer view (4403).
WEBSOCKET_RECHECK_SECONDS = envnumber("CONSOLE_WEBSOCKET_RECHECK_SECONDS", 5)

# Content-Security-Policy (django-csp): scripts, styles and everything else from the console's own origin only,
# so no inline <script>, no on…= handler and no style attribute runs. 'self' covers the websockets of the live log.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# The REST API (api/): personal tokens (or the session, for the docs page), JSON only, roles checked per method,
# pages of 50, and a rate limit per user and per address (DRF throttles, counted in the cache, so across processes).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.RolePermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pages",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("CONSOLE_API_RATE_ANONYMOUS", "30/minute"),
        "user": env("CONSOLE_API_RATE_USER", "1200/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Guardian Console API",
    "DESCRIPTION": "Hosts, inventory, vault metadata, jobs and the audit trail. Send a personal token (My account → "
    "API tokens) as 'Authorization: Bearer <token>'.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["api.permissions.RolePermission"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Login protection (django-axes): CONSOLE_LOGIN_FAILURE_LIMIT failed logins for one user name, or from one address,
# lock that name or address out for CONSOLE_LOGIN_LOCKOUT_MINUTES (counted from the last failure before the lock;
# tries during the lock do not extend it). Admins unlock on the Users page or with `manage.py axes_reset`.
AXES_FAILURE_LIMIT = envint("CONSOLE_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envnumber("CONSOLE_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success does not wipe the failures: it would let anyone with an account of their own reset the count of their
# address between guesses at someone else's password.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "console.accounts.locked_out"
AXES_CLIENT_IP_CALLABLE = "console.accounts.client_address"
AXES_ENABLE_ADMIN = False
AXES_VERBOSE = False
AXES_DISABLE_ACCESS_LOG = True  # successful logins and logouts are in the audit trail already
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

# --- single sign-on (console/sso.py, console/directory.py): each off unless configured -------------------------------

# console.roles.ROLE_NAMES, which settings cannot import (roles loads auth's models); a test keeps the two equal.
ROLE_NAMES = ("viewer", "operator", "admin")


def role_groups(name: str) -> list[tuple[str, str]]:
    """NAME=admin:gc-admins,operator:gc-ops,viewer:gc-view → [(role, group), …]. A role may be named more than
    once (several groups give it); the highest role among a person's groups is theirs at each login."""
    pairs = []
    for item in envlist(name):
        role, _, group = item.partition(":")
        if role.strip() not in ROLE_NAMES or not group.strip():
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not role:group (roles: {', '.join(ROLE_NAMES)}), e.g. admin:gc-admins"
            )
        pairs.append((role.strip(), group.strip()))
    if not pairs:
        raise ImproperlyConfigured(f"{name} is missing: map groups to roles, e.g. admin:gc-admins,viewer:gc-view")
    return pairs


def required(name: str, why: str) -> str:
    value = env(name)
    if not value:
        raise ImproperlyConfigured(f"{name} is missing ({why})")
    return value


# OpenID Connect (mozilla-django-oidc): on when CONSOLE_OIDC_CLIENT_ID is set. The endpoints are those of the
# provider's /.well-known/openid-configuration; PKCE, the nonce and the ID token's issuer and audience are checked.
OIDC_ENABLED = bool(env("CONSOLE_OIDC_CLIENT_ID"))
if OIDC_ENABLED:
    _oidc = "with CONSOLE_OIDC_CLIENT_ID set"
    OIDC_PROVIDER_NAME = env("CONSOLE_OIDC_PROVIDER_NAME", "single sign-on")
    OIDC_ISSUER = required("CONSOLE_OIDC_ISSUER", f"{_oidc}: the provider's issuer, checked in every ID token")
    OIDC_OP_AUTHORIZATION_ENDPOINT = required("CONSOLE_OIDC_AUTHORIZATION_ENDPOINT", _oidc)
    OIDC_OP_TOKEN_ENDPOINT = required("CONSOLE_OIDC_TOKEN_ENDPOINT", _oidc)
    OIDC_OP_USER_ENDPOINT = required("CONSOLE_OIDC_USERINFO_ENDPOINT", _oidc)
    OIDC_OP_JWKS_ENDPOINT = required("CONSOLE_OIDC_JWKS_ENDPOINT", _oidc)
    OIDC_RP_CLIENT_ID = env("CONSOLE_OIDC_CLIENT_ID")
    OIDC_RP_CLIENT_SECRET = required("CONSOLE_OIDC_CLIENT_SECRET", f"{_oidc}; or CONSOLE_OIDC_CLIENT_SECRET_FILE")
    OIDC_RP_SIGN_ALGO = env("CONSOLE_OIDC_SIGN_ALGO", "RS256")
    OIDC_RP_SCOPES = env("CONSOLE_OIDC_SCOPES", "openid profile email groups")
    OIDC_USERNAME_CLAIM = env("CONSOLE_OIDC_USERNAME_CLAIM", "preferred_username")
    OIDC_GROUPS_CLAIM = env("CONSOLE_OIDC_GROUPS_CLAIM", "groups")
    OIDC_ROLE_GROUPS = role_groups("CONSOLE_OIDC_ROLE_GROUPS")
    OIDC_USE_PKCE = True
    OIDC_TIMEOUT = envnumber("CONSOLE_OIDC_TIMEOUT_SECONDS", 10)
    OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
    LOGIN_REDIRECT_URL_FAILURE = "login"
    AUTHENTICATION_BACKENDS.append("console.sso.OpenIDConnectBackend")

# LDAP / Active Directory (django-auth-ldap, the 'ldap' extra): on when CONSOLE_LDAP_SERVER_URI is set. Local
# accounts are tried first, so a local admin logs in whether or not the directory answers.
LDAP_ENABLED = bool(env("CONSOLE_LDAP_SERVER_URI"))
if LDAP_ENABLED:
    try:
        import ldap
        from django_auth_ldap.config import (
            ActiveDirectoryGroupType,
            GroupOfNamesType,
            GroupOfUniqueNamesType,
            LDAPSearch,
            NestedActiveDirectoryGroupType,
            PosixGroupType,
        )
    except ImportError:
        raise ImproperlyConfigured(
            "CONSOLE_LDAP_SERVER_URI is set but django-auth-ldap is not installed: pip install '.[ldap]' "
            "(python-ldap builds against Debian's libldap2-dev and libsasl2-dev)"
        ) from None
    # How each kind of directory lists a group's members, and which objects are groups.
    LDAP_GROUP_TYPES: dict[str, tuple[Any, str]] = {
        "groupOfNames": (GroupOfNamesType(), "(objectClass=groupOfNames)"),
        "groupOfUniqueNames": (GroupOfUniqueNamesType(), "(objectClass=groupOfUniqueNames)"),
        "posixGroup": (PosixGroupType(), "(objectClass=posixGroup)"),
        "activeDirectory": (ActiveDirectoryGroupType(), "(objectClass=group)"),
        "nestedActiveDirectory": (NestedActiveDirectoryGroupType(), "(objectClass=group)"),
    }
    _group_type = env("CONSOLE_LDAP_GROUP_TYPE", "groupOfNames")
    if _group_type not in LDAP_GROUP_TYPES:
        raise ImproperlyConfigured(f"CONSOLE_LDAP_GROUP_TYPE must be one of {', '.join(LDAP_GROUP_TYPES)}")
    _ldap = "with CONSOLE_LDAP_SERVER_URI set"
    AUTH_LDAP_SERVER_URI = env("CONSOLE_LDAP_SERVER_URI")
    AUTH_LDAP_BIND_DN = env("CONSOLE_LDAP_BIND_DN")
    AUTH_LDAP_BIND_PASSWORD = env("CONSOLE_LDAP_BIND_PASSWORD")
    AUTH_LDAP_USER_SEARCH = LDAPSearch(
        required("CONSOLE_LDAP_USER_SEARCH_BASE", f"{_ldap}: where people are, e.g. ou=people,dc=example,dc=org"),
        ldap.SCOPE_SUBTREE,
        env("CONSOLE_LDAP_USER_FILTER", "(uid=%(user)s)"),  # Active Directory: (sAMAccountName=%(user)s)
    )
    AUTH_LDAP_GROUP_TYPE, _group_filter = LDAP_GROUP_TYPES[_group_type]
    AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        required("CONSOLE_LDAP_GROUP_SEARCH_BASE", f"{_ldap}: where groups are, e.g. ou=groups,dc=example,dc=org"),
        ldap.SCOPE_SUBTREE,
        env("CONSOLE_LDAP_GROUP_FILTER", _group_filter),
    )
    AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    AUTH_LDAP_START_TLS = envbool("CONSOLE_LDAP_START_TLS", False)
    _ldap_timeout = envnumber("CONSOLE_LDAP_TIMEOUT_SECONDS", 5)
    # A directory that does not answer must not hold the login page (nor a local admin's login) for long.
    AUTH_LDAP_CONNECTION_OPTIONS = {ldap.OPT_NETWORK_TIMEOUT: _ldap_timeout, ldap.OPT_TIMEOUT: _ldap_timeout}
    if env("CONSOLE_LDAP_CA_FILE"):
        AUTH_LDAP_GLOBAL_OPTIONS = {ldap.OPT_X_TLS_CACERTFILE: env("CONSOLE_LDAP_CA_FILE")}
    LDAP_ROLE_GROUPS = role_groups("CONSOLE_LDAP_ROLE_GROUPS")
    AUTHENTICATION_BACKENDS.append("console.directory.DirectoryBackend")

# --- two-factor for admins (console/two_factor.py) -----------------------------------------------------------------

# required: an admin enrols a TOTP app and verifies it before a destructive job, a vault download or managing hosts
# or users (console.roles); optional: only admins who enrolled are asked; off: nobody. Production requires it.
ADMIN_2FA = env("CONSOLE_ADMIN_2FA", "optional" if DEVELOPMENT else "required")
if ADMIN_2FA not in ("required", "optional", "off"):
    raise ImproperlyConfigured(f"CONSOLE_ADMIN_2FA must be required, optional or off, not {ADMIN_2FA!r}")
OTP_TOTP_ISSUER = env("CONSOLE_2FA_ISSUER", "Guardian Console")

# --- two-person approval (jobs/approval.py) -------------------------------------------------------------------------

# On: destructive jobs (a guardian reset, a vTPM turned off, a migration that removes the source copy, keys imported
# to a host that never held them) wait for a second admin's approval. From the environment, not from a page: the
# policy guards against one admin acting alone, so one admin alone must not be able to switch it off.
TWO_PERSON_APPROVAL = envbool("CONSOLE_TWO_PERSON_APPROVAL", False)
APPROVAL_HOURS = envnumber("CONSOLE_APPROVAL_HOURS", 24)  # how long a request may wait; then it ends, undecided

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "console",
    "console.notifications",
    "hosts",
    "hosts.inventory",
    "hosts.vault",
    "jobs",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by the console itself (no CDN)
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The browser's language (Accept-Language) until the user chooses one in "My account" (console/preferences.py).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): has this session passed the second factor (console.roles asks before admin work)
    "django_otp.middleware.OTPMiddleware",
    "console.middleware.SessionLifetimeMiddleware",
    # Every time shown in the user's own time zone, every word in their language (console/preferences.py).
    "console.preferences.TimeZoneMiddleware",
    "console.preferences.LanguageMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "console.middleware.PasswordChangeRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: it turns a lockout flagged during the login view into the login page with the remaining wait.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.roles.roles_context",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'console.sqlite3'}"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Every word a page, form, message or job log shows goes through Django's translation machinery; the catalogue is
# locale/<language>/LC_MESSAGES (django.po for Python and templates, djangojs.po for static/*.js), compiled .mo
# files committed beside it. Dates and numbers follow the language's formats (console/formats/).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ja", "日本語")]
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["console.formats"]
USE_I18N = True
TIME_ZONE = env("CONSOLE_TIME_ZONE", "UTC")
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
# The console's CSS and JS are a few small files; serving them from the ASGI app keeps deployment to one
# process. Set CONSOLE_SERVE_STATIC=0 when a proxy serves `collectstatic` output instead.
SERVE_STATIC = envbool("CONSOLE_SERVE_STATIC", True)

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
# Several consoles (or test runs) may share one Redis: pub/sub channels, queues and cache keys carry this prefix.
REDIS_PREFIX = env("CONSOLE_REDIS_PREFIX", "console")


def redis_services(url: str, prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The channel layer and cache on one Redis (runconsole re-points them at its private Redis)."""
    layers = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": prefix},
        }
    }
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "KEY_PREFIX": prefix}
    }
    return layers, caches


CHANNEL_LAYERS, CACHES = redis_services(REDIS_URL, REDIS_PREFIX)

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = f"{REDIS_PREFIX}-jobs"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# How long the console waits on a host; a refresh of a slow host must not hold a worker for ever.
WINRM_OPERATION_TIMEOUT = int(env("CONSOLE_WINRM_OPERATION_TIMEOUT", "20"))
WINRM_READ_TIMEOUT = int(env("CONSOLE_WINRM_READ_TIMEOUT", "30"))
WINRM_CONNECT_TIMEOUT = int(env("CONSOLE_WINRM_CONNECT_TIMEOUT", "5"))
# Windows (HTTP.sys) closes a connection idle for 120 s; over NTLM message encryption the next message, sealed for that
# connection, then cannot be decrypted. A session idle longer than this reconnects before its next operation.
WINRM_IDLE_SECONDS = envnumber("CONSOLE_WINRM_IDLE_SECONDS", 100)
INVENTORY_REFRESH_SECONDS = int(env("CONSOLE_INVENTORY_REFRESH_SECONDS", "900"))

# Jobs (jobs/runner.py): a running job heartbeats; one silent for JOBS_LOST_AFTER_SECONDS is marked lost by the
# reaper thread of every worker (jobs/tasks.py), at its start and every JOBS_REAPER_SECONDS
# (heartbeat 5 + lost 30 + reaper 15 < 60 s).
JOBS_HEARTBEAT_SECONDS = float(env("CONSOLE_JOBS_HEARTBEAT_SECONDS", "5"))
JOBS_LOST_AFTER_SECONDS = float(env("CONSOLE_JOBS_LOST_AFTER_SECONDS", "30"))
JOBS_REAPER_SECONDS = float(env("CONSOLE_JOBS_REAPER_SECONDS", "15"))
JOBS_WAIT_RETRY_SECONDS = float(env("CONSOLE_JOBS_WAIT_RETRY_SECONDS", "2"))
# --- notifications (console/notifications/) ---------------------------------------------------------------------

# E-mail goes through Django's mail over SMTP. CONSOLE_URL (e.g. https://guardian.lab.example) makes the links in
# notifications absolute; without it they are paths of the console.
EMAIL_HOST = env("CONSOLE_SMTP_HOST", "localhost")
EMAIL_PORT = envint("CONSOLE_SMTP_PORT", 25)
EMAIL_HOST_USER = env("CONSOLE_SMTP_USER")
EMAIL_HOST_PASSWORD = env("CONSOLE_SMTP_PASSWORD")
EMAIL_USE_TLS = envbool("CONSOLE_SMTP_STARTTLS", False)
EMAIL_USE_SSL = envbool("CONSOLE_SMTP_SSL", False)
DEFAULT_FROM_EMAIL = env("CONSOLE_MAIL_FROM", "guardian-console@localhost")
EMAIL_SUBJECT_PREFIX = env("CONSOLE_MAIL_SUBJECT_PREFIX", "[Guardian Console] ")
CONSOLE_URL = env("CONSOLE_URL")
# How long one attempt waits on a mail server, webhook or chat service; how many attempts, and the first back-off
# (doubled each time: 30 s, 60 s, 120 s, … by default); how often the digest e-mails go out.
NOTIFY_TIMEOUT_SECONDS = envnumber("CONSOLE_NOTIFY_TIMEOUT_SECONDS", 10)
EMAIL_TIMEOUT = NOTIFY_TIMEOUT_SECONDS
NOTIFY_ATTEMPTS = max(1, envint("CONSOLE_NOTIFY_ATTEMPTS", 5))
NOTIFY_RETRY_SECONDS = envnumber("CONSOLE_NOTIFY_RETRY_SECONDS", 30)
NOTIFY_DIGEST_HOURS = envnumber("CONSOLE_NOTIFY_DIGEST_HOURS", 24)
# How often expiring certificates are looked for (and deliveries whose task was never sent are queued again); how
# long notifications and the delivery log are kept.
NOTIFY_SWEEP_SECONDS = envnumber("CONSOLE_NOTIFY_SWEEP_SECONDS", 900)
NOTIFY_KEEP_DAYS = envnumber("CONSOLE_NOTIFY_KEEP_DAYS", 90)

CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "refresh-all-inventory": {"task": "jobs.refresh_all_inventory", "schedule": float(INVENTORY_REFRESH_SECONDS)},
    "notifications-digest": {"task": "notifications.send_digests", "schedule": NOTIFY_DIGEST_HOURS * 3600},
    "notifications-sweep": {"task": "notifications.sweep", "schedule": NOTIFY_SWEEP_SECONDS},
}

# Automatic escrow (jobs/workflows/escrow/policy.py): every guardian whose private keys the inventory finds on a host
# and the vault lacks is escrowed by a job of the service user ESCROW_POLICY_USER. Deployment configuration, like
# CONSOLE_ADMIN_2FA: the web, worker and beat processes read the same environment, so they always agree. Off by
# default: it moves private keys. CONSOLE_ESCROW_POLICY_SECONDS: 0 (the default) escrows at the end of every
# inventory refresh (scheduled or by hand); N > 0 escrows from beat every N seconds instead (a quieter lab).
ESCROW_POLICY = envbool("CONSOLE_ESCROW_POLICY", False)
ESCROW_POLICY_SECONDS = envnumber("CONSOLE_ESCROW_POLICY_SECONDS", 0)
ESCROW_POLICY_USER = "escrow-policy"
if ESCROW_POLICY and ESCROW_POLICY_SECONDS > 0:
    CELERY_BEAT_SCHEDULE["escrow-policy"] = {"task": "jobs.escrow_policy", "schedule": float(ESCROW_POLICY_SECONDS)}

# Disaster-recovery kit (jobs/workflows/recovery_kit/): a scheduled encrypted copy is written to RECOVERY_KIT_DIR
# every RECOVERY_KIT_SECONDS (default daily), keeping the newest RECOVERY_KIT_KEEP, encrypted with the passphrase
# read from the file RECOVERY_KIT_PASSPHRASE_FILE at each run (kept out of the environment, the database and logs).
# No folder or no passphrase file: no scheduled copy. The scrypt cost (2^N) is written into each kit's header.
RECOVERY_KIT_DIR = env("CONSOLE_RECOVERY_KIT_DIR", "")
RECOVERY_KIT_PASSPHRASE_FILE = env("CONSOLE_RECOVERY_KIT_PASSPHRASE_FILE", "")
RECOVERY_KIT_KEEP = int(env("CONSOLE_RECOVERY_KIT_KEEP", "7"))
RECOVERY_KIT_SECONDS = envnumber("CONSOLE_RECOVERY_KIT_SECONDS", 86400)
RECOVERY_KIT_SCRYPT_LOG2N = int(env("CONSOLE_RECOVERY_KIT_SCRYPT_LOG2N", "17"))
if RECOVERY_KIT_DIR and RECOVERY_KIT_PASSPHRASE_FILE:
    CELERY_BEAT_SCHEDULE["recovery-kit-copy"] = {
        "task": "jobs.write_recovery_kit",
        "schedule": float(RECOVERY_KIT_SECONDS),
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # The level is the handler's: the domain loggers pass every record on to the job log (jobs/joblog.py).
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "level": env("CONSOLE_LOG_LEVEL", "INFO"),
        },
        "nowhere": {"class": "logging.NullHandler"},
    },
    "root": {"handlers": ["console"], "level": env("CONSOLE_LOG_LEVEL", "INFO")},
    "loggers": {
        # pypsrp and requests log message bodies at DEBUG; they may carry SecureStrings. Keep them quiet.
        "pypsrp": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "spnego": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # every login at INFO; failures and lockouts stay, and are audited anyway
        # apprise logs the service URL (which holds its token) and the message: it writes nowhere. Why a send
        # failed is captured, scrubbed of the URL's secrets, into the delivery log (console/notifications).
        "apprise": {"handlers": ["nowhere"], "level": "WARNING", "propagate": False},
    },
}
