"""Messaging's writes for other code (API, staff screens, playground, relay endpoint).

    relay_message(tenant_id=..., to=..., text=..., provider=..., channel_source=...)
    staff_reply(tenant_id=..., conversation_id=..., text=..., user=...)
    set_bot_paused(tenant_id=..., conversation_id=..., paused=True, hours=None)
    retry_message(tenant_id=..., message_id=...)
    inject_inbound(tenant_id=..., conversation_id=..., text=..., buffer_seconds=0)   # playground
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from messaging import buffer, events, ingest
from messaging.models import (
    ChannelBinding,
    ChannelSource,
    ChatConversation,
    ChatMessage,
    ConversationStatus,
    Direction,
    MessageStatus,
    Provider,
    Role,
)
from messaging.relay import HELD_PREFIX, queue_message, relay_parts
from messaging.webhooks.normalized import InboundMessage
from tenants.scoping import tenant_scope


class MessagingError(ValueError):
    """A request messaging refuses, with a message naming the problem."""


class NotFound(LookupError):
    def __init__(self, model, pk):
        super().__init__(f"{model.__name__} {pk} not found or access denied")


def get_conversation(tenant_id: int, conversation_id) -> ChatConversation:
    conversation = (
        ChatConversation.objects.for_tenant(tenant_id).select_related("binding").filter(pk=conversation_id).first()
    )
    if conversation is None:
        raise NotFound(ChatConversation, conversation_id)
    return conversation


def _conversation_for(*, tenant_id, to, provider, channel_source) -> ChatConversation:
    with tenant_scope(tenant_id):
        existing = ChatConversation.objects.filter(
            provider=provider, channel_source=channel_source, contact_external_id=to
        ).first()
        if existing:
            return existing
        if provider == Provider.CHATWOOT:
            raise MessagingError(
                "Chatwoot messages need the conversation_id of a conversation that came from Chatwoot "
                f"(no Chatwoot conversation with {to!r} is known)."
            )
        binding = ChannelBinding.objects.filter(provider=provider, channel_source=channel_source, is_active=True).first()
        if binding is None:
            raise MessagingError(f"No active {provider} {channel_source} channel is configured for this tenant.")
        return ingest.upsert_conversation(binding=binding, channel_source=channel_source, contact_id=to)


def relay_message(*, tenant_id: int, to: str, text: str, provider: str, channel_source: str,
                  conversation_id=None, role: str = Role.AGENT, sent_by=None) -> list[ChatMessage]:
    """Queue `text` (split to the channel's limit) for delivery through the relay; returns the rows."""
    if not (text or "").strip():
        raise MessagingError("text must not be empty.")
    with transaction.atomic():
        if conversation_id is not None:
            conversation = get_conversation(tenant_id, conversation_id)
            if (conversation.provider, conversation.channel_source) != (provider, channel_source):
                raise MessagingError(
                    f"Conversation {conversation_id} is {conversation.provider}/{conversation.channel_source}, "
                    f"not {provider}/{channel_source}."
                )
            if to and to.lstrip("+") != conversation.contact_external_id.lstrip("+"):
                raise MessagingError(f"'to' does not match the contact of conversation {conversation_id}.")
        else:
            # Contacts are stored without the "+" (Chatwoot's phone numbers too; other ids have none).
            conversation = _conversation_for(tenant_id=tenant_id, to=to.lstrip("+"), provider=provider,
                                             channel_source=channel_source)
        # The conversation row first, then the lane (relay_parts), in the order the buffer's turn
        # takes them: a reply and a turn at once wait for each other instead of deadlocking.
        with tenant_scope(tenant_id):
            ChatConversation.objects.select_for_update().filter(pk=conversation.pk).first()
        return relay_parts(conversation=conversation, parts=[text], role=role, sent_by=sent_by)


def set_bot_paused(*, tenant_id: int, conversation_id, paused: bool, hours: float | None = None,
                   human_mode: bool | None = None, extend_only: bool = False) -> ChatConversation:
    """Pause the bot (for `hours`, default HUMAN_TAKEOVER_HOURS) or resume it (back to bot mode).
    `extend_only`: a pause that already lasts longer is kept (a staff reply must not shorten it)."""
    with tenant_scope(tenant_id), transaction.atomic():
        conversation = ChatConversation.objects.select_for_update().filter(pk=conversation_id).first()
        if conversation is None:
            raise NotFound(ChatConversation, conversation_id)
        if paused:
            span = settings.HUMAN_TAKEOVER_HOURS if hours is None else hours
            until = timezone.now() + timedelta(hours=span)
            if extend_only and conversation.bot_paused_until and conversation.bot_paused_until > until:
                until = conversation.bot_paused_until
            conversation.bot_paused_until = until
            if human_mode:
                conversation.status = ConversationStatus.HUMAN
        else:
            conversation.bot_paused_until = None
            if conversation.status == ConversationStatus.HUMAN:
                conversation.status = ConversationStatus.BOT
        conversation.save(update_fields=["bot_paused_until", "status", "updated_at"])
        events.conversation_updated(conversation)
    return conversation


def staff_reply(*, tenant_id: int, conversation_id, text: str, user=None) -> list[ChatMessage]:
    """A staff member answers: stored as role human, sent through the relay, the bot pauses."""
    conversation = get_conversation(tenant_id, conversation_id)
    if conversation.status == ConversationStatus.CLOSED:  # as in the live pane (messaging/live/actions.py)
        raise MessagingError(f"Conversation {conversation.pk} is closed; reopen it before replying.")
    with transaction.atomic():
        messages = relay_message(
            tenant_id=tenant_id, to=conversation.contact_external_id, text=text, provider=conversation.provider,
            channel_source=conversation.channel_source, conversation_id=conversation.pk, role=Role.HUMAN,
            sent_by=user,
        )
        set_bot_paused(tenant_id=tenant_id, conversation_id=conversation.pk, paused=True, extend_only=True)
    return messages


def retry_message(*, tenant_id: int, message_id) -> ChatMessage:
    """Send a failed outbound message again: a fresh lane slot, and a fresh set of attempts
    (its delivery log numbers on). The idempotency key stays: a message recorded as failed may
    still have left (a try whose answer was lost), and a provider that honours the key then
    does not deliver it twice."""
    with tenant_scope(tenant_id), transaction.atomic():
        message = ChatMessage.objects.select_for_update().select_related("conversation").filter(pk=message_id).first()
        if message is None:
            raise NotFound(ChatMessage, message_id)
        if message.direction != Direction.OUT or message.status != MessageStatus.FAILED:
            raise MessagingError(f"Message {message_id} is {message.status}; only failed outbound messages are retried.")
        held = []
        if message.turn_id:  # the later parts of its reply that waited for it go again, after it
            held = list(ChatMessage.objects.select_for_update().filter(
                conversation_id=message.conversation_id, turn_id=message.turn_id, direction=Direction.OUT,
                status=MessageStatus.FAILED, pk__gt=message.pk,
                error__startswith=f"{HELD_PREFIX} (message {message.pk})").order_by("pk"))
        for again in [message, *held]:
            again.status, again.error, again.attempts = MessageStatus.QUEUED, "", 0
            again.save(update_fields=["status", "error", "attempts"])
            queue_message(again, message.conversation)
            events.message_status(again)
    return message


def playground_conversation(*, tenant_id: int, agent_id: int, contact_id: str, contact_name: str = "") -> ChatConversation:
    """The staff playground's conversation with one agent (no binding; provider 'playground')."""
    with tenant_scope(tenant_id):
        conversation, _ = ChatConversation.objects.get_or_create(
            provider=Provider.PLAYGROUND, channel_source=ChannelSource.PLAYGROUND, contact_external_id=contact_id,
            defaults={"agent_id": agent_id, "contact_name": contact_name, "tenant_id": tenant_id},
        )
        if conversation.agent_id != agent_id:
            conversation.agent_id = agent_id
            conversation.save(update_fields=["agent", "updated_at"])
    return conversation


def inject_inbound(*, tenant_id: int, conversation_id, text: str, buffer_seconds: float | None = None,
                   attachments: list | None = None) -> ChatMessage:
    """A customer message through the same buffer path as webhooks (the playground's way in)."""
    conversation = get_conversation(tenant_id, conversation_id)
    event = InboundMessage(
        route_key="", channel_source=conversation.channel_source, contact_id=conversation.contact_external_id,
        provider_message_id=f"injected:{uuid.uuid4()}", text=text, attachments=attachments or [],
    )
    with tenant_scope(tenant_id), transaction.atomic():
        locked = ChatConversation.objects.select_for_update().get(pk=conversation.pk)
        return ingest.store_inbound(conversation=locked, provider=locked.provider, event=event, now=timezone.now(),
                                    buffer_seconds=buffer_seconds)
