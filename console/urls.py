"""URL routes: each app owns its own; this file wires them together."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.staticfiles.views import serve
from django.urls import include, path, re_path
from django.views.i18n import JavaScriptCatalog

from hosts.inventory import urls as inventory_urls

from . import accounts, guardian, preferences, sso, two_factor, users, views

handler403 = views.forbidden

# The inventory's pages, and its refresh buttons, whose views start jobs and so live in console (hosts never
# import jobs); all under the inventory's namespace.
inventory_patterns = [
    *inventory_urls.urlpatterns,
    path("hosts/<int:pk>/refresh/", views.refresh_host, name="refresh-host"),
    path("hosts/refresh/", views.refresh_all, name="refresh-all"),
]

user_patterns = [
    path("", users.user_list, name="list"),
    path("new/", users.user_create, name="create"),
    path("<int:pk>/", users.user_edit, name="edit"),
    path("<int:pk>/unlock/", users.user_unlock, name="unlock"),
    path("<int:pk>/two-factor/reset/", users.two_factor_reset, name="two-factor-reset"),
    path("unlock-address/", users.address_unlock, name="unlock-address"),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("audit/", views.audit_trail, name="audit"),
    path("guardians/<str:key>/", guardian.guardian_detail, name="guardian"),
    path("audit/export.csv", views.audit_csv, name="audit_csv"),
    # The words of static/*.js in the reader's language (locale/*/LC_MESSAGES/djangojs.po): gettext() in scripts.
    path("jsi18n/", login_not_required(JavaScriptCatalog.as_view()), name="javascript-catalog"),
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", preferences.my_account, name="my_account"),
    path("account/time-zone/", preferences.browser_time_zone, name="browser_time_zone"),
    path("account/password/", accounts.PasswordChangeView.as_view(), name="password_change"),
    path("account/two-factor/", two_factor.two_factor, name="two_factor"),
    path("account/two-factor/verify/", two_factor.two_factor_verify, name="two_factor_verify"),
    # Single sign-on through OpenID Connect (when configured): the login page's button, and the provider's answer.
    path("oidc/authenticate/", sso.oidc_sign_in, name="oidc_authentication_init"),
    path("oidc/callback/", sso.oidc_callback, name="oidc_authentication_callback"),
    path("users/", include((user_patterns, "users"))),
    path("", include("console.notifications.urls")),  # My account → Notifications, and the team's destinations
    path("", include("hosts.urls")),
    path("", include((inventory_patterns, "inventory"))),
    path("", include("hosts.vault.urls")),
    path("", include("jobs.urls")),
    path("", include("jobs.workflows.urls")),  # the workflows' preflight pages under /jobs/new/
    path("", include("api.urls")),  # the REST API under /api/, and one's API tokens under /account/tokens/
]

if settings.SERVE_STATIC:
    # Static files are public (CSS and the log viewer's JS): the login page needs them before login. Found through
    # the staticfiles finders, so the API docs' Swagger UI (drf-spectacular-sidecar's app files) is served too.
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", login_not_required(serve), {"insecure": True}))
