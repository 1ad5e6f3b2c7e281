"""Messaging's reads for other code (staff screens, API)."""

from __future__ import annotations

from django.db.models import F

from messaging.models import ChatConversation, ChatMessage, MessageStatus


def conversation_messages(tenant_id: int, conversation_id: int):
    return ChatMessage.objects.for_tenant(tenant_id).filter(conversation_id=conversation_id).order_by("-created_at", "-id")


def inbox(tenant_id: int, *, status: str | None = None, channel: str | None = None):
    queryset = ChatConversation.objects.for_tenant(tenant_id).select_related("agent")
    if status:
        queryset = queryset.filter(status=status)
    if channel:
        queryset = queryset.filter(channel_source=channel)
    return queryset.order_by(F("last_message_at").desc(nulls_last=True), "-id")


def failed_messages(tenant_id: int):
    return ChatMessage.objects.for_tenant(tenant_id).filter(status=MessageStatus.FAILED).order_by("-created_at")
