"""The Meta webhook: verification, signatures, every WhatsApp sample, Messenger and Instagram."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from messaging.models import ChannelBinding, ChatConversation, ChatMessage, WebhookCounter
from messaging.signatures import sign_meta
from tests.messaging import factories
from tests.messaging.helpers import post_meta, whatsapp_text

pytestmark = pytest.mark.django_db

SAMPLES_DIR = Path(__file__).resolve().parents[3] / "shared" / "samples" / "whatsapp-cloud"
if not SAMPLES_DIR.exists():
    SAMPLES_DIR = Path("/work/shared/samples/whatsapp-cloud")
SAMPLES = {
    f"{path.stem}:{name}": body
    for path in sorted(SAMPLES_DIR.glob("*.json"))
    for name, body in json.loads(path.read_text()).items()
}
# Customer messages that must reach the agent (the rest are events, statuses or echoes).
TURN_SAMPLES = {
    "message:text", "message:image", "message:media_with_url", "message:video", "message:document",
    "message:audio", "message:voice", "message:static_sticker", "message:animated_sticker",
    "message:current_location", "message:chosen_location", "message:contacts", "message:order",
    "message:unsupported", "message:unsupported_with_type", "message:reply", "message:forwarded",
    "message:forwarded_many_times", "message:interactive_message_with_err", "message:referral",
    "callback_button:button", "callback_button:quick_reply", "callback_button:quick_reply_without_context",
    "callback_selection:callback", "callback_selection:description",
}


def _bound(body: dict, phone_number_id: str) -> dict:
    """The sample with our bound phone number and a fresh message id (see the samples' README)."""
    body = copy.deepcopy(body)
    for entry in body.get("entry", []):
        for change in entry.get("changes", []):
            value = change.get("value", {})
            value.setdefault("metadata", {})["phone_number_id"] = phone_number_id
            for msg in value.get("messages", []):
                msg["id"] = f"wamid.{uuid.uuid4().hex}"
    return body


def test_samples_cover_all_bodies():
    assert len(SAMPLES) == 42


def test_verification_echoes_challenge(anon):
    ok = anon.get("/webhooks/meta/", {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "42"})
    assert ok.status_code == 200 and ok.content == b"42"
    bad = anon.get("/webhooks/meta/", {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "42"})
    assert bad.status_code == 403


@pytest.mark.parametrize("signature", [None, "", "sha256=deadbeef", "md5=abc"])
def test_bad_or_missing_signature_is_401(anon, wa_binding, signature):
    raw = json.dumps(whatsapp_text(wa_binding.external_id, "5491100000001", "hi")).encode()
    headers = {} if signature is None else {"HTTP_X_HUB_SIGNATURE_256": signature}
    response = anon.post("/webhooks/meta/", raw, content_type="application/json", **headers)
    assert response.status_code == 401
    assert "X-Hub-Signature-256" in response.json()["detail"]
    assert not ChatMessage.dangerously_unscoped.exists()


def test_malformed_json_is_400(anon):
    raw = b'{"entry": [ broken'
    response = anon.post("/webhooks/meta/", raw, content_type="application/json",
                         HTTP_X_HUB_SIGNATURE_256=sign_meta("test-meta-app-secret", raw))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Malformed JSON body")


def test_json_nested_too_deep_to_parse_is_400_and_stores_nothing(anon):
    from messaging.models import InboundDelivery

    raw = b"[" * 200_000 + b"]" * 200_000
    response = anon.post("/webhooks/meta/", raw, content_type="application/json",
                         HTTP_X_HUB_SIGNATURE_256=sign_meta("test-meta-app-secret", raw))
    assert response.status_code == 400 and response.json()["code"] == "malformed_json"
    assert not InboundDelivery.objects.exists()


def test_unexpected_shape_is_200_counted_nothing_stored(anon):
    response = post_meta(anon, {"hello": "world"})
    assert response.status_code == 200
    assert WebhookCounter.objects.get(name="meta_direct.unexpected_shape").count == 1
    assert not ChatMessage.dangerously_unscoped.exists()


def _mangled(wa_binding, where, value):
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "hola")
    change = body["entry"][0]["changes"][0]["value"]
    target = change if where in ("metadata", "contacts", "messages") else change["messages"][0]
    target[where] = value
    return body


