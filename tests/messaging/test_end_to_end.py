"""A message posted to each webhook as its provider posts it produces, after the buffer, one agent
reply through the right provider to the right conversation: real run_turn against the fake
OpenAI-protocol server, providers faked at the HTTP edge (respx)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import respx
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from messaging.buffer import run_buffer
from messaging.models import ChatConversation, ChatMessage
from messaging import relay
from tests.fakes.openai_server import Reply
from tests.messaging import factories
from tests.messaging.helpers import (
    chatwoot_message,
    post_chatwoot,
    post_meta,
    post_ycloud,
    whatsapp_text,
    ycloud_inbound,
)
from vault.credentials import set_tenant_credential

pytestmark = pytest.mark.django_db
GRAPH = "https://graph.test/v23.0"


def _answer_and_deliver(conversation):
    """What the worker does: the buffer job after the window, then the relay's sends in lane
    order (each send makes the lane's next message due)."""
    later = timezone.now() + timedelta(seconds=17)
    outcome = run_buffer(tenant_id=conversation.tenant_id, conversation_id=conversation.pk, clock=lambda: later)
    while relay.run_due(now=timezone.now() + timedelta(days=1)):
        pass
    return outcome


def _texts(route) -> list[str]:
    bodies = [httpx.Response(200, content=call.request.content).json() for call in route.calls]
    return [b.get("content") or (b.get("text") or {}).get("body") or (b.get("message") or {}).get("text")
            for b in bodies]


@respx.mock
def test_whatsapp_cloud_end_to_end(anon, wa_binding, agent_a, model_a):
    wa_binding.agent = agent_a
    wa_binding.save()
    set_tenant_credential(wa_binding.tenant_id, "whatsapp_cloud", "ACCESS_TOKEN", "wa-token-e2e")
    set_tenant_credential(wa_binding.tenant_id, "whatsapp_cloud", "PHONE_NUMBER_ID", wa_binding.external_id)
    route = respx.post(f"{GRAPH}/{wa_binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.reply"}]}))
    model_a.push(Reply.text("¡Hola Ana! Sí, tenemos talle 42."))
    post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola"))
    post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "tienen talle 42?"))
    conversation = ChatConversation.dangerously_unscoped.get()
    assert _answer_and_deliver(conversation).startswith("answered 2 message(s)")
    assert len(model_a.requests) == 1  # one turn for the burst
    assert model_a.messages()[-1] == {"role": "user", "content": "hola\ntienen talle 42?"}
    assert _texts(route) == ["¡Hola Ana! Sí, tenemos talle 42."]
    assert httpx.Response(200, content=route.calls.last.request.content).json()["to"] == "5491100000001"
    reply = ChatMessage.dangerously_unscoped.get(direction="out")
    assert (reply.status, reply.provider_message_id, reply.role) == ("sent", "wamid.reply", "agent")


@respx.mock
def test_chatwoot_end_to_end_replies_in_the_same_chatwoot_conversation(anon, tenant_a, agent_a, model_a):
    binding = factories.binding(tenant_a, provider="chatwoot", channel_source="whatsapp", external_id="12",
                                agent=agent_a)
    set_tenant_credential(tenant_a.pk, "chatwoot", "BASE_URL", "https://chat.shop.test")
    set_tenant_credential(tenant_a.pk, "chatwoot", "ACCOUNT_ID", "12")
    set_tenant_credential(tenant_a.pk, "chatwoot", "CHATWOOT_API_TOKEN", "cw-api-token")
    route = respx.post("https://chat.shop.test/api/v1/accounts/12/conversations/345/messages").mock(
        return_value=httpx.Response(200, json={"id": 9001}))
    model_a.push(Reply.text("Claro, te ayudo."))
    post_chatwoot(anon, binding.webhook_token,
                  chatwoot_message(account_id=12, conversation_id=345, message_id=77, content="necesito ayuda"))
    conversation = ChatConversation.dangerously_unscoped.get()
    _answer_and_deliver(conversation)
    assert _texts(route) == ["Claro, te ayudo."]
    assert route.calls.last.request.headers["api_access_token"] == "cw-api-token"
    # Chatwoot echoes our reply as an outgoing message: not a takeover, not a customer message.
    post_chatwoot(anon, binding.webhook_token,
                  chatwoot_message(account_id=12, conversation_id=345, message_id=9001, content="Claro, te ayudo.",
                                   message_type="outgoing", sender_type="user"))
    conversation.refresh_from_db()
    assert conversation.bot_paused_until is None
    assert ChatMessage.dangerously_unscoped.count() == 2


