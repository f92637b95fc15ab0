"""Who may open a websocket: pages of this console only.

The browser names the page that opens a websocket in its Origin header; a page of another site (or another port
of this machine) must not ride on the user's session cookie. Channels' AllowedHostsOriginValidator compares the
host name only, so http://console.example.com:8443 would pass for a console at https://console.example.com.
Here the Origin must equal the console's own origin, scheme, host and port, as the connection reached it (or be
listed in CSRF_TRUSTED_ORIGINS, as for Django's CSRF check), and the Host must be one of ALLOWED_HOSTS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def parse_origin(text: str) -> Origin | None:
    """("https", "console.example.com", 443) from "https://console.example.com", or None if it is not an origin."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def connection_scheme(scope: dict[str, Any]) -> str:
    """The scheme of the page's origin: https for wss. Behind a proxy that terminates TLS the connection is plain;
    the proxy says what the browser used in X-Forwarded-Proto, as for pages (SECURE_PROXY_SSL_HEADER)."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = header(scope, b"x-forwarded-proto").split(",")[0].strip().lower()
        if forwarded in DEFAULT_PORTS:
            return forwarded
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The console's origin as this connection reached it, from its Host header (None if not an allowed host)."""
    host = header(scope, b"host")
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return parse_origin(f"{connection_scheme(scope)}://{host}")


def origin_allowed(scope: dict[str, Any]) -> bool:
    origin = parse_origin(header(scope, b"origin"))
    if origin is None:
        return False
    trusted = {parse_origin(entry) for entry in settings.CSRF_TRUSTED_ORIGINS}
    return origin == own_origin(scope) or origin in trusted


class SameOriginValidator:
    """ASGI middleware: refuses a websocket whose Origin is not the console's own (see the module's docstring)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