@pytest.mark.parametrize("where,value", [
    ("metadata", "x"),                # a string where an object belongs
    ("contacts", [{"profile": "Ana", "wa_id": "5491100000001"}]),
    ("messages", "hola"),
    ("text", ["hola"]),
    ("timestamp", "1e400"),           # no time a calendar has
    ("timestamp", {"seconds": 1}),
])
def test_wrong_field_types_are_an_unexpected_shape_not_a_retried_error(anon, wa_binding, where, value):
    from messaging.models import InboundDelivery

    response = post_meta(anon, _mangled(wa_binding, where, value))
    assert response.status_code == 200
    assert not InboundDelivery.objects.exists()  # processed once, not kept to be tried again
    counted = WebhookCounter.objects.filter(name="meta_direct.unexpected_shape").values_list("count", flat=True)
    stored = ChatMessage.dangerously_unscoped.values_list("text", flat=True)
    assert list(counted) == [1] or list(stored) == ["hola"]  # understood what it could, or counted it


def test_one_odd_message_does_not_cost_the_others_of_its_delivery(anon, wa_binding):
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "primero")
    value = body["entry"][0]["changes"][0]["value"]
    good = value["messages"][0]
    odd = {**good, "id": "wamid.odd", "type": "interactive", "interactive": "not an object"}
    value["messages"] = [good, odd, {**good, "id": "wamid.third", "text": {"body": "tercero"}}]
    value["contacts"] = [{"wa_id": "5491100000001", "profile": "Ana"}]  # a string where an object belongs
    assert post_meta(anon, body).status_code == 200
    texts = sorted(ChatMessage.dangerously_unscoped.values_list("text", flat=True))
    assert "primero" in texts and "tercero" in texts
    # The delivery is kept for the platform admin (the odd message may be readable after a fix),
    # and processing it again stores nothing twice.
    from messaging import inbox
    from messaging.models import InboundDelivery

    kept = InboundDelivery.objects.get()
    assert kept.next_attempt_at is None and "skipped WhatsApp message 1" in kept.last_error
    assert WebhookCounter.objects.get(name="meta_direct.items_skipped").count == 1
    inbox.process_again([kept.pk])
    inbox.drain()
    assert sorted(ChatMessage.dangerously_unscoped.values_list("text", flat=True)) == texts


def test_a_nul_character_in_a_customer_text_is_stored_without_it(anon, wa_binding):
    from messaging.models import InboundDelivery

    body = whatsapp_text(wa_binding.external_id, "5491100000001", "hola\u0000 che", name="A\u0000na")
    post_meta(anon, body)
    assert not InboundDelivery.objects.exists()
    message = ChatMessage.dangerously_unscoped.get()
    assert message.text == "hola che" and message.conversation.contact_name == "Ana"


def test_half_an_emoji_in_a_customer_text_does_not_cost_the_message(anon, wa_binding):
    """JSON can carry a lone surrogate ("\\ud83d" without its pair), which UTF-8 cannot hold."""
    from messaging.models import InboundDelivery

    post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "gracias \ud83d"))
    assert not InboundDelivery.objects.exists()
    assert ChatMessage.dangerously_unscoped.get().text == "gracias ?"


def test_a_whatsapp_flow_reply_reaches_the_agent_with_its_answers(anon, wa_binding):
    """interactive.nfm_reply, as Meta's Flows docs show it: the answers are a JSON string."""
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "unused")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(type="interactive", context={"from": "15550001111", "id": "wamid.flow-sent"}, interactive={
        "type": "nfm_reply",
        "nfm_reply": {"response_json": json.dumps({"flow_token": "tok-1", "talle": "42", "color": "negro"}),
                      "body": "Sent", "name": "flow"}})
    post_meta(anon, body)
    stored = ChatMessage.dangerously_unscoped.get()
    assert stored.text == "[form reply] talle: 42, color: negro"
    assert stored.attachments[0]["type"] == "nfm_reply" and "tok-1" in stored.attachments[0]["response_json"]
    assert stored.role == "customer"  # answered by the agent


def test_unknown_binding_stores_nothing(anon, wa_binding, caplog):
    response = post_meta(anon, whatsapp_text("999000999", "5491100000001", "hi"))
    assert response.status_code == 200
    assert not ChatMessage.dangerously_unscoped.exists()
    assert not ChatConversation.dangerously_unscoped.exists()
    assert WebhookCounter.objects.get(name="meta_direct.unknown_binding").count == 1
    assert "no active channel binding" in caplog.text


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_is_accepted(anon, wa_binding, name):
    response = post_meta(anon, _bound(SAMPLES[name], wa_binding.external_id))
    assert response.status_code == 200, response.content
    customer = ChatMessage.dangerously_unscoped.filter(role="customer", answered_at__isnull=True)
    jobs = ProcrastinateJob.objects.filter(task_name="messaging.answer_conversation")
    if name in TURN_SAMPLES:
        message = customer.get()
        assert message.tenant_id == wa_binding.tenant_id and message.direction == "in"
        assert message.text or message.attachments
        assert jobs.count() == 1
    else:
        assert not customer.exists(), f"{name} must never trigger an agent turn"
        assert not jobs.exists()


