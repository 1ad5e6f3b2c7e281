"""Connect flows: admin buttons, the JSON API (under api/v1/) and the Tienda Nube webhook."""

from django.contrib import admin
from django.urls import path

from messaging.integrations import views
from messaging.live import metrics_api

urlpatterns = [
    path("admin/integrations/tiendanube/install/", admin.site.admin_view(views.tiendanube_install),
         name="tiendanube-install"),
    path("admin/integrations/tiendanube/callback/", admin.site.admin_view(views.tiendanube_callback),
         name="tiendanube-callback"),
    path("admin/privacy/", admin.site.admin_view(views.privacy_exports), name="privacy-exports"),
    path("admin/privacy/<str:name>", admin.site.admin_view(views.privacy_export_download), name="privacy-export"),
    path("admin/integrations/meta/", admin.site.admin_view(views.meta_start), name="meta-start"),
    path("admin/integrations/meta/callback/", admin.site.admin_view(views.meta_callback), name="meta-callback"),
    path("api/v1/integrations/tiendanube/connect", views.TiendaNubeConnectAPI.as_view(), name="tiendanube-connect"),
    path("api/v1/integrations/meta/connect", views.MetaConnectAPI.as_view(), name="meta-connect"),
    path("api/v1/integrations/status", views.IntegrationsStatusAPI.as_view(), name="integrations-status"),
    path("api/v1/metrics/conversations/", metrics_api.ConversationMetricsAPI.as_view(), name="metrics-conversations"),
    path("api/v1/metrics/messages/", metrics_api.MessageMetricsAPI.as_view(), name="metrics-messages"),
    path("api/v1/metrics/deliveries/", metrics_api.DeliveryMetricsAPI.as_view(), name="metrics-deliveries"),
    path("api/v1/metrics/turn-latency/", metrics_api.TurnLatencyMetricsAPI.as_view(), name="metrics-turn-latency"),
    path("api/v1/metrics/delivery-queue/", metrics_api.DeliveryQueueAPI.as_view(), name="metrics-delivery-queue"),
    path("webhooks/tiendanube/", views.TiendaNubeWebhook.as_view(), name="tiendanube-webhook"),
    path("webhooks/tiendanube/<path:topic>/", views.TiendaNubeWebhook.as_view(), name="tiendanube-webhook-topic"),
]
