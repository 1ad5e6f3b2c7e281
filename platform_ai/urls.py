from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from platform_ai.views import healthz

api_v1 = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("", include("tenants.urls")),
    path("", include("vault.urls")),
    path("", include("agents.urls")),
    path("", include("templates.urls")),
    path("", include("rag.urls")),
    path("", include("messaging.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("messaging.web_urls")),
    path("", include("messaging.live_urls")),
    path("", include("messaging.integrations_urls")),
    path("admin/", admin.site.urls),
]
