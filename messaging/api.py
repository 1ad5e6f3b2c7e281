"""Tenant API: channel bindings, conversations (filters, search), messages (cursor), takeover."""

from __future__ import annotations

from django.db.models import F, Q
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from messaging import selectors, services
from messaging.models import ChannelBinding, ChatConversation, ChatMessage
from messaging.serializers import (
    BotInput,
    ChannelBindingSerializer,
    ConversationSerializer,
    DeliveryAttemptSerializer,
    MessageSerializer,
    ReplyInput,
)
from tenants.api_base import TenantScopedGenericViewSet, TenantScopedViewSet, not_found


def _service_errors(call):
    try:
        return call()
    except services.NotFound as exc:
        raise exceptions.NotFound(str(exc)) from None
    except services.MessagingError as exc:
        raise exceptions.ValidationError({"detail": str(exc)}) from None


class ChannelBindingViewSet(TenantScopedViewSet):
    model = ChannelBinding
    serializer_class = ChannelBindingSerializer

    def scope_queryset(self, queryset):
        return queryset.order_by("id")


class MessageCursor(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50


class ConversationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, TenantScopedGenericViewSet
):
    """Filters: ?channel=whatsapp|instagram|facebook&status=bot|human|closed&provider=...&search=text."""

    model = ChatConversation
    serializer_class = ConversationSerializer

    def scope_queryset(self, queryset):
        params = self.request.query_params
        if params.get("channel"):
            queryset = queryset.filter(channel_source=params["channel"])
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        if params.get("provider"):
            queryset = queryset.filter(provider=params["provider"])
        if params.get("search"):
            term = params["search"].strip()
            queryset = queryset.filter(
                Q(contact_name__icontains=term) | Q(contact_external_id__icontains=term)
                | Q(contact_user_id__icontains=term)
                | Q(pk__in=ChatMessage.objects.for_tenant(self.tenant_id).filter(text__icontains=term)
                    .values("conversation_id"))
            )
        return queryset.order_by(F("last_message_at").desc(nulls_last=True), "-id")

    @action(detail=True, methods=["get"], pagination_class=MessageCursor)
    def messages(self, request, pk=None):
        conversation = self.get_object()
        page = self.paginate_queryset(selectors.conversation_messages(self.tenant_id, conversation.pk))
        return self.get_paginated_response(MessageSerializer(page, many=True).data)

    @action(detail=True, methods=["post"], serializer_class=ReplyInput)
    def reply(self, request, pk=None):
        conversation = self.get_object()
        data = ReplyInput(data=request.data)
        data.is_valid(raise_exception=True)
        messages = _service_errors(lambda: services.staff_reply(
            tenant_id=self.tenant_id, conversation_id=conversation.pk, text=data.validated_data["text"],
            user=request.user,
        ))
        return Response({"message_ids": [m.pk for m in messages],
                         "messages": MessageSerializer(messages, many=True).data}, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"], serializer_class=BotInput)
    def bot(self, request, pk=None):
        conversation = self.get_object()
        data = BotInput(data=request.data)
        data.is_valid(raise_exception=True)
        updated = _service_errors(lambda: services.set_bot_paused(
            tenant_id=self.tenant_id, conversation_id=conversation.pk, paused=data.validated_data["paused"],
            hours=data.validated_data.get("hours"),
        ))
        return Response(ConversationSerializer(updated).data)


class MessageViewSet(mixins.RetrieveModelMixin, TenantScopedGenericViewSet):
    """One message with its delivery attempts; POST .../retry/ re-sends a failed one."""

    model = ChatMessage
    serializer_class = MessageSerializer

    def retrieve(self, request, *args, **kwargs):
        message = self.get_object()
        attempts = DeliveryAttemptSerializer(message.delivery_attempts.all(), many=True).data
        return Response({**MessageSerializer(message).data, "delivery_attempts": attempts})

    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        message = self.get_object()
        retried = _service_errors(lambda: services.retry_message(tenant_id=self.tenant_id, message_id=message.pk))
        return Response(MessageSerializer(retried).data, status=status.HTTP_202_ACCEPTED)


__all__ = ["ChannelBindingViewSet", "ConversationViewSet", "MessageViewSet", "not_found"]
