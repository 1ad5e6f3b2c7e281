"""The live-event bus of one ASGI process: PostgreSQL LISTEN on the channel messaging.events
notifies, fanned out to this process's websocket consumers.

Publishers (webhooks, jobs, any process) send compact references (kind, tenant, conversation,
message id, status) with NOTIFY, which PostgreSQL delivers only when their transaction commits,
to every listening process. Here one connection per event loop listens; an event is expanded
(the message or conversation rendered by the API serializer, one query) only when a consumer of
this process watches its tenant's inbox or its conversation, and once for all of them. A lost
listening connection is reopened with backoff, and every consumer is told to resynchronise
(events in between may be missed; the page reloads its snapshot).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref

from channels.db import database_sync_to_async

from messaging import events

logger = logging.getLogger(__name__)

RECONNECT_DELAYS = (0.5, 1, 2, 5, 10)
DELIVERY_TIMEOUT_SECONDS = 10


def _conninfo() -> dict:
    """psycopg connect arguments of the default database (procrastinate's helper: the worker's
    relay dispatcher connects with the same)."""
    from procrastinate.contrib.django.utils import connector_params

    return connector_params("default")


def expand(event: dict) -> dict | None:
    """The payload staff screens receive (None when the row is gone). Runs in a worker thread."""
    from messaging.models import ChatConversation, ChatMessage
    from messaging.serializers import ConversationSerializer, MessageSerializer
    from tenants.scoping import tenant_scope

    kind, tenant_id = event.get("kind"), event.get("tenant_id")
    payload = dict(event)
    with tenant_scope(tenant_id):
        if kind == "message.created":
            message = ChatMessage.objects.filter(pk=payload.pop("message_id", None)).first()
            if message is None:
                return None
            payload["message"] = MessageSerializer(message).data
        elif kind == "conversation.updated":
            conversation = ChatConversation.objects.filter(pk=event.get("conversation_id")).first()
            if conversation is None:
                return None
            payload["conversation"] = ConversationSerializer(conversation).data
    return json.loads(json.dumps(payload, default=str))


class LiveBus:
    def __init__(self):
        self.groups: dict[str, set] = {}
        self.ready = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def join(self, group: str, consumer) -> None:
        """Subscribe; returns once the process listens, so no event committed later is missed."""
        self.groups.setdefault(group, set()).add(consumer)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._listen(), name="live-bus")
        await asyncio.wait_for(self.ready.wait(), timeout=30)

    def leave(self, group: str, consumer) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.discard(consumer)
            if not members:
                del self.groups[group]

    async def _listen(self) -> None:
        import psycopg

        failures = 0
        while self.groups:
            try:
                async with await psycopg.AsyncConnection.connect(autocommit=True, **_conninfo()) as conn:
                    await conn.execute(f"LISTEN {events.CHANNEL}")
                    failures = 0
                    self.ready.set()
                    async for notify in conn.notifies():
                        await self.dispatch(notify.payload)
                        if not self.groups:
                            break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.ready.clear()
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                logger.warning("Live events: listening connection lost (%s: %s); reconnecting in %ss",
                               type(exc).__name__, exc, delay)
                await self._broadcast({"kind": "resync"})
                await asyncio.sleep(delay)  # a background task of the ASGI process, never a request
        self.ready.clear()

    async def dispatch(self, raw: str) -> None:
        try:
            batch = json.loads(raw)
        except ValueError:
            logger.warning("Live events: ignoring a notification that is not JSON")
            return
        for event in batch if isinstance(batch, list) else [batch]:
            if not isinstance(event, dict):
                continue
            targets = set(self.groups.get(f"inbox.{event.get('tenant_id')}", ()))
            if event.get("conversation_id"):
                targets |= self.groups.get(f"conversation.{event['conversation_id']}", set())
            if not targets:
                continue  # nobody watches here: nothing is rendered
            try:
                payload = await database_sync_to_async(expand)(event)
            except Exception:
                logger.warning("Live event %s not rendered", event.get("kind"), exc_info=True)
                continue
            if payload is not None:
                await self._deliver(targets, payload)

    async def _deliver(self, consumers, payload: dict) -> None:
        for consumer in list(consumers):
            try:
                await asyncio.wait_for(consumer.live_event({"type": "live.event", "payload": payload}),
                                       DELIVERY_TIMEOUT_SECONDS)
            except Exception:
                logger.warning("Live event %s not delivered to one socket", payload.get("kind"), exc_info=True)

    async def _broadcast(self, payload: dict) -> None:
        everyone = {consumer for members in self.groups.values() for consumer in members}
        for consumer in everyone:
            try:
                await consumer.send_json({"type": "event", **payload})
            except Exception:
                pass


_buses: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def bus() -> LiveBus:
    """The bus of the running event loop (daphne has one; tests may run several in turn)."""
    loop = asyncio.get_running_loop()
    found = _buses.get(loop)
    if found is None:
        found = _buses[loop] = LiveBus()
    return found
