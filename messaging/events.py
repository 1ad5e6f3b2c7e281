"""Live events for staff screens (websocket consumers live in messaging.consumers).

Contract: an event is a compact reference, {"kind", "tenant_id", "conversation_id", ...ids}, sent
with PostgreSQL NOTIFY on the `live_events` channel once the current transaction commits (at once
outside a transaction): all events of one transaction go out in one statement, so a webhook or
job pays one round trip whoever watches, and renders nothing. Every ASGI process listens
(messaging.live.bus) and, only for events its consumers watch (groups `inbox.<tenant_id>` and
`conversation.<conversation_id>`), renders the row once with the API serializer. Kinds:
message.created (message_id → "message"), message.status, conversation.updated (→
"conversation"), turn.typing. A failure to publish is logged and never breaks the webhook or job
that caused it.
"""

from __future__ import annotations

import json
import logging
import threading

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connections, transaction

logger = logging.getLogger(__name__)

CHANNEL = "live_events"
MESSAGE_CREATED = "message.created"
MESSAGE_STATUS = "message.status"
CONVERSATION_UPDATED = "conversation.updated"
TURN_TYPING = "turn.typing"

# PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more: longer batches are split.
MAX_PAYLOAD_BYTES = 7000
MAX_ERROR_CHARS = 500


def _chunks(items: list[dict]) -> list[str]:
    chunks, current, size = [], [], 2
    for item in items:
        encoded = json.dumps(item, cls=DjangoJSONEncoder, separators=(",", ":"))
        if current and size + len(encoded) + 1 > MAX_PAYLOAD_BYTES:
            chunks.append("[" + ",".join(current) + "]")
            current, size = [], 2
        current.append(encoded)
        size += len(encoded) + 1
    if current:
        chunks.append("[" + ",".join(current) + "]")
    return chunks


def _send_all(items: list[dict]) -> None:
    try:
        payloads = _chunks(items)
        params = []
        for payload in payloads:
            params += [CHANNEL, payload]
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(["pg_notify(%s, %s)"] * len(payloads)), params)
    except Exception:  # a live screen is a convenience; the message itself is already stored
        logger.warning("%d live event(s) not published (first: %s)", len(items),
                       items[0].get("kind") if items else None, exc_info=True)


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
    event = {"kind": kind, "tenant_id": tenant_id, "conversation_id": conversation_id, **data}
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        _send_all([event])
        return
    batch = getattr(_local, "batch", None)
    # A batch whose callback is no longer pending (committed or rolled back) is not reused.
    if batch is None or batch.flushed or not any(func is batch for _, func, _ in connection.run_on_commit):
        batch = _local.batch = _Batch()
        transaction.on_commit(batch)
    batch.items.append(event)


def inbound_notify_sql(tenant: str, conversation: str, message: str) -> str:
    """SQL that publishes message.created + conversation.updated from inside a statement, for the
    webhook's one-statement write; the arguments are SQL expressions for the three ids."""
    return (
        f"pg_notify('{CHANNEL}', json_build_array("
        f"json_build_object('kind', '{MESSAGE_CREATED}', 'tenant_id', {tenant}, 'conversation_id', {conversation}, "
        f"'message_id', {message}), "
        f"json_build_object('kind', '{CONVERSATION_UPDATED}', 'tenant_id', {tenant}, 'conversation_id', {conversation})"
        ")::text)"
    )


def notify_sql() -> str:
    """pg_notify of one payload parameter, to publish from inside a statement (delivered when its
    transaction commits, like publish())."""
    return f"pg_notify('{CHANNEL}', %s)"


def _status_fields(message) -> dict:
    return {"message_id": message.pk, "status": message.status, "error": (message.error or "")[:MAX_ERROR_CHARS]}


def message_status_payload(message) -> str:
    """message.status as a NOTIFY payload, for notify_sql()."""
    return _chunks([{"kind": MESSAGE_STATUS, "tenant_id": message.tenant_id, "conversation_id": message.conversation_id,
                     **_status_fields(message)}])[0]


def message_created(message) -> None:
    publish(message.tenant_id, message.conversation_id, MESSAGE_CREATED, message_id=message.pk)


def message_status(message) -> None:
    publish(message.tenant_id, message.conversation_id, MESSAGE_STATUS, **_status_fields(message))


def conversation_updated(conversation) -> None:
    publish(conversation.tenant_id, conversation.pk, CONVERSATION_UPDATED)


def turn_typing(tenant_id: int, conversation_id: int, on: bool) -> None:
    publish(tenant_id, conversation_id, TURN_TYPING, on=on)
