"""Live events for staff screens (websocket consumers live in messaging.consumers).

Contract: every event is published after the current transaction commits, to the channel-layer
groups `inbox.<tenant_id>` (conversation list) and `conversation.<conversation_id>` (one pane),
as {"type": "live.event", "payload": {"kind": ..., ...}}. Kinds: message.created,
message.status, conversation.updated, turn.typing. A failure to publish is logged and never
breaks the webhook or job that caused it.
"""

from __future__ import annotations

import logging
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

MESSAGE_CREATED = "message.created"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
TURN_TYPING = "turn.typing"


def _send_all(items: list[tuple[int, int | None, dict]]) -> None:
    """One trip through async_to_sync for every event of a transaction (it costs a thread hop)."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return

        async def send():
            for tenant_id, conversation_id, payload in items:
                event = {"type": "live.event", "payload": payload}
                await layer.group_send(f"inbox.{tenant_id}", event)
                if conversation_id:
                    await layer.group_send(f"conversation.{conversation_id}", event)

        async_to_sync(send)()
    except Exception:  # a live screen is a convenience; the message itself is already stored
        logger.warning("%d live event(s) not published (first: %s)", len(items),
                       items[0][2].get("kind") if items else None, exc_info=True)


class _Batch:
    """Events of one transaction, flushed by a single on_commit callback."""

    def __init__(self):
        self.items: list = []
        self.flushed = False

    def __call__(self):
        self.flushed = True
        items, self.items = self.items, []
        _send_all(items)


_local = threading.local()


def publish(tenant_id: int, conversation_id: int | None, kind: str, **data) -> None:
    """Publish once the current transaction commits (at once outside a transaction)."""
    payload = {"kind": kind, "tenant_id": tenant_id, "conversation_id": conversation_id, **data}
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        _send_all([(tenant_id, conversation_id, payload)])
        return
    batch = getattr(_local, "batch", None)
    # A batch whose callback is no longer pending (committed or rolled back) is not reused.
    if batch is None or batch.flushed or not any(func is batch for _, func, _ in connection.run_on_commit):
        batch = _local.batch = _Batch()
        transaction.on_commit(batch)
    batch.items.append((tenant_id, conversation_id, payload))


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
