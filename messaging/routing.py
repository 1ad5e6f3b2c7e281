"""Websocket routes (served by daphne through platform_ai.asgi)."""

from django.urls import path

from messaging.consumers import ConversationConsumer, InboxConsumer

websocket_urlpatterns = [
    path("ws/inbox/", InboxConsumer.as_asgi()),
    path("ws/conversations/<int:conversation_id>/", ConversationConsumer.as_asgi()),
]
