"""Non-API routes: provider webhooks and the delivery relay endpoint."""

from django.urls import path

from messaging.relay_view import RelayView
from messaging.webhooks.views import ChatwootWebhook, MetaWebhook, YCloudWebhook

urlpatterns = [
    path("webhooks/meta/", MetaWebhook.as_view(), name="webhook-meta"),
    path("webhooks/chatwoot/<str:token>/", ChatwootWebhook.as_view(), name="webhook-chatwoot"),
    path("webhooks/ycloud/<str:token>/", YCloudWebhook.as_view(), name="webhook-ycloud"),
    path("messages/relay", RelayView.as_view(), name="messages-relay"),
]