@respx.mock
def test_ycloud_end_to_end(anon, tenant_a, agent_a, model_a):
    for name, value in (("API_KEY", "yc-key"), ("WEBHOOK_SECRET", "yc-secret"), ("FROM_NUMBER", "+15550002222")):
        set_tenant_credential(tenant_a.pk, "ycloud", name, value)
    binding = factories.binding(tenant_a, provider="ycloud", external_id="+15550002222", agent=agent_a)
    route = respx.post("https://ycloud.test/v2/whatsapp/messages").mock(
        return_value=httpx.Response(200, json={"id": "yc-out", "status": "accepted"}))
    model_a.push(Reply.text("Hola desde YCloud"))
    post_ycloud(anon, binding.webhook_token,
                ycloud_inbound(event_id="evt-e2e", to="+15550002222", sender="+5491100000009", text="hola"),
                secret="yc-secret")
    _answer_and_deliver(ChatConversation.dangerously_unscoped.get())
    assert _texts(route) == ["Hola desde YCloud"]
    assert httpx.Response(200, content=route.calls.last.request.content).json()["to"] == "+5491100000009"


@respx.mock
@pytest.mark.parametrize("kind,channel", [("page", "facebook"), ("instagram", "instagram")])
def test_messenger_and_instagram_end_to_end(anon, tenant_a, agent_a, model_a, kind, channel):
    factories.binding(tenant_a, channel_source=channel, external_id="ACC1", agent=agent_a)
    set_tenant_credential(tenant_a.pk, "meta", "USER_TOKEN", "user-token")
    set_tenant_credential(tenant_a.pk, "meta", "PAGE_TOKEN", "page-token")
    route = respx.post(f"{GRAPH}/me/messages").mock(
        return_value=httpx.Response(200, json={"recipient_id": "PSID1", "message_id": "m_reply"}))
    model_a.push(Reply.text(f"Hola por {channel}"))
    sent_ms = int(timezone.now().timestamp() * 1000)  # Messenger's milliseconds; the 24 h window runs from it
    post_meta(anon, {"object": kind, "entry": [{"id": "ACC1", "time": sent_ms, "messaging": [
        {"sender": {"id": "PSID1"}, "recipient": {"id": "ACC1"}, "timestamp": sent_ms,
         "message": {"mid": f"mid-{channel}", "text": "hola"}}]}]})
    _answer_and_deliver(ChatConversation.dangerously_unscoped.get())
    assert _texts(route) == [f"Hola por {channel}"]
    body = httpx.Response(200, content=route.calls.last.request.content).json()
    assert body["recipient"] == {"id": "PSID1"} and body["messaging_type"] == "RESPONSE"


def test_missing_model_key_is_shown_on_the_conversation(anon, wa_binding, agent_a):
    wa_binding.agent = agent_a
    wa_binding.save()
    post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola"))
    conversation = ChatConversation.dangerously_unscoped.get()
    assert _answer_and_deliver(conversation) == "error: OpenAI credentials not configured"
    conversation.refresh_from_db()
    assert conversation.last_error == "OpenAI credentials not configured"
    assert not ChatMessage.dangerously_unscoped.filter(direction="out").exists()


