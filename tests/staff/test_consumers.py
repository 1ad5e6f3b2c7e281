"""Staff websockets: session user → tenant from the users table, 4404 for other tenants'
conversations, error frames that keep the socket up, live events, and the frame actions."""

from __future__ import annotations

import json

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from messaging import events
from messaging.models import ChatConversation, ChatMessage
from messaging.routing import websocket_urlpatterns
from tests.messaging import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_consumer_connections():
    # Consumers query from asgiref's shared executor thread; close its connection after each
    # test so the test database can be dropped at the end of the session.
    yield
    from channels.db import database_sync_to_async
    from django.db import connections

    await database_sync_to_async(connections.close_all)()


def socket(path: str, user=None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    if user is not None:
        communicator.scope["user"] = user
    return communicator


async def open_socket(path: str, user) -> WebsocketCommunicator:
    communicator = socket(path, user)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def frame(communicator, data) -> dict:
    await communicator.send_to(text_data=json.dumps(data) if not isinstance(data, str) else data)
    return json.loads(await communicator.receive_from(timeout=15))


async def assert_closed_with(communicator, code: int):
    connected, _ = await communicator.connect()
    assert connected  # accepted so the browser can read the code...
    output = await communicator.receive_output(timeout=15)
    assert output == {"type": "websocket.close", "code": code}  # ...and nothing was sent before
    assert await communicator.receive_nothing()


async def test_anonymous_socket_is_closed_4401():
    from django.contrib.auth.models import AnonymousUser

    await assert_closed_with(socket("/ws/inbox/", AnonymousUser()), 4401)


async def test_other_tenants_conversation_closes_4404_with_nothing_sent(user_a, tenant_b):
    theirs = await ChatConversation.dangerously_unscoped.acreate(
        tenant=tenant_b, provider="meta_direct", channel_source="whatsapp", contact_external_id="5491100000001"
    )
    await assert_closed_with(socket(f"/ws/conversations/{theirs.pk}/", user_a), 4404)
    await assert_closed_with(socket("/ws/conversations/999999/", user_a), 4404)


async def test_platform_admin_without_tenant_is_refused(platform_admin):
    await assert_closed_with(socket("/ws/inbox/", platform_admin), 4403)


async def test_bad_frames_answer_errors_and_the_socket_stays_up(user_a):
    communicator = await open_socket("/ws/inbox/", user_a)
    error = await frame(communicator, "{not json")
    assert error["type"] == "error" and error["code"] == "invalid_json"
    error = await frame(communicator, {"type": "explode"})
    assert error["code"] == "unknown_type" and "'explode'" in error["detail"] and "inbox" in error["detail"]
    error = await frame(communicator, [1, 2])
    assert error["code"] == "invalid_frame"
    assert await frame(communicator, {"type": "ping"}) == {"type": "pong"}
    await communicator.disconnect()


async def test_live_events_reach_the_tenants_inbox_and_pane_only(user_a, user_b, tenant_a):
    conversation = await ChatConversation.dangerously_unscoped.acreate(
        tenant=tenant_a, provider="meta_direct", channel_source="whatsapp", contact_external_id="5491100000002"
    )
    inbox_a = await open_socket("/ws/inbox/", user_a)
    inbox_b = await open_socket("/ws/inbox/", user_b)
    pane = await open_socket(f"/ws/conversations/{conversation.pk}/", user_a)
    from asgiref.sync import sync_to_async

    await sync_to_async(events.publish)(tenant_a.pk, conversation.pk, events.TURN_TYPING, on=True)
    for communicator in (inbox_a, pane):
        event = json.loads(await communicator.receive_from(timeout=15))
        assert event == {"type": "event", "kind": "turn.typing", "tenant_id": tenant_a.pk,
                         "conversation_id": conversation.pk, "on": True}
    assert await inbox_b.receive_nothing()
    for communicator in (inbox_a, inbox_b, pane):
        await communicator.disconnect()


async def test_inbox_snapshot_has_last_message_and_unread(user_a, tenant_a):
    from asgiref.sync import sync_to_async

    conversation = await sync_to_async(factories.conversation)(tenant_a, contact_name="Ana")
    for direction, text in [("in", "hola"), ("out", "¡Hola Ana!"), ("in", "¿tienen puntas?"), ("in", "talle 38")]:
        await sync_to_async(factories.message)(
            tenant_a, conversation=conversation, direction=direction, text=text,
            role="customer" if direction == "in" else "agent", status="received" if direction == "in" else "sent",
        )
    communicator = await open_socket("/ws/inbox/", user_a)
    ack = await frame(communicator, {"type": "inbox", "request": 7})
    assert ack["type"] == "ack" and ack["request"] == 7
    [row] = ack["conversations"]
    assert row["name"] == "Ana" and row["last_text"] == "talle 38" and row["unread"] == 2
    await communicator.disconnect()


async def test_reply_pauses_the_bot_and_publishes_the_message(user_a, tenant_a):
    from asgiref.sync import sync_to_async

    await sync_to_async(factories.binding)(tenant_a, external_id="1122334455667")
    conversation = await sync_to_async(factories.conversation)(tenant_a)
    pane = await open_socket(f"/ws/conversations/{conversation.pk}/", user_a)
    await pane.send_to(text_data=json.dumps({"type": "reply", "text": "Soy Marta, te ayudo yo", "request": "r1"}))
    frames = [json.loads(await pane.receive_from(timeout=15)) for _ in range(3)]
    kinds = {f.get("kind") or f["type"] for f in frames}
    assert kinds == {"ack", "message.created", "conversation.updated"}
    ack = next(f for f in frames if f["type"] == "ack")
    message = await ChatMessage.dangerously_unscoped.aget(pk=ack["message_ids"][0])
    assert message.role == "human" and message.sent_by_id == user_a.pk
    await conversation.arefresh_from_db()
    assert conversation.bot_paused_until is not None
    await pane.disconnect()


async def test_reply_to_a_closed_conversation_is_refused_clearly(user_a, tenant_a):
    from asgiref.sync import sync_to_async

    conversation = await sync_to_async(factories.conversation)(tenant_a, status="closed")
    pane = await open_socket(f"/ws/conversations/{conversation.pk}/", user_a)
    error = await frame(pane, {"type": "reply", "text": "hola"})
    assert error["code"] == "conversation_closed"
    assert f"Conversation {conversation.pk} is closed" in error["detail"]
    error = await frame(pane, {"type": "reply", "text": "   "})
    assert error["code"] == "invalid_text"
    assert await frame(pane, {"type": "ping"}) == {"type": "pong"}
    await pane.disconnect()


async def test_retry_only_for_messages_of_this_conversation(user_a, tenant_a, tenant_b):
    from asgiref.sync import sync_to_async

    mine = await sync_to_async(factories.message)(tenant_a)
    theirs = await sync_to_async(factories.message)(tenant_b)
    pane = await open_socket(f"/ws/conversations/{mine.conversation_id}/", user_a)
    error = await frame(pane, {"type": "retry", "message_id": theirs.pk})
    assert error["code"] == "not_found" and "not found or access denied" in error["detail"]
    frames = []
    await pane.send_to(text_data=json.dumps({"type": "retry", "message_id": mine.pk}))
    frames = [json.loads(await pane.receive_from(timeout=15)) for _ in range(2)]
    ack = next(f for f in frames if f["type"] == "ack")
    assert ack["status"] == "queued"
    await pane.disconnect()


async def test_playground_frames_only_on_playground_conversations(user_a, tenant_a):
    from asgiref.sync import sync_to_async

    conversation = await sync_to_async(factories.conversation)(tenant_a)
    pane = await open_socket(f"/ws/conversations/{conversation.pk}/", user_a)
    error = await frame(pane, {"type": "say", "text": "hola"})
    assert error["code"] == "not_playground"
    await pane.disconnect()