@pytest.mark.parametrize("kind", ["image", "video", "document", "audio", "voice", "static_sticker"])
def test_media_become_attachments_with_provider_id_and_type(anon, wa_binding, kind):
    post_meta(anon, _bound(SAMPLES[f"message:{kind}"], wa_binding.external_id))
    attachment = ChatMessage.dangerously_unscoped.get().attachments[0]
    expected = {"static_sticker": "sticker", "voice": "audio"}.get(kind, kind)
    assert attachment["type"] == expected and attachment["media_id"] and attachment["mime_type"]


def test_text_reply_and_button_content(anon, wa_binding):
    post_meta(anon, _bound(SAMPLES["message:reply"], wa_binding.external_id))
    post_meta(anon, _bound(SAMPLES["callback_button:button"], wa_binding.external_id))
    reply, button = ChatMessage.dangerously_unscoped.order_by("id")
    assert reply.text == "replied text" and {"type": "reply_to", "message_id": "wamid.xyzxyz=="} in reply.attachments
    assert button.text == "title" and button.attachments[0] == {"type": "button_reply", "id": "callback_data"}
    conversation = reply.conversation
    assert conversation.contact_external_id == "972987654321" and conversation.contact_name == "Test Name"


def _customer_text(anon, body) -> ChatMessage:
    assert post_meta(anon, body).status_code == 200
    return ChatMessage.dangerously_unscoped.get(role="customer")


def test_a_customer_who_hides_their_number_behind_a_username_is_kept_by_bsuid(anon, wa_binding):
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "hola")
    value = body["entry"][0]["changes"][0]["value"]
    del value["messages"][0]["from"]
    value["messages"][0]["from_user_id"] = "AR.13491208655302741918"
    value["contacts"] = [{"profile": {"name": "Ana"}, "username": "@ana", "user_id": "AR.13491208655302741918"}]
    message = _customer_text(anon, body)
    assert message.text == "hola"
    conversation = message.conversation
    assert conversation.contact_external_id == "AR.13491208655302741918" and conversation.contact_name == "Ana"


def test_a_customer_with_only_a_username_is_shown_by_it(anon, wa_binding):
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "hola")
    value = body["entry"][0]["changes"][0]["value"]
    del value["messages"][0]["from"]
    value["messages"][0]["from_user_id"] = "AR.134"
    value["contacts"] = [{"profile": {"username": "@ana.shop"}, "user_id": "AR.134"}]
    assert _customer_text(anon, body).conversation.contact_name == "@ana.shop"


def _with_user_id(body: dict, user_id: str, *, hide_number: bool) -> dict:
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["user_id"] = user_id
    if hide_number:
        del value["messages"][0]["from"], value["contacts"][0]["wa_id"]
    value["messages"][0]["from_user_id"] = user_id
    return body


def test_a_customer_who_later_hides_their_number_stays_in_their_conversation(anon, wa_binding):
    known = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "hola"), "AR.77", hide_number=False)
    assert post_meta(anon, known).status_code == 200
    conversation = ChatConversation.dangerously_unscoped.get()
    assert (conversation.contact_external_id, conversation.contact_user_id) == ("5491100000001", "AR.77")

    hidden = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "sigo yo"), "AR.77", hide_number=True)
    assert post_meta(anon, hidden).status_code == 200
    assert ChatConversation.dangerously_unscoped.count() == 1
    assert sorted(ChatMessage.dangerously_unscoped.filter(conversation=conversation).values_list("text", flat=True)) == [
        "hola", "sigo yo"]
    # Replies still go to the number the conversation is kept under.
    conversation.refresh_from_db()
    assert conversation.contact_external_id == "5491100000001"


