"""Live events: published after commit to the inbox and conversation groups; failures never break."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from messaging import events
from messaging.models import ChatMessage
from tests.messaging.helpers import post_meta, whatsapp_text

pytestmark = pytest.mark.django_db


def _listen(group: str) -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def _drain(channel: str) -> list[dict]:
    layer = get_channel_layer()
    received = []
    while True:
        try:
            message = async_to_sync(layer.receive)(channel) if layer.channels.get(channel) else None
        except Exception:
            message = None
        if not message:
            return received
        received.append(message)


def test_webhook_publishes_message_created_after_commit(anon, wa_binding, django_capture_on_commit_callbacks):
    inbox = _listen(f"inbox.{wa_binding.tenant_id}")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola"))
    assert _drain(inbox) == []  # nothing before commit
    for callback in callbacks:
        callback()
    received = _drain(inbox)
    kinds = [m["payload"]["kind"] for m in received]
    assert kinds == ["message.created", "conversation.updated"]
    assert all(m["type"] == "live.event" for m in received)
    message = ChatMessage.dangerously_unscoped.get()
    assert received[0]["payload"]["message"]["id"] == message.pk
    assert received[0]["payload"]["message"]["text"] == "hola"
    conversation_group = _listen(f"conversation.{message.conversation_id}")
    with django_capture_on_commit_callbacks(execute=True):
        events.turn_typing(wa_binding.tenant_id, message.conversation_id, True)
    assert _drain(conversation_group)[0]["payload"] == {
        "kind": "turn.typing", "tenant_id": wa_binding.tenant_id, "conversation_id": message.conversation_id, "on": True}


def test_a_broken_channel_layer_never_breaks_the_webhook(anon, wa_binding, settings, django_capture_on_commit_callbacks):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "no.such.Layer"}}
    with django_capture_on_commit_callbacks(execute=True):
        response = post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola"))
    assert response.status_code == 200
    assert ChatMessage.dangerously_unscoped.count() == 1
