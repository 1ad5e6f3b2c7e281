"""Chatwoot and YCloud webhooks: signatures, loop guard, human takeover, duplicates, statuses."""

from __future__ import annotations

import copy
import time

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from messaging.models import ChatConversation, ChatMessage, WebhookCounter, WebhookEvent
from tests.messaging import factories
from tests.messaging.helpers import chatwoot_message, post_chatwoot, post_ycloud, ycloud_inbound
from vault.credentials import set_tenant_credential

pytestmark = pytest.mark.django_db


@pytest.fixture
def cw_binding(tenant_a):
    return factories.binding(tenant_a, provider="chatwoot", channel_source="whatsapp", external_id="12")


@pytest.fixture
def yc_binding(tenant_a):
    set_tenant_credential(tenant_a.pk, "ycloud", "WEBHOOK_SECRET", "yc-secret")
    return factories.binding(tenant_a, provider="ycloud", channel_source="whatsapp", external_id="+15550002222")


def _jobs():
    return ProcrastinateJob.objects.filter(task_name="messaging.answer_conversation")


def test_chatwoot_incoming_becomes_customer_message_with_external_ids(anon, cw_binding):
    body = chatwoot_message(account_id=12, conversation_id=345, message_id=1001, content="Hola, tienen talle 42?")
    response = post_chatwoot(anon, cw_binding.webhook_token, body)
    assert response.status_code == 200, response.content
    message = ChatMessage.dangerously_unscoped.get()
    assert message.role == "customer" and message.text == "Hola, tienen talle 42?"
    conversation = message.conversation
    assert (conversation.external_chatwoot_id, conversation.external_account_id) == ("345", "12")
    assert conversation.contact_external_id == "5491100000000" and conversation.channel_source == "whatsapp"
    assert _jobs().count() == 1


@pytest.mark.parametrize("message_type,sender_type,private", [
    ("outgoing", "agent_bot", False), ("outgoing", "contact", False), ("activity", "user", False),
    ("template", "user", False), ("incoming", "contact", True), (1, "agent_bot", False),
])
def test_chatwoot_loop_guard_never_triggers_the_agent(anon, cw_binding, message_type, sender_type, private):
    body = chatwoot_message(account_id=12, conversation_id=345, message_id=1002, content="bot text",
                            message_type=message_type, sender_type=sender_type, private=private)
    assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 200
    assert not ChatMessage.dangerously_unscoped.filter(role="customer").exists()
    assert not _jobs().exists()


def test_chatwoot_human_agent_reply_pauses_the_bot(anon, cw_binding, settings):
    settings.HUMAN_TAKEOVER_HOURS = 24
    body = chatwoot_message(account_id=12, conversation_id=345, message_id=1003, content="Te ayudo yo",
                            message_type="outgoing", sender_type="user")
    assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 200
    message = ChatMessage.dangerously_unscoped.get()
    assert (message.role, message.direction) == ("human", "out")
    paused = message.conversation.bot_paused_until
    assert paused and 23.9 * 3600 < (paused - message.created_at).total_seconds() <= 24 * 3600 + 5


def test_chatwoot_echo_of_our_own_reply_is_not_a_takeover(anon, cw_binding):
    conversation = factories.conversation(cw_binding.tenant, provider="chatwoot", binding=cw_binding,
                                          contact_external_id="5491100000000", external_chatwoot_id="345",
                                          external_account_id="12")
    from django.utils import timezone

    factories.message(cw_binding.tenant, conversation=conversation, provider="chatwoot", status="sent", error="",
                      text="Sí, hay talle 42", sent_at=timezone.now())  # its Chatwoot id not recorded yet
    body = chatwoot_message(account_id=12, conversation_id=345, message_id=1004, content="Sí, hay talle 42",
                            message_type="outgoing", sender_type="user")
    post_chatwoot(anon, cw_binding.webhook_token, body)
    conversation.refresh_from_db()
    assert conversation.bot_paused_until is None
    assert ChatMessage.dangerously_unscoped.count() == 1


def test_chatwoot_person_writing_the_bots_words_is_still_a_takeover(anon, cw_binding):
    """Once our message's Chatwoot id is recorded, the same text from a person is the person."""
    conversation = factories.conversation(cw_binding.tenant, provider="chatwoot", binding=cw_binding,
                                          contact_external_id="5491100000000", external_chatwoot_id="345",
                                          external_account_id="12")
    factories.message(cw_binding.tenant, conversation=conversation, provider="chatwoot", status="sent", error="",
                      text="¡Gracias!", provider_message_id="2001")
    body = chatwoot_message(account_id=12, conversation_id=345, message_id=2002, content="¡Gracias!",
                            message_type="outgoing", sender_type="user")
    post_chatwoot(anon, cw_binding.webhook_token, body)
    conversation.refresh_from_db()
    assert conversation.bot_paused_until is not None
    assert ChatMessage.dangerously_unscoped.filter(role="human", text="¡Gracias!").count() == 1


