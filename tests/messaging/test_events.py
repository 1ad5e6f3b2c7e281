"""Live events: one NOTIFY per committed transaction, nothing on rollback, compact references that
the listening process renders only for sockets that watch; a broken publish never breaks."""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest
from django.db import transaction

from messaging import events
from messaging.live import bus as live_bus
from messaging.models import ChatMessage
from tests.messaging.helpers import post_meta, whatsapp_text

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener():
    """A separate connection LISTENing as an ASGI process would; yields a function returning the
    events received so far."""
    conn = psycopg.connect(autocommit=True, **live_bus._conninfo())
    conn.execute(f"LISTEN {events.CHANNEL}")

    def received() -> list[dict]:
        found = []
        for notify in conn.notifies(timeout=0.5, stop_after=None):
            found += json.loads(notify.payload)
        return found

    yield received
    conn.close()


def test_webhook_publishes_one_batch_after_commit(anon, wa_binding, listener):
    post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola"))
    message = ChatMessage.dangerously_unscoped.get()
    assert listener() == [
        {"kind": "message.created", "tenant_id": wa_binding.tenant_id, "conversation_id": message.conversation_id,
         "message_id": message.pk},
        {"kind": "conversation.updated", "tenant_id": wa_binding.tenant_id,
         "conversation_id": message.conversation_id},
    ]


def test_nothing_is_published_before_commit_or_after_rollback(wa_binding, listener):
    with transaction.atomic():
        events.turn_typing(wa_binding.tenant_id, 7, True)
        assert listener() == []  # not before commit
    assert [e["kind"] for e in listener()] == ["turn.typing"]

    with pytest.raises(RuntimeError), transaction.atomic():
        events.turn_typing(wa_binding.tenant_id, 7, False)
        raise RuntimeError("rolled back")
    assert listener() == []


def test_a_large_batch_is_split_under_postgres_payload_limit(wa_binding, listener):
    with transaction.atomic():
        for n in range(300):
            events.publish(wa_binding.tenant_id, n + 1, events.MESSAGE_STATUS, message_id=n, status="failed",
                           error="x" * 400)
    received = listener()
    assert [e["message_id"] for e in received] == list(range(300))
    assert all(len(e["error"]) == 400 for e in received)


def test_a_failing_publish_is_logged_and_never_raises(wa_binding, monkeypatch, caplog):
    monkeypatch.setattr(events, "_chunks", lambda items: 1 / 0)
    with transaction.atomic():
        events.turn_typing(wa_binding.tenant_id, 7, True)
        wa_binding.save(update_fields=["is_active"])
    events.turn_typing(wa_binding.tenant_id, 7, False)
    assert caplog.text.count("live event(s) not published") == 2


def test_a_duplicate_delivery_publishes_nothing(anon, wa_binding, listener):
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "hola")
    post_meta(anon, body)
    assert len(listener()) == 2
    post_meta(anon, body)
    assert listener() == []


async def _close_thread_connections():
    # The bus renders in asgiref's executor thread: close its connection so the test database
    # can be dropped at the end of the session.
    from channels.db import database_sync_to_async
    from django.db import connections

    await database_sync_to_async(connections.close_all)()


class FakeSocket:
    def __init__(self, tenant_id):
        self.tenant_id, self.frames = tenant_id, []

    async def live_event(self, event):
        self.frames.append(event["payload"])

    async def send_json(self, data):
        self.frames.append(data)


def test_the_bus_renders_only_what_somebody_watches(anon, wa_binding, monkeypatch):
    post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola"))
    message = ChatMessage.dangerously_unscoped.get()
    rendered = []
    real_expand = live_bus.expand
    monkeypatch.setattr(live_bus, "expand", lambda event: rendered.append(event["kind"]) or real_expand(event))
    created = json.dumps([{"kind": "message.created", "tenant_id": wa_binding.tenant_id,
                           "conversation_id": message.conversation_id, "message_id": message.pk}])

    async def scenario():
        bus = live_bus.LiveBus()
        await bus.dispatch(created)  # nobody watches: nothing rendered
        inbox, pane = FakeSocket(wa_binding.tenant_id), FakeSocket(wa_binding.tenant_id)
        bus.groups = {f"inbox.{wa_binding.tenant_id}": {inbox},
                      f"conversation.{message.conversation_id}": {pane}}
        await bus.dispatch(created)
        await bus.dispatch("not json")  # logged and ignored
        await _close_thread_connections()
        return inbox, pane

    inbox, pane = asyncio.run(scenario())
    assert rendered == ["message.created"]  # once, for both sockets
    assert inbox.frames == pane.frames
    [payload] = inbox.frames
    assert payload["message"]["id"] == message.pk and payload["message"]["text"] == "hola"
    assert "message_id" not in payload


def test_the_bus_reconnects_and_tells_sockets_to_resync(wa_binding, monkeypatch):
    monkeypatch.setattr(live_bus, "RECONNECT_DELAYS", (0.05,))

    async def scenario():
        bus = live_bus.LiveBus()
        socket = FakeSocket(wa_binding.tenant_id)
        await bus.join(f"inbox.{wa_binding.tenant_id}", socket)
        with psycopg.connect(autocommit=True, **live_bus._conninfo()) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE query = %s AND pid <> pg_backend_pid()", [f"LISTEN {events.CHANNEL}"])
            for _ in range(100):
                if {"kind": "resync"} in [{k: v for k, v in f.items() if k != "type"} for f in socket.frames]:
                    break
                await asyncio.sleep(0.05)
            await asyncio.wait_for(bus.ready.wait(), 10)
            admin.execute("SELECT pg_notify(%s, %s)", [events.CHANNEL, json.dumps(
                [{"kind": "turn.typing", "tenant_id": wa_binding.tenant_id, "conversation_id": 5, "on": True}])])
            for _ in range(100):
                if len(socket.frames) >= 2:
                    break
                await asyncio.sleep(0.05)
        bus.leave(f"inbox.{wa_binding.tenant_id}", socket)
        bus.task.cancel()
        await _close_thread_connections()
        return socket.frames

    frames = asyncio.run(scenario())
    assert frames[0] == {"type": "event", "kind": "resync"}
    assert frames[1] == {"kind": "turn.typing", "tenant_id": wa_binding.tenant_id, "conversation_id": 5, "on": True}


def test_a_successful_send_publishes_its_status_with_the_commit(wa_binding, listener, respx_mock):
    import httpx
    from django.utils import timezone

    from messaging.relay import relay_parts, run_due
    from tests.messaging import factories
    from vault.credentials import set_tenant_credential

    set_tenant_credential(wa_binding.tenant_id, "whatsapp_cloud", "ACCESS_TOKEN", "wa-token-123456")
    respx_mock.post(f"https://graph.test/v23.0/{wa_binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.SENT"}]}))
    conversation = factories.conversation(wa_binding.tenant, binding=wa_binding, contact_external_id="5491100000001",
                                          last_inbound_at=timezone.now())
    [message] = relay_parts(conversation=conversation, parts=["hola"], role="agent")
    assert [e["kind"] for e in listener()] == ["message.created"]
    assert [outcome.status for outcome in run_due()] == ["sent"]
    assert listener() == [{"kind": "message.status", "tenant_id": wa_binding.tenant_id,
                           "conversation_id": conversation.pk, "message_id": message.pk, "status": "sent",
                           "error": ""}]