def test_a_customer_first_seen_without_their_number_stays_in_that_conversation_when_it_shows(anon, wa_binding):
    hidden = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "hola"), "AR.80", hide_number=True)
    assert post_meta(anon, hidden).status_code == 200
    conversation = ChatConversation.dangerously_unscoped.get()
    assert conversation.contact_external_id == "AR.80"
    shown = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "sigo"), "AR.80", hide_number=False)
    assert post_meta(anon, shown).status_code == 200
    assert ChatConversation.dangerously_unscoped.get() == conversation
    assert ChatMessage.dangerously_unscoped.filter(conversation=conversation).count() == 2
    conversation.refresh_from_db()  # kept under the number from now on: replies and erasure find it by it
    assert (conversation.contact_external_id, conversation.contact_user_id) == ("5491100000001", "AR.80")
    again = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "y ahora?"), "AR.80", hide_number=True)
    assert post_meta(anon, again).status_code == 200
    assert ChatMessage.dangerously_unscoped.filter(conversation=conversation).count() == 3


def test_a_conversation_kept_under_the_number_before_bsuids_keeps_the_customer(anon, wa_binding):
    """Kept under the number with no BSUID (older, or opened by the shop): a message with the id
    alone cannot know it and opens another; the next one showing the number goes back to the old
    one, and from then on the id alone does too."""
    old = factories.conversation(wa_binding.tenant, binding=wa_binding, contact_external_id="5491100000001")
    hidden = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "uno"), "AR.81", hide_number=True)
    shown = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "dos"), "AR.81", hide_number=False)
    hidden_again = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "tres"), "AR.81",
                                 hide_number=True)
    for body in (hidden, shown, hidden_again):
        assert post_meta(anon, body).status_code == 200
    assert list(ChatMessage.dangerously_unscoped.filter(conversation=old).order_by("pk").values_list(
        "text", flat=True)) == ["dos", "tres"]


def test_a_deleted_conversation_does_not_split_the_customer_later(anon, wa_binding):
    pair = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "hola"), "AR.90", hide_number=False)
    assert post_meta(anon, pair).status_code == 200
    ChatConversation.dangerously_unscoped.all().delete()  # erased at the customer's request
    hidden = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "volví"), "AR.90", hide_number=True)
    shown = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "soy yo"), "AR.90", hide_number=False)
    for body in (hidden, shown):
        assert post_meta(anon, body).status_code == 200
    conversation = ChatConversation.dangerously_unscoped.get()
    assert conversation.contact_external_id == "5491100000001" and conversation.messages.count() == 2


def test_the_pair_and_the_id_alone_in_one_delivery_share_a_conversation(anon, wa_binding):
    body = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "uno"), "AR.78", hide_number=False)
    hidden = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "dos"), "AR.78", hide_number=True)
    body["entry"].append(hidden["entry"][0])
    assert post_meta(anon, body).status_code == 200
    assert ChatConversation.dangerously_unscoped.get().contact_external_id == "5491100000001"
    assert ChatMessage.dangerously_unscoped.count() == 2


def test_an_id_alone_never_joins_another_tenants_conversation(anon, wa_binding, tenant_b):
    other = factories.binding(tenant_b, external_id="PN-OTHER")
    known = _with_user_id(whatsapp_text(other.external_id, "5491100000001", "hola"), "AR.79", hide_number=False)
    assert post_meta(anon, known).status_code == 200
    hidden = _with_user_id(whatsapp_text(wa_binding.external_id, "5491100000001", "hola"), "AR.79", hide_number=True)
    assert post_meta(anon, hidden).status_code == 200
    mine = ChatConversation.dangerously_unscoped.get(tenant=wa_binding.tenant)
    assert mine.contact_external_id == "AR.79"


def test_a_product_question_tells_the_agent_which_product(anon, wa_binding):
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "Is this in stock in M?")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["context"] = {
        "from": "15550002222", "id": "wamid.CATALOG", "referred_product": {
            "catalog_id": "354160437058781", "product_retailer_id": "SKU-RED-DRESS"}}
    message = _customer_text(anon, body)
    assert message.text == "[asking about product SKU-RED-DRESS] Is this in stock in M?"
    assert {"type": "referred_product", "catalog_id": "354160437058781",
            "product_retailer_id": "SKU-RED-DRESS"} in message.attachments


def test_an_order_keeps_its_items_and_the_customers_note(anon, wa_binding):
    body = _bound(SAMPLES["message:order"], wa_binding.external_id)
    body["entry"][0]["changes"][0]["value"]["messages"][0]["order"]["text"] = "deliver tomorrow"
    message = _customer_text(anon, body)
    assert message.text == ("[order] 3× HAMBURGER at 30 ILS, 2× FRENCH_FRIES at 35 ILS, 2× SODA at 10 ILS "
                            "— note: deliver tomorrow")


