"""Live events for staff screens (websocket consumers live in messaging.consumers).

Contract: every event is published after the current transaction commits, to the channel-layer
groups `inbox.<tenant_id>` (conversation list) and `conversation.<conversation_id>` (one pane),
as {"type": "live.event", "payload": {"kind": ..., ...}}. Kinds: message.created,
message.status, conversation.updated, turn.typing. A failure to publish is logged and never
breaks the webhook or job that caused it.
"""

from __future__ import annotations

import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

logger = logging.getLogger(__name__)

MESSAGE_CREATED = "message.created"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
TURN_TYPING = "turn.typing"


def _send(tenant_id: int, conversation_id: int | None, payload: dict) -> None:
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        event = {"type": "live.event", "payload": payload}
        groups = [f"inbox.{tenant_id}"] + ([f"conversation.{conversation_id}"] if conversation_id else [])
        for group in groups:
            async_to_sync(layer.group_send)(group, event)
    except Exception:  # a live screen is a convenience; the message itself is already stored
        logger.warning(
            "Live event %s for tenant %s conversation %s not published", payload.get("kind"), tenant_id,
            conversation_id, exc_info=True,
        )


def publish(tenant_id: int, conversation_id: int | None, kind: str, **data) -> None:
    """Publish once the current transaction commits (at once outside a transaction)."""
    # The PostgreSQL and Redis layers serialize with msgpack: UUIDs, datetimes and Decimals
    # (e.g. a message's sent_by) must become plain JSON values first.
    payload = json.loads(json.dumps(
        {"kind": kind, "tenant_id": tenant_id, "conversation_id": conversation_id, **data}, cls=DjangoJSONEncoder
    ))
    transaction.on_commit(lambda: _send(tenant_id, conversation_id, payload))


def message_created(message) -> None:
    from messaging.serializers import MessageSerializer

    publish(message.tenant_id, message.conversation_id, MESSAGE_CREATED, message=MessageSerializer(message).data)


def message_status(message) -> None:
    publish(
        message.tenant_id, message.conversation_id, MESSAGE_STATUS,
        message_id=message.pk, status=message.status, error=message.error,
    )


def conversation_updated(conversation) -> None:
    from messaging.serializers import ConversationSerializer

    publish(
        conversation.tenant_id, conversation.pk, CONVERSATION_UPDATED,
        conversation=ConversationSerializer(conversation).data,
    )


def turn_typing(tenant_id: int, conversation_id: int, on: bool) -> None:
    publish(tenant_id, conversation_id, TURN_TYPING, on=on)
