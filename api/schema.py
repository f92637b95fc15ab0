"""The OpenAPI description of the token scheme, and the docs page under the console's Content-Security-Policy."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from console.roles import require

from .permissions import RolePermission


class TokenScheme(OpenApiAuthenticationExtension):  # type: ignore[misc]  # untyped library
    target_class = "api.authentication.TokenAuthentication"
    name = "token"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return dict(build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer"))  # noqa: S106 - the scheme's name


class Schema(SpectacularAPIView):  # type: ignore[misc]
    """The OpenAPI 3 schema, in JSON unless YAML is asked for (?format=yaml), its refusals in JSON too."""

    renderer_classes = [OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer]
    permission_classes = [RolePermission]
    permissions = {"GET": "view_console"}


class SwaggerUi(SpectacularSwaggerSplitView):  # type: ignore[misc]
    """Swagger UI from drf-spectacular-sidecar's files (no CDN), its start-up script a file of its own and no
    inline <style>, so the console's CSP (script-src and style-src 'self') holds on this page too."""

    template_name = "api/swagger_ui.html"
    permissions = {"GET": "view_console"}


swagger_ui = SwaggerUi.as_view(url_name="api-schema")


@require_GET
@require("view_console")
def api_docs(request: HttpRequest) -> HttpResponse:
    """The docs are a page of the console: login first, the one 403 page, Django's CSRF check."""
    return swagger_ui(request)  # type: ignore[no-any-return]