def test_a_chat_opened_from_an_ad_says_which_ad(anon, wa_binding):
    body = _bound(SAMPLES["message:referral"], wa_binding.external_id)
    msg = body["entry"][0]["changes"][0]["value"]["messages"][0]
    msg["referral"].update(source_type="ad", headline="Zapatillas 2x1")
    msg["text"]["body"] = "Hola, quiero la promo"
    message = _customer_text(anon, body)
    assert message.text == "[came from an ad: Zapatillas 2x1] Hola, quiero la promo"
    assert any(a["type"] == "referral" and a["source_id"] == "ADID" for a in message.attachments)


def test_an_instagram_story_reply_says_so(anon, tenant_a):
    factories.binding(tenant_a, channel_source="instagram", external_id="IG1")
    body = _messenger("instagram", "IG1", [{"sender": {"id": "IGSID1"}, "recipient": {"id": "IG1"}, "timestamp": 1732500000000,
                                           "message": {"mid": "ig_story", "text": "lo tienen en azul?", "reply_to": {
                                               "story": {"url": "https://cdn.test/story.mp4", "id": "1790"}}}}])
    message = _customer_text(anon, body)
    assert message.text == "[replied to your story] lo tienen en azul?"
    assert {"type": "story_reply", "url": "https://cdn.test/story.mp4", "story_id": "1790"} in message.attachments


@pytest.mark.parametrize("status,expected", [("sent", "sent"), ("delivered", "delivered"), ("read", "read"),
                                             ("played", "read"), ("failed", "failed")])
def test_statuses_update_outbound_messages(anon, wa_binding, status, expected):
    conversation = factories.conversation(wa_binding.tenant, binding=wa_binding, contact_external_id="972987654321")
    outbound = factories.message(wa_binding.tenant, conversation=conversation, status="sent", error="",
                                 provider_message_id="wamid.xyzxyz")
    post_meta(anon, _bound(SAMPLES[f"message_status:{status}"], wa_binding.external_id))
    outbound.refresh_from_db()
    assert outbound.status == expected
    if expected == "failed":
        assert "130472" in outbound.error


def test_late_sent_status_never_moves_read_back(anon, wa_binding):
    conversation = factories.conversation(wa_binding.tenant, binding=wa_binding)
    outbound = factories.message(wa_binding.tenant, conversation=conversation, status="read", error="",
                                 provider_message_id="wamid.xyzxyz")
    post_meta(anon, _bound(SAMPLES["message_status:sent"], wa_binding.external_id))
    outbound.refresh_from_db()
    assert outbound.status == "read"


def test_duplicate_delivery_stores_once_and_defers_one_job(anon, wa_binding):
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "hola", message_id="wamid.same")
    for _ in range(3):
        assert post_meta(anon, body).status_code == 200
    assert ChatMessage.dangerously_unscoped.count() == 1
    assert ProcrastinateJob.objects.filter(task_name="messaging.answer_conversation", status="todo").count() == 1


def test_burst_shares_one_pending_buffer_job(anon, wa_binding):
    for text in ("hola", "quiero", "zapatillas"):
        post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", text))
    assert ChatMessage.dangerously_unscoped.count() == 3
    job = ProcrastinateJob.objects.get(task_name="messaging.answer_conversation")
    assert job.queueing_lock == job.lock == f"buffer:{ChatConversation.dangerously_unscoped.get().pk}"


def _messenger(object_kind: str, account: str, items: list) -> dict:
    return {"object": object_kind, "entry": [{"id": account, "time": 1732500000000, "messaging": items}]}


def test_a_thread_reopened_from_an_ad_tells_the_agent_without_answering_it(anon, tenant_a):
    factories.binding(tenant_a, channel_source="facebook", external_id="PAGE1")
    referral = {"sender": {"id": "PSID7"}, "recipient": {"id": "PAGE1"}, "timestamp": 1732500001000,
                "referral": {"ref": "black-friday", "source": "ADS", "type": "OPEN_THREAD", "ad_id": "6045246247433",
                             "ads_context_data": {"ad_title": "Zapatillas 2x1", "photo_url": "https://cdn.test/ad.jpg"}}}
    assert post_meta(anon, _messenger("page", "PAGE1", [referral])).status_code == 200
    assert post_meta(anon, _messenger("page", "PAGE1", [referral])).status_code == 200  # a replay stores nothing
    note = ChatMessage.dangerously_unscoped.get()
    assert note.text == "[came from an ad: Zapatillas 2x1]"
    assert note.attachments == [{"type": "referral", "referral_type": "OPEN_THREAD", "ref": "black-friday",
                                 "source": "ADS", "ad_id": "6045246247433"}]
    assert note.conversation.buffer_due_at is None  # nothing to answer yet
    link = dict(referral, timestamp=1732500002000, referral={"ref": "promo-7", "source": "SHORTLINK", "type": "OPEN_THREAD"})
    assert post_meta(anon, _messenger("page", "PAGE1", [link])).status_code == 200
    assert ChatMessage.dangerously_unscoped.filter(text="[came from a link: “promo-7”]").exists()