def test_chatwoot_human_reply_does_not_shorten_a_longer_pause(anon, cw_binding, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.HUMAN_TAKEOVER_HOURS = 24
    week = timezone.now() + timedelta(days=7)
    conversation = factories.conversation(cw_binding.tenant, provider="chatwoot", binding=cw_binding,
                                          contact_external_id="5491100000000", external_chatwoot_id="345",
                                          external_account_id="12", bot_paused_until=week)
    body = chatwoot_message(account_id=12, conversation_id=345, message_id=2003, content="Te ayudo yo",
                            message_type="outgoing", sender_type="user")
    post_chatwoot(anon, cw_binding.webhook_token, body)
    conversation.refresh_from_db()
    assert conversation.bot_paused_until == week


def _status_changed(conversation_id: int, status: str, account_id: int = 12) -> dict:
    """conversation_status_changed as Chatwoot posts it: the conversation itself, its messages naming the account."""
    return {
        "event": "conversation_status_changed", "id": conversation_id, "status": status, "inbox_id": 1,
        "channel": "Channel::Whatsapp", "can_reply": True,
        "contact_inbox": {"id": 3, "contact_id": 7, "inbox_id": 1, "source_id": "5491100000000"},
        "messages": [{"id": 4001, "content": "hola", "account_id": account_id, "inbox_id": 1,
                      "conversation_id": conversation_id, "message_type": 0, "private": False}],
        "meta": {"sender": {"id": 7, "name": "Ana", "phone_number": "+5491100000000", "type": "contact"}},
        "timestamp": int(time.time()),
    }


def test_chatwoot_staff_resolving_a_conversation_hands_it_back_to_the_bot(anon, cw_binding, settings):
    settings.HUMAN_TAKEOVER_HOURS = 24
    takeover = chatwoot_message(account_id=12, conversation_id=345, message_id=3001, content="Te ayudo yo",
                                message_type="outgoing", sender_type="user")
    post_chatwoot(anon, cw_binding.webhook_token, takeover)
    conversation = ChatConversation.dangerously_unscoped.get()
    assert conversation.bot_paused_until is not None

    assert post_chatwoot(anon, cw_binding.webhook_token, _status_changed(345, "resolved")).status_code == 200
    conversation.refresh_from_db()
    assert conversation.status == "closed" and conversation.bot_paused_until is None

    again = chatwoot_message(account_id=12, conversation_id=345, message_id=3002, content="una cosa más")
    post_chatwoot(anon, cw_binding.webhook_token, again)
    conversation.refresh_from_db()
    assert conversation.status == "bot" and _jobs().count() == 1


@pytest.mark.parametrize("status,conversation_id,account_id", [
    ("open", 345, 12), ("pending", 345, 12), ("snoozed", 345, 12),
    ("resolved", 999, 12),  # a conversation we never saw
    ("resolved", 345, 13),  # another account's conversation 345, on this account's token
])
def test_chatwoot_other_status_changes_leave_the_conversation_alone(anon, cw_binding, status, conversation_id,
                                                                     account_id):
    conversation = factories.conversation(cw_binding.tenant, provider="chatwoot", binding=cw_binding,
                                          contact_external_id="5491100000000", external_chatwoot_id="345",
                                          external_account_id="12", status="human")
    body = _status_changed(conversation_id, status, account_id)
    assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 200
    conversation.refresh_from_db()
    assert conversation.status == "human"


def test_chatwoot_duplicates_by_delivery_header_and_message_id(anon, cw_binding):
    body = chatwoot_message(account_id=12, conversation_id=345, message_id=1005, content="hola")
    post_chatwoot(anon, cw_binding.webhook_token, body, delivery="d-1")
    assert post_chatwoot(anon, cw_binding.webhook_token, body, delivery="d-1").status_code == 200
    assert WebhookEvent.objects.for_tenant(cw_binding.tenant_id).filter(event_id="d-1").count() == 1
    post_chatwoot(anon, cw_binding.webhook_token, body, delivery="d-2")  # same message id, new delivery
    assert ChatMessage.dangerously_unscoped.count() == 1


def test_chatwoot_signature_good_bad_missing_stale(anon, cw_binding):
    set_tenant_credential(cw_binding.tenant_id, "chatwoot", "WEBHOOK_SECRET", "cw-secret")
    body = chatwoot_message(account_id=12, conversation_id=345, message_id=1006, content="hola")
    assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 401  # missing
    assert post_chatwoot(anon, cw_binding.webhook_token, body, secret="cw-secret",
                         signature="sha256=" + "0" * 64).status_code == 401
    assert post_chatwoot(anon, cw_binding.webhook_token, body, secret="cw-secret",
                         timestamp=int(time.time()) - 600).status_code == 401
    assert not ChatMessage.dangerously_unscoped.exists()
    assert post_chatwoot(anon, cw_binding.webhook_token, body, secret="cw-secret").status_code == 200
    assert ChatMessage.dangerously_unscoped.count() == 1


def test_chatwoot_unknown_token_and_wrong_account_store_nothing(anon, cw_binding):
    body = chatwoot_message(account_id=12, conversation_id=345, message_id=1007, content="hola")
    assert post_chatwoot(anon, "no-such-token", body).status_code == 200
    other_account = chatwoot_message(account_id=99, conversation_id=345, message_id=1008, content="hola")
    assert post_chatwoot(anon, cw_binding.webhook_token, other_account).status_code == 200
    assert not ChatMessage.dangerously_unscoped.exists()
    assert WebhookCounter.objects.get(name="chatwoot.unknown_binding").count == 2


def test_a_phone_number_added_to_a_chatwoot_contact_later_keeps_one_conversation(anon, cw_binding):
    first = chatwoot_message(account_id=cw_binding.external_id, conversation_id=345, message_id=2001, content="hola",
                             channel="Channel::WebWidget", phone="")
    first["conversation"]["contact_inbox"] = {"source_id": "5f2c1e0a-widget"}
    later = copy.deepcopy(first)
    later["id"], later["content"] = 2002, "mi número es +54 9 11 0000-0000"
    later["conversation"]["meta"]["sender"]["phone_number"] = "+5491100000000"  # the agent added it
    for body in (first, later):
        assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 200
    conversation = ChatConversation.dangerously_unscoped.get()
    assert conversation.contact_external_id == "5f2c1e0a-widget"
    assert ChatMessage.dangerously_unscoped.filter(conversation=conversation).count() == 2


def test_a_twilio_whatsapp_inbox_keys_the_customer_by_their_number(anon, cw_binding):
    body = chatwoot_message(account_id=cw_binding.external_id, conversation_id=345, message_id=2101, content="hola",
                            channel="Channel::TwilioSms")
    body["conversation"]["contact_inbox"] = {"source_id": "whatsapp:+5491100000000"}
    assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 200
    assert ChatConversation.dangerously_unscoped.get().contact_external_id == "5491100000000"


def _widget_message(binding, *, message_id, conversation_id, source_id, identifier, verified):
    body = chatwoot_message(account_id=binding.external_id, conversation_id=conversation_id, message_id=message_id,
                            content="hola", channel="Channel::WebWidget", phone="")
    body["conversation"]["meta"]["sender"]["identifier"] = identifier
    body["conversation"]["contact_inbox"] = {"source_id": source_id, "hmac_verified": verified}
    return body


def test_a_widget_customer_the_shop_identified_is_one_conversation_across_browsers(anon, cw_binding):
    for message_id, conversation_id, source_id in ((2201, 345, "5f2c1e0a-laptop"), (2202, 346, "77aa01c3-phone")):
        body = _widget_message(cw_binding, message_id=message_id, conversation_id=conversation_id,
                               source_id=source_id, identifier="customer-881", verified=True)
        assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 200
    conversation = ChatConversation.dangerously_unscoped.get()
    assert conversation.contact_external_id == "customer-881"
    assert ChatMessage.dangerously_unscoped.filter(conversation=conversation).count() == 2


def test_an_unverified_widget_identifier_never_joins_that_customers_conversation(anon, cw_binding):
    """Without Chatwoot's identity validation anyone can claim an identifier in setUser: the
    browser's own source id keys them, so the bot never shows them another customer's history."""
    real = _widget_message(cw_binding, message_id=2211, conversation_id=345, source_id="5f2c1e0a-laptop",
                           identifier="customer-881", verified=True)
    impostor = _widget_message(cw_binding, message_id=2212, conversation_id=350, source_id="0bad0bad-other",
                               identifier="customer-881", verified=False)
    for body in (real, impostor):
        assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 200
    keys = set(ChatConversation.dangerously_unscoped.values_list("contact_external_id", flat=True))
    assert keys == {"customer-881", "0bad0bad-other"}


def test_a_chatwoot_conversation_kept_under_another_id_keeps_its_messages(anon, cw_binding, settings):
    """A conversation stored under the key used before source ids (the contact's id) gets the next
    message and the staff reply in the same Chatwoot conversation, not a second conversation."""
    settings.HUMAN_TAKEOVER_HOURS = 24
    kept = factories.conversation(cw_binding.tenant, provider="chatwoot", binding=cw_binding,
                                  contact_external_id="chatwoot-contact:7", external_chatwoot_id="345",
                                  external_account_id=str(cw_binding.external_id))
    customer = chatwoot_message(account_id=cw_binding.external_id, conversation_id=345, message_id=2301,
                                content="sigo acá")
    staff = chatwoot_message(account_id=cw_binding.external_id, conversation_id=345, message_id=2302,
                             content="Te ayudo yo", message_type="outgoing", sender_type="user")
    elsewhere = chatwoot_message(account_id=cw_binding.external_id, conversation_id=999, message_id=2303,
                                 content="otra conversación", phone="+5491100000055")
    for body in (customer, staff, elsewhere):
        assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 200
    assert ChatConversation.dangerously_unscoped.count() == 2
    kept.refresh_from_db()
    assert list(ChatMessage.dangerously_unscoped.filter(conversation=kept).order_by("pk")
                .values_list("role", "text")) == [("customer", "sigo acá"), ("human", "Te ayudo yo")]
    assert kept.bot_paused_until is not None
    assert ChatConversation.dangerously_unscoped.exclude(pk=kept.pk).get().contact_external_id == "5491100000055"


def test_a_reused_chatwoot_conversation_id_never_joins_a_strangers_conversation(anon, cw_binding):
    """Another Chatwoot install on the same account id starts its conversation ids over: conversation
    345 of a different person is not the one we keep as 345."""
    factories.conversation(cw_binding.tenant, provider="chatwoot", binding=cw_binding,
                           contact_external_id="5491100000077", external_chatwoot_id="345",
                           external_account_id=str(cw_binding.external_id))
    body = chatwoot_message(account_id=cw_binding.external_id, conversation_id=345, message_id=2401,
                            content="hola", phone="+5491100000088")
    assert post_chatwoot(anon, cw_binding.webhook_token, body).status_code == 200
    message = ChatMessage.dangerously_unscoped.get()
    assert message.conversation.contact_external_id == "5491100000088"


def test_chatwoot_malformed_json_is_400(anon, cw_binding):
    response = anon.post(f"/webhooks/chatwoot/{cw_binding.webhook_token}/", b"{nope", content_type="application/json")
    assert response.status_code == 400 and "Malformed JSON" in response.json()["detail"]


def test_ycloud_inbound_message(anon, yc_binding):
    body = ycloud_inbound(event_id="evt-1", to="+15550002222", sender="+5491100000009", text="hola ycloud")
    response = post_ycloud(anon, yc_binding.webhook_token, body, secret="yc-secret")
    assert response.status_code == 200, response.content
    message = ChatMessage.dangerously_unscoped.get()
    assert message.text == "hola ycloud" and message.provider_message_id == "wamid.evt-1"
    assert message.conversation.contact_external_id == "5491100000009"
    assert message.conversation.contact_name == "Ana"
    assert _jobs().count() == 1


def test_a_ycloud_customer_without_a_phone_number_is_known_by_their_bsuid(anon, yc_binding):
    body = ycloud_inbound(event_id="evt-bsuid", to="+15550002222", sender="", text="hola, soy @ana")
    inbound = body["whatsappInboundMessage"]
    del inbound["from"]
    inbound["fromUserId"] = "AR.1502576394655843"
    assert post_ycloud(anon, yc_binding.webhook_token, body, secret="yc-secret").status_code == 200
    message = ChatMessage.dangerously_unscoped.get()
    assert message.text == "hola, soy @ana" and message.conversation.contact_external_id == "AR.1502576394655843"


def test_a_ycloud_customer_who_later_hides_their_number_stays_in_their_conversation(anon, yc_binding):
    first = ycloud_inbound(event_id="evt-pair", to="+15550002222", sender="+5491100000009", text="hola")
    first["whatsappInboundMessage"]["fromUserId"] = "AR.99"
    later = ycloud_inbound(event_id="evt-alone", to="+15550002222", sender="", text="sigo yo")
    del later["whatsappInboundMessage"]["from"]
    later["whatsappInboundMessage"]["fromUserId"] = "AR.99"
    for body in (first, later):
        assert post_ycloud(anon, yc_binding.webhook_token, body, secret="yc-secret").status_code == 200
    conversation = ChatConversation.dangerously_unscoped.get()
    assert (conversation.contact_external_id, conversation.contact_user_id) == ("5491100000009", "AR.99")
    assert ChatMessage.dangerously_unscoped.filter(conversation=conversation).count() == 2


def test_ycloud_signatures_and_replays(anon, yc_binding):
    body = ycloud_inbound(event_id="evt-2", to="+15550002222", sender="+5491100000009", text="hola")
    token = yc_binding.webhook_token
    assert post_ycloud(anon, token, body, secret="yc-secret", signature="").status_code == 401
    assert post_ycloud(anon, token, body, secret="wrong").status_code == 401
    assert post_ycloud(anon, token, body, secret="yc-secret", timestamp=int(time.time()) - 301).status_code == 401
    assert post_ycloud(anon, token, body, secret="yc-secret").status_code == 200
    assert post_ycloud(anon, token, body, secret="yc-secret").status_code == 200  # a replay
    assert WebhookEvent.objects.for_tenant(yc_binding.tenant_id).filter(event_id="evt-2").count() == 1
    assert ChatMessage.dangerously_unscoped.count() == 1


def test_ycloud_message_updated_moves_status(anon, yc_binding):
    conversation = factories.conversation(yc_binding.tenant, provider="ycloud", binding=yc_binding)
    outbound = factories.message(yc_binding.tenant, conversation=conversation, provider="ycloud", status="sent",
                                 error="", provider_message_id="yc-out-1")
    for event_id, status in (("e1", "delivered"), ("e2", "read")):
        body = {"id": event_id, "type": "whatsapp.message.updated", "apiVersion": "v2", "createTime": "2026-11-25T01:00:00Z",
                "whatsappMessage": {"id": "yc-out-1", "wamid": "wamid.x", "status": status,
                                    "from": "+15550002222", "to": "+" + conversation.contact_external_id}}
        assert post_ycloud(anon, yc_binding.webhook_token, body, secret="yc-secret").status_code == 200
        outbound.refresh_from_db()
        assert outbound.status == status


def test_ycloud_status_of_a_message_another_tool_sent_does_not_jam_the_inbox(anon, yc_binding):
    """YCloud reports every message of the account; one sent by a CRM carries its own externalId."""
    from messaging.models import InboundDelivery

    conversation = factories.conversation(yc_binding.tenant, provider="ycloud", binding=yc_binding)
    outbound = factories.message(yc_binding.tenant, conversation=conversation, provider="ycloud", status="sent",
                                 error="", provider_message_id="yc-out-9")
    body = {"id": "e-crm", "type": "whatsapp.message.updated", "apiVersion": "v2", "createTime": "2026-11-25T01:00:00Z",
            "whatsappMessage": {"id": "yc-out-9", "wamid": "wamid.y", "status": "delivered", "externalId": "crm-123",
                                "from": "+15550002222", "to": "+" + conversation.contact_external_id}}
    assert post_ycloud(anon, yc_binding.webhook_token, body, secret="yc-secret").status_code == 200
    assert not InboundDelivery.objects.exists()
    outbound.refresh_from_db()
    assert outbound.status == "delivered"


def test_ycloud_unexpected_shape_is_200(anon, yc_binding):
    response = post_ycloud(anon, yc_binding.webhook_token, {"something": "else"}, secret="yc-secret")
    assert response.status_code == 200
    assert not ChatConversation.dangerously_unscoped.exists()


def test_two_chatwoot_installations_with_the_same_account_id_route_by_token(anon, tenant_a, tenant_b):
    a = factories.binding(tenant_a, provider="chatwoot", channel_source="whatsapp", external_id="1")
    b = factories.binding(tenant_b, provider="chatwoot", channel_source="whatsapp", external_id="1")
    for binding, text in ((a, "hola A"), (b, "hola B")):
        body = chatwoot_message(account_id=1, conversation_id=7, message_id=9001, content=text)
        assert post_chatwoot(anon, binding.webhook_token, body).status_code == 200
    stored = {m.tenant_id: m.text for m in ChatMessage.dangerously_unscoped.all()}
    assert stored == {tenant_a.pk: "hola A", tenant_b.pk: "hola B"}
