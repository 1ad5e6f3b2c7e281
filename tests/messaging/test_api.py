"""API: channels with webhook URLs, conversations (filters, search), messages (cursor), takeover,
retry, and POST /messages/relay authentication."""

from __future__ import annotations

import httpx
import pytest
import respx
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import ChannelBinding, ChatMessage, DeliveryLane
from tests.messaging import factories
from vault.credentials import set_tenant_credential

GRAPH = "https://graph.test/v23.0"

pytestmark = pytest.mark.django_db


def test_channel_crud_shows_webhook_url(api_a, tenant_a, settings):
    settings.PUBLIC_BASE_URL = "https://platform.example"
    created = api_a.post("/api/v1/channels/", {"provider": "chatwoot", "channel_source": "whatsapp", "external_id": "12"},
                         format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    binding = ChannelBinding.objects.for_tenant(tenant_a.pk).get()
    assert body["webhook_url"] == f"https://platform.example/webhooks/chatwoot/{binding.webhook_token}/"
    set_tenant_credential(tenant_a.pk, "meta", "PAGE_TOKEN", "page-token-a")
    with respx.mock:
        respx.get(f"{GRAPH}/me").mock(return_value=httpx.Response(
            200, json={"id": "PAGE1", "instagram_business_account": {"id": "IG1"}}))
        meta = api_a.post("/api/v1/channels/", {"provider": "meta_direct", "channel_source": "instagram",
                                                "external_id": "IG1"}, format="json").json()
    assert meta["webhook_url"] == "https://platform.example/webhooks/meta/"
    assert api_a.patch(f"/api/v1/channels/{body['id']}/", {"is_active": False}, format="json").status_code == 200
    assert len(api_a.get("/api/v1/channels/").json()["results"]) == 2


def test_channel_external_id_is_unique_across_tenants(api_a, tenant_b):
    factories.binding(tenant_b, provider="meta_direct", external_id="PN1")
    response = api_a.post("/api/v1/channels/", {"provider": "meta_direct", "channel_source": "whatsapp",
                                                "external_id": "PN1"}, format="json")
    assert response.status_code == 400 and "already bound" in response.json()["detail"]


def _bind(api, channel_source, external_id):
    return api.post("/api/v1/channels/", {"provider": "meta_direct", "channel_source": channel_source,
                                          "external_id": external_id}, format="json")


@respx.mock
def test_a_meta_account_bound_by_hand_must_be_the_tenants(api_a, tenant_a):
    """Meta routes by account id alone, and page ids are public: a tenant binding someone else's
    page would receive that shop's customers. The tenant's own tokens must reach the account."""
    no_token = _bind(api_a, "whatsapp", "PN-THEIRS")
    assert no_token.status_code == 400 and "ACCESS_TOKEN" in no_token.json()["detail"]
    set_tenant_credential(tenant_a.pk, "whatsapp_cloud", "ACCESS_TOKEN", "wa-token-a")
    respx.get(f"{GRAPH}/PN-THEIRS").mock(return_value=httpx.Response(400, json={"error": {
        "message": "Unsupported get request. Object with ID 'PN-THEIRS' does not exist, cannot be loaded due to "
                   "missing permissions, or does not support this operation.", "type": "GraphMethodException",
        "code": 100, "error_subcode": 33}}))
    theirs = _bind(api_a, "whatsapp", "PN-THEIRS")
    assert theirs.status_code == 400 and "PN-THEIRS" in theirs.json()["detail"]
    mine = respx.get(f"{GRAPH}/PN-MINE").mock(return_value=httpx.Response(
        200, json={"id": "PN-MINE", "display_phone_number": "+1 555 000 1111"}))
    assert _bind(api_a, "whatsapp", "PN-MINE").status_code == 201
    assert mine.calls.last.request.url.params["access_token"] == "wa-token-a"

    set_tenant_credential(tenant_a.pk, "meta", "PAGE_TOKEN", "page-token-a")
    respx.get(f"{GRAPH}/me").mock(return_value=httpx.Response(200, json={"id": "PAGE-MINE"}))
    other_page = _bind(api_a, "facebook", "PAGE-OF-ANOTHER-SHOP")
    assert other_page.status_code == 400 and "not for facebook account" in other_page.json()["detail"]
    page = _bind(api_a, "facebook", "PAGE-MINE")
    assert page.status_code == 201
    assert list(ChannelBinding.objects.for_tenant(tenant_a.pk).order_by("id").values_list("external_id", flat=True)) == [
        "PN-MINE", "PAGE-MINE"]
    calls = len(respx.calls)
    assert api_a.patch(f"/api/v1/channels/{page.json()['id']}/", {"is_active": False}, format="json").status_code == 200
    assert len(respx.calls) == calls  # nothing claimed anew, nothing to prove
    moved = api_a.patch(f"/api/v1/channels/{page.json()['id']}/", {"external_id": "PAGE-OF-ANOTHER-SHOP"},
                        format="json")
    assert moved.status_code == 400


def test_conversation_filters_search_and_message_cursor(api_a, tenant_a, tenant_b):
    wa = factories.conversation(tenant_a, contact_name="Ana Pérez", last_message_at=timezone.now())
    ig = factories.conversation(tenant_a, channel_source="instagram", status="human", contact_name="Beto")
    factories.conversation(tenant_b, contact_name="Ana Other")
    for i in range(60):
        factories.message(tenant_a, conversation=wa, text=f"mensaje {i}", status="sent", error="")
    factories.message(tenant_a, conversation=ig, text="zapatillas rojas", status="sent", error="")
    ids = lambda response: [c["id"] for c in response.json()["results"]]  # noqa: E731
    assert ids(api_a.get("/api/v1/conversations/")) == [wa.pk, ig.pk]
    assert ids(api_a.get("/api/v1/conversations/?channel=instagram")) == [ig.pk]
    assert ids(api_a.get("/api/v1/conversations/?status=human")) == [ig.pk]
    assert ids(api_a.get("/api/v1/conversations/?search=ana")) == [wa.pk]
    assert ids(api_a.get("/api/v1/conversations/?search=zapatillas")) == [ig.pk]
    page = api_a.get(f"/api/v1/conversations/{wa.pk}/messages/").json()
    assert len(page["results"]) == 50 and page["next"] and page["results"][0]["text"] == "mensaje 59"
    rest = api_a.get(page["next"]).json()
    assert len(rest["results"]) == 10 and rest["next"] is None


def test_staff_reply_goes_through_the_relay_and_pauses_the_bot(api_a, tenant_a, user_a):
    conversation = factories.conversation(tenant_a)
    response = api_a.post(f"/api/v1/conversations/{conversation.pk}/reply/", {"text": "Hola, soy Alicia"}, format="json")
    assert response.status_code == 202, response.content
    message = ChatMessage.objects.for_tenant(tenant_a.pk).get(pk=response.json()["message_ids"][0])
    assert (message.role, message.status, message.sent_by_id) == ("human", "queued", user_a.pk)
    assert DeliveryLane.dangerously_unscoped.get(pk=message.lane_id).due_at == message.scheduled_at  # due now
    conversation.refresh_from_db()
    assert conversation.bot_paused_until > timezone.now()
    resumed = api_a.post(f"/api/v1/conversations/{conversation.pk}/bot/", {"paused": False}, format="json")
    assert resumed.status_code == 200 and resumed.json()["bot_paused_until"] is None
    paused = api_a.post(f"/api/v1/conversations/{conversation.pk}/bot/", {"paused": True, "hours": 2}, format="json")
    assert paused.json()["bot_paused_until"]
    assert api_a.post(f"/api/v1/conversations/{conversation.pk}/reply/", {"text": " "}, format="json").status_code == 400


def test_retry_failed_message(api_a, tenant_a):
    failed = factories.message(tenant_a, status="failed", error="HTTP 400", attempts=1)
    response = api_a.post(f"/api/v1/messages/{failed.pk}/retry/")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert api_a.post(f"/api/v1/messages/{failed.pk}/retry/").status_code == 400  # not failed any more
    detail = api_a.get(f"/api/v1/messages/{failed.pk}/").json()
    assert detail["delivery_attempts"] == []


def test_the_admin_retries_a_reply_with_its_held_parts_once_each(client, user_a, tenant_a):
    from messaging.relay import HELD_PREFIX

    conversation = factories.conversation(tenant_a)
    first = factories.message(tenant_a, conversation=conversation, status="failed", error="HTTP 400", turn_id="9")
    held = [factories.message(tenant_a, conversation=conversation, status="failed", turn_id="9",
                              error=f"{HELD_PREFIX} (message {first.pk}): HTTP 400") for _ in range(2)]
    client.force_login(user_a)
    response = client.post("/admin/messaging/chatmessage/", {
        "action": "retry_failed", "_selected_action": [first.pk, *(m.pk for m in held)]}, follow=True)
    assert response.status_code == 200 and "3 failed message(s) queued again." in response.content.decode()
    queued = ChatMessage.objects.for_tenant(tenant_a.pk).filter(status="queued").order_by("scheduled_at", "pk")
    assert list(queued.values_list("pk", flat=True)) == [first.pk, *(m.pk for m in held)]


RELAY = {"to": "5491100000001", "text": "Tu pedido salió", "provider": "meta_direct", "channel_source": "whatsapp"}


def test_relay_with_internal_secret(settings, tenant_a, wa_binding):
    settings.INTERNAL_SECRET_KEY = "internal-123"
    client = APIClient()
    response = client.post("/messages/relay", {**RELAY, "tenant_id": tenant_a.pk}, format="json",
                           HTTP_X_INTERNAL_SECRET="internal-123")
    assert response.status_code == 202, response.content
    message = ChatMessage.objects.for_tenant(tenant_a.pk).get(pk=response.json()["message_ids"][0])
    assert message.conversation.contact_external_id == "5491100000001" and message.role == "agent"
    wrong = client.post("/messages/relay", {**RELAY, "tenant_id": tenant_a.pk}, format="json",
                        HTTP_X_INTERNAL_SECRET="nope")
    assert wrong.status_code in (401, 403)
    assert client.post("/messages/relay", {**RELAY, "tenant_id": tenant_a.pk}, format="json").status_code in (401, 403)


def test_relay_with_user_token_checks_the_users_table(api_a, tenant_a, tenant_b, wa_binding):
    assert api_a.post("/messages/relay", {**RELAY, "tenant_id": tenant_b.pk}, format="json").status_code == 403
    ok = api_a.post("/messages/relay", {**RELAY, "tenant_id": tenant_a.pk}, format="json")
    assert ok.status_code == 202


def test_relay_rejects_what_it_cannot_deliver(api_a, tenant_a):
    no_channel = api_a.post("/messages/relay", {**RELAY, "tenant_id": tenant_a.pk}, format="json")
    assert no_channel.status_code == 400 and "No active meta_direct whatsapp channel" in no_channel.json()["detail"]
    chatwoot = api_a.post("/messages/relay", {**RELAY, "provider": "chatwoot", "tenant_id": tenant_a.pk}, format="json")
    assert chatwoot.status_code == 400 and "Chatwoot" in chatwoot.json()["detail"]
    bad = api_a.post("/messages/relay", {**RELAY, "provider": "telegram", "tenant_id": tenant_a.pk}, format="json")
    assert bad.status_code == 400 and "provider" in bad.json()["detail"]


@pytest.mark.parametrize("to,fragment", [("5" * 161, "160"), ("+", "phone number"), ("549 11", "phone number")])
def test_relay_refuses_a_recipient_it_could_not_store(api_a, tenant_a, wa_binding, to, fragment):
    response = api_a.post("/messages/relay", {**RELAY, "to": to, "tenant_id": tenant_a.pk}, format="json")
    assert response.status_code == 400 and fragment in response.json()["detail"]
    assert not ChatMessage.dangerously_unscoped.exists()


def test_relay_to_a_chatwoot_contact_written_with_a_plus(api_a, tenant_a):
    """Chatwoot's phone numbers are stored without the "+"; a caller may well write it."""
    binding = factories.binding(tenant_a, provider="chatwoot", external_id="12")
    conversation = factories.conversation(tenant_a, provider="chatwoot", binding=binding,
                                          contact_external_id="5491100000001", external_chatwoot_id="345",
                                          external_account_id="12")
    response = api_a.post("/messages/relay", {**RELAY, "to": "+5491100000001", "provider": "chatwoot",
                                              "tenant_id": tenant_a.pk}, format="json")
    assert response.status_code == 202, response.content
    message = ChatMessage.objects.for_tenant(tenant_a.pk).get(pk=response.json()["message_ids"][0])
    assert message.conversation_id == conversation.pk


def test_a_staff_reply_does_not_shorten_a_longer_pause(api_a, tenant_a):
    from datetime import timedelta

    week = timezone.now() + timedelta(days=7)
    conversation = factories.conversation(tenant_a, bot_paused_until=week)
    assert api_a.post(f"/api/v1/conversations/{conversation.pk}/reply/", {"text": "Hola"},
                      format="json").status_code == 202
    conversation.refresh_from_db()
    assert conversation.bot_paused_until == week


@pytest.mark.parametrize("method,path", [
    ("get", "/api/v1/conversations/{conversation}/"),
    ("patch", "/api/v1/conversations/{conversation}/"),
    ("get", "/api/v1/conversations/{conversation}/messages/"),
    ("post", "/api/v1/conversations/{conversation}/reply/"),
    ("post", "/api/v1/conversations/{conversation}/bot/"),
    ("get", "/api/v1/messages/{message}/"),
    ("post", "/api/v1/messages/{message}/retry/"),
    ("get", "/api/v1/channels/{channel}/"),
    ("patch", "/api/v1/channels/{channel}/"),
    ("delete", "/api/v1/channels/{channel}/"),
])
def test_another_tenants_objects_answer_404_and_stay_untouched(api_a, tenant_b, method, path):
    channel = factories.binding(tenant_b, provider="chatwoot", external_id="77")
    conversation = factories.conversation(tenant_b, binding=channel)
    message = factories.message(tenant_b, conversation=conversation)
    url = path.format(conversation=conversation.pk, message=message.pk, channel=channel.pk)
    body = {"text": "hola", "paused": True, "status": "closed", "is_active": False}
    response = getattr(api_a, method)(url, body, format="json") if method != "get" else api_a.get(url)
    assert response.status_code == 404, (url, response.status_code)
    conversation.refresh_from_db()
    channel.refresh_from_db()
    message.refresh_from_db()
    assert (conversation.status, conversation.bot_paused_until, channel.is_active, message.status) == (
        "bot", None, True, "failed")
    assert ChatMessage.dangerously_unscoped.count() == 1


@respx.mock
def test_tenant_staff_binding_a_meta_account_in_the_admin_must_prove_it(client, user_a, tenant_a):
    client.force_login(user_a)
    form = {"provider": "meta_direct", "channel_source": "facebook", "external_id": "PAGE-OF-ANOTHER-SHOP",
            "is_active": "on"}
    refused = client.post("/admin/messaging/channelbinding/add/", form)
    assert refused.status_code == 200 and "Connect with Meta" in refused.content.decode()
    assert not ChannelBinding.objects.for_tenant(tenant_a.pk).exists()
    set_tenant_credential(tenant_a.pk, "meta", "PAGE_TOKEN", "page-token-a")
    respx.get(f"{GRAPH}/me").mock(return_value=httpx.Response(200, json={"id": "PAGE-MINE"}))
    assert client.post("/admin/messaging/channelbinding/add/", {**form, "external_id": "PAGE-MINE"}).status_code == 302
    assert ChannelBinding.objects.for_tenant(tenant_a.pk).get().external_id == "PAGE-MINE"


def test_a_closed_conversation_is_reopened_before_staff_reply_to_it(api_a, tenant_a):
    conversation = factories.conversation(tenant_a, status="closed")
    refused = api_a.post(f"/api/v1/conversations/{conversation.pk}/reply/", {"text": "Hola"}, format="json")
    assert refused.status_code == 400 and "closed" in refused.json()["detail"]
    assert not ChatMessage.objects.for_tenant(tenant_a.pk).exists()
    assert api_a.patch(f"/api/v1/conversations/{conversation.pk}/", {"status": "human"}, format="json").status_code == 200
    assert api_a.post(f"/api/v1/conversations/{conversation.pk}/reply/", {"text": "Hola"},
                      format="json").status_code == 202


def test_two_shops_with_their_own_chatwoot_can_both_bind_account_1(api_a, api_b, tenant_a, tenant_b):
    """Every self-hosted Chatwoot starts at account 1; deliveries route by each binding's token."""
    body = {"provider": "chatwoot", "channel_source": "whatsapp", "external_id": "1"}
    first = api_a.post("/api/v1/channels/", body, format="json")
    second = api_b.post("/api/v1/channels/", body, format="json")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["webhook_url"] != second.json()["webhook_url"]
    again = api_a.post("/api/v1/channels/", body, format="json")
    assert again.status_code == 400 and "already bound" in again.json()["detail"]


def test_a_chatwoot_account_bound_twice_in_the_admin_is_a_form_error(client, user_a, tenant_a):
    factories.binding(tenant_a, provider="chatwoot", channel_source="whatsapp", external_id="1")
    client.force_login(user_a)
    response = client.post("/admin/messaging/channelbinding/add/", {
        "provider": "chatwoot", "channel_source": "whatsapp", "external_id": "1", "is_active": "on"})
    assert response.status_code == 200 and "already bound in this tenant" in response.content.decode()
    assert ChannelBinding.objects.for_tenant(tenant_a.pk).count() == 1