def test_messenger_and_instagram_messages_route_by_account(anon, tenant_a, tenant_b):
    factories.binding(tenant_a, channel_source="facebook", external_id="PAGE1")
    factories.binding(tenant_b, channel_source="instagram", external_id="IG1")
    fb = _messenger("page", "PAGE1", [{"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE1"}, "timestamp": 1732500000000,
                                      "message": {"mid": "m_1", "text": "hi page"}}])
    ig = _messenger("instagram", "IG1", [{"sender": {"id": "IGSID1"}, "recipient": {"id": "IG1"}, "timestamp": 1732500000000,
                                         "message": {"mid": "ig_1", "attachments": [
                                             {"type": "image", "payload": {"url": "https://cdn.test/a.jpg"}}]}}])
    assert post_meta(anon, fb).status_code == 200 and post_meta(anon, ig).status_code == 200
    fb_msg = ChatMessage.objects.for_tenant(tenant_a.pk).get()
    ig_msg = ChatMessage.objects.for_tenant(tenant_b.pk).get()
    assert fb_msg.text == "hi page" and fb_msg.conversation.channel_source == "facebook"
    assert ig_msg.attachments[0]["type"] == "image" and ig_msg.conversation.channel_source == "instagram"


def test_messenger_echoes_and_page_messages_are_not_customer_messages(anon, tenant_a):
    factories.binding(tenant_a, channel_source="facebook", external_id="PAGE1")
    body = _messenger("page", "PAGE1", [
        {"sender": {"id": "PAGE1"}, "recipient": {"id": "PSID1"}, "timestamp": 1,
         "message": {"mid": "m_echo", "text": "our reply", "is_echo": True}},
        {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE1"}, "timestamp": 2,
         "reaction": {"mid": "m_1", "action": "react", "emoji": "👍"}},
    ])
    assert post_meta(anon, body).status_code == 200
    assert not ChatMessage.dangerously_unscoped.filter(role="customer").exists()
    assert not ProcrastinateJob.objects.exists()


PAGE_INBOX_APP = 263902037430900  # the app id Meta's echoes carry for the Page inbox / Business Suite


@pytest.mark.parametrize("channel,kind", [("facebook", "page"), ("instagram", "instagram")])
def test_a_reply_typed_in_metas_own_inbox_pauses_the_bot(anon, tenant_a, settings, channel, kind):
    settings.META_APP_ID = "1111"
    factories.binding(tenant_a, channel_source=channel, external_id="ACC1")
    customer = {"sender": {"id": "PSID1"}, "recipient": {"id": "ACC1"}, "timestamp": 1732500000000,
                "message": {"mid": "m_in", "text": "hola?"}}
    typed = {"sender": {"id": "ACC1"}, "recipient": {"id": "PSID1"}, "timestamp": 1732500001000,
             "message": {"mid": "m_typed", "text": "Hola, soy Caro de la tienda", "is_echo": True, "app_id": PAGE_INBOX_APP}}
    ours = {"sender": {"id": "ACC1"}, "recipient": {"id": "PSID1"}, "timestamp": 1732500002000,
            "message": {"mid": "m_ours", "text": "bot text", "is_echo": True, "app_id": 1111}}
    assert post_meta(anon, _messenger(kind, "ACC1", [customer, typed, ours])).status_code == 200

    human = ChatMessage.objects.for_tenant(tenant_a.pk).get(role="human")
    assert human.text == "Hola, soy Caro de la tienda" and human.provider_message_id == "m_typed"
    assert not ChatMessage.objects.for_tenant(tenant_a.pk).filter(provider_message_id="m_ours").exists()
    conversation = human.conversation
    assert conversation.contact_external_id == "PSID1" and conversation.bot_paused_until is not None


