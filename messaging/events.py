"""Live events for staff screens (websocket consumers live in messaging.consumers).

Contract: every event is published after the current transaction commits, to the channel-layer
groups `inbox.<tenant_id>` (conversation list) and `conversation.<conversation_id>` (one pane),
as {"type": "live.event", "payload": {"kind": ..., ...}}. Kinds: message.created,
message.status, conversation.updated, turn.typing. A failure to publish is logged and never
breaks the webhook or job that caused it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading

from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

logger = logging.getLogger(__name__)

MESSAGE_CREATED = "message.created"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
TURN_TYPING = "turn.typing"


PUBLISH_TIMEOUT_SECONDS = 5
# Tests that assert on events set this so delivery has happened when publish() returns.
WAIT_FOR_DELIVERY = False
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="live-events", daemon=True).start()
        return _loop


def _log_failure(future) -> None:
    exc = future.exception()
    if exc is not None:
        logger.warning("Live events not published: %s: %s", type(exc).__name__, exc)


def _run(make_coroutine) -> None:
    """Hand the sends to the process's one event loop and return without waiting: a webhook or
    job never waits for staff screens. channels-postgres binds its connection pool to the first
    loop that uses it, so async_to_sync's throwaway loops (WSGI threads) would hang it: inside an
    ASGI server or the worker their loop is used, elsewhere a long-lived publisher loop."""
    loop = None
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) == os.getpid():
        loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or loop.is_closed():
        loop = _publisher_loop()
    future = asyncio.run_coroutine_threadsafe(make_coroutine(), loop)
    future.add_done_callback(_log_failure)
    if WAIT_FOR_DELIVERY:
        future.result(timeout=PUBLISH_TIMEOUT_SECONDS)


def _send_all(items: list[tuple[int, int | None, dict]]) -> None:
    """Every event of one transaction in one coroutine on the process's event loop."""
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

        _run(send)
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
    # The PostgreSQL and Redis layers serialize with msgpack: UUIDs, datetimes and Decimals
    # (e.g. a message's sent_by) must become plain JSON values first.
    payload = json.loads(json.dumps(
        {"kind": kind, "tenant_id": tenant_id, "conversation_id": conversation_id, **data}, cls=DjangoJSONEncoder
    ))
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


_renderers: dict = {}


def _render(name: str, instance) -> dict:
    """The API serializer's rendering; one read-only serializer per process (building DRF
    fields costs milliseconds, more than the rest of a webhook)."""
    renderer = _renderers.get(name)
    if renderer is None:
        from messaging import serializers

        renderer = _renderers[name] = getattr(serializers, name)()
    return renderer.to_representation(instance)


def message_created(message) -> None:
    publish(message.tenant_id, message.conversation_id, MESSAGE_CREATED, message=_render("MessageSerializer", message))


def message_status(message) -> None:
    publish(
        message.tenant_id, message.conversation_id, MESSAGE_STATUS,
        message_id=message.pk, status=message.status, error=message.error,
    )


def conversation_updated(conversation) -> None:
    publish(
        conversation.tenant_id, conversation.pk, CONVERSATION_UPDATED,
        conversation=_render("ConversationSerializer", conversation),
    )


def turn_typing(tenant_id: int, conversation_id: int, on: bool) -> None:
    publish(tenant_id, conversation_id, TURN_TYPING, on=on)