@respx.mock
def test_handoff_pauses_the_bot_and_emails_the_transcript(anon, wa_binding, agent_a, model_a,
                                                           django_capture_on_commit_callbacks, smtp_server):
    agent_a.enabled_tools = ["handoff_to_human"]
    agent_a.save()
    wa_binding.agent = agent_a
    wa_binding.save()
    tenant_id = wa_binding.tenant_id
    for name, value in smtp_server.credentials(FROM="bot@shop.test", HANDOFF_TO="humans@shop.test").items():
        set_tenant_credential(tenant_id, "smtp", name, value)
    set_tenant_credential(tenant_id, "whatsapp_cloud", "ACCESS_TOKEN", "wa-token")
    respx.post(f"{GRAPH}/{wa_binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.h"}]}))
    model_a.push(Reply.tool_call("handoff_to_human", {"reason": "quiere hablar con una persona"}),
                 Reply.text("Te paso con una persona del equipo."))
    post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "quiero hablar con alguien"))
    conversation = ChatConversation.dangerously_unscoped.get()
    with django_capture_on_commit_callbacks(execute=True):
        _answer_and_deliver(conversation)
    conversation.refresh_from_db()
    assert conversation.status == "human" and conversation.bot_paused_until > timezone.now()
    job = ProcrastinateJob.objects.get(task_name="messaging.send_handoff_email")
    from messaging.handoff import email_transcript

    assert email_transcript(**job.args) == "sent"
    [envelope] = smtp_server.envelopes
    body = envelope.content.decode()
    assert envelope.rcpt_tos == ["humans@shop.test"]
    assert "quiero hablar con alguien" in body and "quiere hablar con una persona" in body


@respx.mock
def test_a_chatwoot_handoff_opens_the_conversation_in_chatwoot(anon, tenant_a, agent_a, model_a,
                                                               django_capture_on_commit_callbacks):
    from messaging.handoff import ChatwootUnavailable, open_in_chatwoot

    agent_a.enabled_tools = ["handoff_to_human"]
    agent_a.save()
    binding = factories.binding(tenant_a, provider="chatwoot", channel_source="whatsapp", external_id="12",
                                agent=agent_a)
    set_tenant_credential(tenant_a.pk, "chatwoot", "BASE_URL", "https://chat.shop.test")
    set_tenant_credential(tenant_a.pk, "chatwoot", "CHATWOOT_BOT_TOKEN", "cw-bot-token")
    respx.post("https://chat.shop.test/api/v1/accounts/12/conversations/345/messages").mock(
        return_value=httpx.Response(200, json={"id": 9002}))
    toggle = respx.post("https://chat.shop.test/api/v1/accounts/12/conversations/345/toggle_status").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"payload": {"success": True,
                                                                                 "current_status": "open"}}),
                     httpx.Response(404, json={"error": "Resource could not be found"})])
    model_a.push(Reply.tool_call("handoff_to_human", {"reason": "reclamo"}), Reply.text("Te paso con el equipo."))
    post_chatwoot(anon, binding.webhook_token,
                  chatwoot_message(account_id=12, conversation_id=345, message_id=78, content="quiero un humano"))
    conversation = ChatConversation.dangerously_unscoped.get()
    with django_capture_on_commit_callbacks(execute=True):
        _answer_and_deliver(conversation)
    job = ProcrastinateJob.objects.get(task_name="messaging.open_in_chatwoot")
    assert job.args == {"tenant_id": tenant_a.pk, "conversation_id": conversation.pk}
    with pytest.raises(ChatwootUnavailable):  # Chatwoot down: the job's retry runs it again
        open_in_chatwoot(**job.args)
    assert open_in_chatwoot(**job.args) == "opened"
    request = toggle.calls.last.request
    assert request.headers["api_access_token"] == "cw-bot-token" and request.content == b'{"status":"open"}'
    assert open_in_chatwoot(**job.args).startswith("not opened: Chatwoot answered HTTP 404")  # not retried