def test_without_the_app_id_our_own_echo_is_recognised_by_its_message_id(anon, tenant_a, settings):
    settings.META_APP_ID = ""
    binding = factories.binding(tenant_a, channel_source="facebook", external_id="PAGE1")
    conversation = factories.conversation(tenant_a, binding=binding, channel_source="facebook",
                                          contact_external_id="PSID1")
    factories.message(tenant_a, conversation=conversation, status="sent", error="", text="bot text",
                      provider_message_id="m_ours")
    echo = {"sender": {"id": "PAGE1"}, "recipient": {"id": "PSID1"}, "timestamp": 1732500002000,
            "message": {"mid": "m_ours", "text": "bot text", "is_echo": True, "app_id": 1111}}
    assert post_meta(anon, _messenger("page", "PAGE1", [echo])).status_code == 200
    assert ChatMessage.dangerously_unscoped.count() == 1
    conversation.refresh_from_db()
    assert conversation.bot_paused_until is None


def test_a_reply_from_the_whatsapp_business_app_pauses_the_bot(anon, wa_binding):
    body = _bound(SAMPLES["outgoing_message:text"], wa_binding.external_id)
    echo = body["entry"][0]["changes"][0]["value"]["message_echoes"][0]
    echo.update({"from": "972123456789", "to": "972987654321", "id": "wamid.FROM_THE_APP"})
    assert post_meta(anon, body).status_code == 200
    human = ChatMessage.dangerously_unscoped.get()
    assert (human.role, human.direction, human.text) == ("human", "out", "Test message")
    assert human.conversation.contact_external_id == "972987654321" and human.conversation.bot_paused_until
    assert post_meta(anon, _bound(SAMPLES["outgoing_message:delete"], wa_binding.external_id)).status_code == 200
    assert ChatMessage.dangerously_unscoped.count() == 1  # a deletion from the app changes nothing


def test_a_business_app_reply_to_a_customer_known_by_number_and_bsuid_pauses_their_conversation(anon, wa_binding):
    """The app's echo to a customer who now hides their number names them by BSUID alone: it is
    the conversation kept under the number that pauses, not a second one."""
    known = _with_user_id(whatsapp_text(wa_binding.external_id, "972987654321", "hola"), "IL.55", hide_number=False)
    assert post_meta(anon, known).status_code == 200
    body = _bound(SAMPLES["outgoing_message:text"], wa_binding.external_id)
    echo = body["entry"][0]["changes"][0]["value"]["message_echoes"][0]
    echo.update({"from": "972123456789", "id": "wamid.APP_TO_BSUID", "to_user_id": "IL.55"})
    del echo["to"]
    assert post_meta(anon, body).status_code == 200
    conversation = ChatConversation.dangerously_unscoped.get()
    assert conversation.contact_external_id == "972987654321" and conversation.bot_paused_until
    assert ChatMessage.dangerously_unscoped.get(role="human").conversation == conversation


def test_messenger_delivery_and_read_receipts(anon, tenant_a):
    binding = factories.binding(tenant_a, channel_source="facebook", external_id="PAGE1")
    conversation = factories.conversation(tenant_a, binding=binding, channel_source="facebook",
                                          contact_external_id="PSID1")
    outbound = factories.message(tenant_a, conversation=conversation, status="sent", error="", provider_message_id="m_out")
    post_meta(anon, _messenger("page", "PAGE1", [{"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE1"},
                                                  "timestamp": 5, "delivery": {"mids": ["m_out"], "watermark": 5}}]))
    outbound.refresh_from_db()
    assert outbound.status == "delivered"
    outbound.sent_at = outbound.created_at
    outbound.save()
    post_meta(anon, _messenger("page", "PAGE1", [{"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE1"},
                                                  "timestamp": 9999999999999, "read": {"watermark": 9999999999999}}]))
    outbound.refresh_from_db()
    assert outbound.status == "read"


def test_a_messenger_delivery_receipt_without_mids_counts_by_its_watermark(anon, tenant_a):
    from django.utils import timezone

    binding = factories.binding(tenant_a, channel_source="facebook", external_id="PAGE1")
    conversation = factories.conversation(tenant_a, binding=binding, channel_source="facebook",
                                          contact_external_id="PSID1")
    sent_at = timezone.now()
    earlier = factories.message(tenant_a, conversation=conversation, status="sent", error="", sent_at=sent_at)
    read = factories.message(tenant_a, conversation=conversation, status="read", error="", sent_at=sent_at)
    watermark = int(sent_at.timestamp() * 1000) + 1000
    post_meta(anon, _messenger("page", "PAGE1", [{"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE1"},
                                                  "timestamp": watermark, "delivery": {"watermark": watermark}}]))
    earlier.refresh_from_db()
    read.refresh_from_db()
    assert (earlier.status, read.status) == ("delivered", "read")  # never moved back


def test_an_instagram_deletion_is_kept_beside_the_message_it_deletes(anon, tenant_a):
    factories.binding(tenant_a, channel_source="instagram", external_id="IG1")
    said = {"sender": {"id": "IGSID1"}, "recipient": {"id": "IG1"}, "timestamp": 1732500000000,
            "message": {"mid": "ig_9", "text": "quiero 3"}}
    deleted = {"sender": {"id": "IGSID1"}, "recipient": {"id": "IG1"}, "timestamp": 1732500005000,
               "message": {"mid": "ig_9", "is_deleted": True}}
    post_meta(anon, _messenger("instagram", "IG1", [said]))
    post_meta(anon, _messenger("instagram", "IG1", [deleted]))
    texts = list(ChatMessage.dangerously_unscoped.order_by("id").values_list("text", "role"))
    assert texts == [("quiero 3", "customer"), ("[deleted a message]", "system")]


def test_standby_events_are_counted_not_answered(anon, tenant_a):
    factories.binding(tenant_a, channel_source="facebook", external_id="PAGE1")
    body = {"object": "page", "entry": [{"id": "PAGE1", "time": 1732500000000, "standby": [
        {"sender": {"id": "PSID1"}, "recipient": {"id": "PAGE1"}, "timestamp": 1732500000000,
         "message": {"mid": "m_sb", "text": "hola"}}]}]}
    assert post_meta(anon, body).status_code == 200
    assert not ChatMessage.dangerously_unscoped.exists()
    assert WebhookCounter.objects.get(name="meta_direct.standby").count == 1


class TestCachedBindingIsAlwaysRechecked:
    """The webhook routes customer messages by a binding cached in the process; the database has
    the last word in the same statement that writes."""

    def _send(self, anon, binding, text):
        return post_meta(anon, whatsapp_text(binding.external_id, "5491100000001", text))

    def test_a_deactivated_binding_stores_nothing_even_when_cached(self, anon, wa_binding):
        assert self._send(anon, wa_binding, "uno").status_code == 200  # cache warmed
        assert ChatMessage.dangerously_unscoped.count() == 1
        ChannelBinding.dangerously_unscoped.filter(pk=wa_binding.pk).update(is_active=False)
        assert self._send(anon, wa_binding, "dos").status_code == 200
        assert list(ChatMessage.dangerously_unscoped.values_list("text", flat=True)) == ["uno"]
        assert WebhookCounter.objects.get(name="meta_direct.unknown_binding").count == 1

    def test_an_account_moved_to_another_tenant_writes_there(self, anon, wa_binding, tenant_b):
        self._send(anon, wa_binding, "uno")
        ChannelBinding.dangerously_unscoped.filter(pk=wa_binding.pk).delete()
        moved = factories.binding(tenant_b, external_id=wa_binding.external_id)
        assert self._send(anon, moved, "dos").status_code == 200
        message = ChatMessage.dangerously_unscoped.get(text="dos")
        assert message.tenant_id == tenant_b.pk and message.conversation.tenant_id == tenant_b.pk
        assert message.conversation.binding_id == moved.pk

    def test_a_new_agent_on_the_binding_answers_new_and_existing_conversations_at_once(self, anon, wa_binding):
        from datetime import timedelta

        from django.utils import timezone

        from agents.models import Agent
        from agents.turns import TurnResult
        from messaging.buffer import run_buffer

        self._send(anon, wa_binding, "uno")  # a customer who wrote before the change
        agent = Agent.objects.for_tenant(wa_binding.tenant_id).create(tenant_id=wa_binding.tenant_id, name="Nuevo")
        ChannelBinding.dangerously_unscoped.filter(pk=wa_binding.pk).update(agent=agent)
        post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000777", "hola"))  # a new one
        conversations = ChatConversation.dangerously_unscoped.all()
        assert len(conversations) == 2
        for conversation in conversations:
            turns = []
            run_buffer(tenant_id=conversation.tenant_id, conversation_id=conversation.pk,
                       clock=lambda: timezone.now() + timedelta(minutes=1),
                       turn_runner=lambda **kwargs: turns.append(kwargs) or TurnResult(parts=["ok"]))
            assert [turn["agent_id"] for turn in turns] == [agent.pk], conversation.contact_external_id
