"""The relay: splitting, lane slots (spacing and order), provider calls, retries, failures."""

from __future__ import annotations

from datetime import timedelta

import json

import httpx
import pytest
import respx
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from messaging import relay
from messaging.models import ChatMessage, DeliveryAttempt, DeliveryLane
from messaging.relay import RetryDelivery, deliver, relay_parts, split_text
from tests.messaging import factories
from vault.credentials import set_tenant_credential

pytestmark = pytest.mark.django_db
GRAPH = "https://graph.test/v23.0"


@pytest.fixture
def wa_conversation(wa_binding):
    set_tenant_credential(wa_binding.tenant_id, "whatsapp_cloud", "ACCESS_TOKEN", "wa-token-123456")
    set_tenant_credential(wa_binding.tenant_id, "whatsapp_cloud", "PHONE_NUMBER_ID", wa_binding.external_id)
    return factories.conversation(wa_binding.tenant, binding=wa_binding, contact_external_id="5491100000001",
                                  last_inbound_at=timezone.now())


def _queued(conversation, text="hola") -> ChatMessage:
    return relay_parts(conversation=conversation, parts=[text], role="agent")[0]


def _run(message) -> str:
    lane = DeliveryLane.dangerously_unscoped.get(tenant_id=message.tenant_id, provider=message.provider)
    return deliver(tenant_id=message.tenant_id, message_id=message.pk, lane_id=lane.pk).status


def test_split_text_respects_limits_and_keeps_every_word():
    text = " ".join(f"word{i}" for i in range(600))
    for limit in (1000, 2000, 4096):
        parts = split_text(text, limit)
        assert all(len(p) <= limit for p in parts)
        assert " ".join(parts) == text
    assert split_text("x" * 2500, 1000) == ["x" * 1000, "x" * 1000, "x" * 500]


@pytest.mark.parametrize("channel,limit", [("whatsapp", 4096), ("facebook", 2000), ("instagram", 1000)])
def test_long_reply_is_split_to_the_channel_limit(tenant_a, channel, limit):
    conversation = factories.conversation(tenant_a, channel_source=channel)
    messages = relay_parts(conversation=conversation, parts=["palabra " * 1000], role="agent")
    assert len(messages) == -(-len(("palabra " * 1000).strip()) // limit) or len(messages) > 1
    assert all(len(m.text) <= limit for m in messages)


def _send_jobs():
    return list(ProcrastinateJob.objects.filter(task_name="messaging.send_message", status="todo").order_by("id"))


@respx.mock
def test_five_parts_to_one_recipient_are_spaced_and_ordered(wa_conversation, monkeypatch):
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.Response(200, json={"messages": [{"id": f"wamid.S{n}"}]}) for n in range(5)])
    now = timezone.now() - timedelta(seconds=60)  # every slot is already due
    messages = relay_parts(conversation=wa_conversation, parts=[f"part {i}" for i in range(5)], role="agent", now=now)
    slots = [m.scheduled_at for m in messages]
    assert slots[0] == now
    assert all((b - a).total_seconds() >= 4 for a, b in zip(slots, slots[1:]))
    # One job per lane at a time: the first part's, at its slot; the others wait as queued rows.
    [job] = _send_jobs()
    assert (job.args["message_id"], job.lock) == (messages[0].pk, f"lane:{job.args['lane_id']}")
    assert job.scheduled_at == relay._job_time(slots[0])  # a polling interval early, then waits
    sent_order, sent_at = [], {}
    monkeypatch.setattr(relay.time, "sleep", lambda seconds: None)  # the test runs the schedule itself
    while jobs := _send_jobs():
        [job] = jobs  # never two jobs for one lane
        ProcrastinateJob.objects.filter(pk=job.pk).update(status="succeeded")
        previous = sent_at.get(len(sent_order) - 1)
        if previous:  # each send schedules the next: at its slot and ≥ 4 s after the real send
            assert job.scheduled_at >= relay._job_time(previous + timedelta(seconds=4))
        DeliveryLane.dangerously_unscoped.update(last_sent_at=timezone.now() - timedelta(seconds=5))
        assert deliver(**job.args).status == "sent"
        sent_order.append(job.args["message_id"])
        sent_at[len(sent_order) - 1] = ChatMessage.dangerously_unscoped.get(pk=job.args["message_id"]).sent_at
    assert sent_order == [m.pk for m in messages]
    assert DeliveryLane.dangerously_unscoped.get().has_send_job is False  # idle again


def test_a_message_queued_while_the_lane_is_busy_waits_for_the_running_job(wa_conversation):
    first = _queued(wa_conversation, "uno")
    second = _queued(wa_conversation, "dos")
    assert [j.args["message_id"] for j in _send_jobs()] == [first.pk]
    assert ChatMessage.dangerously_unscoped.get(pk=second.pk).lane_id == first.lane_id


def test_a_lane_whose_job_was_lost_is_restarted_by_the_sweep(wa_conversation):
    past = timezone.now() - timedelta(minutes=5)
    messages = relay_parts(conversation=wa_conversation, parts=["a", "b"], role="agent", now=past)
    ProcrastinateJob.objects.filter(task_name="messaging.send_message").update(status="failed")  # lost
    assert relay.recover_stranded_lanes() == 1
    [job] = _send_jobs()
    assert job.args["message_id"] == messages[0].pk
    assert relay.recover_stranded_lanes() == 0  # a lane with a job is left alone


def test_two_recipients_do_not_wait_for_each_other(wa_binding):
    now = timezone.now()
    first = factories.conversation(wa_binding.tenant, binding=wa_binding, contact_external_id="1")
    second = factories.conversation(wa_binding.tenant, binding=wa_binding, contact_external_id="2")
    a = relay_parts(conversation=first, parts=["a1", "a2"], role="agent", now=now)
    b = relay_parts(conversation=second, parts=["b1"], role="agent", now=now)
    assert a[0].scheduled_at == b[0].scheduled_at == now
    locks = ProcrastinateJob.objects.filter(task_name="messaging.send_message").values_list("lock", flat=True)
    assert len(set(locks)) == 2


def test_lane_slot_after_idle_period_starts_now(wa_conversation):
    past = timezone.now() - timedelta(minutes=5)
    relay_parts(conversation=wa_conversation, parts=["old"], role="agent", now=past)
    now = timezone.now()
    assert relay_parts(conversation=wa_conversation, parts=["new"], role="agent", now=now)[0].scheduled_at == now


@respx.mock
def test_whatsapp_send_shape_and_provider_id(wa_conversation):
    route = respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT1"}]})
    )
    message = _queued(wa_conversation)
    assert _run(message) == "sent"
    request = route.calls.last.request
    assert request.headers["Authorization"] == "Bearer wa-token-123456"
    assert request.headers["Idempotency-Key"] == str(message.idempotency_key)
    body = httpx.Response(200, content=request.content).json()
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "5491100000001",
                    "type": "text", "text": {"preview_url": False, "body": "hola"}}
    message.refresh_from_db()
    assert (message.status, message.provider_message_id, message.attempts) == ("sent", "wamid.OUT1", 1)
    assert DeliveryAttempt.dangerously_unscoped.get().outcome == "sent"
    assert _run(message) == "skipped" and route.call_count == 1  # a re-run never sends twice


@respx.mock
def test_provider_500_then_200_is_sent_once(wa_conversation):
    route = respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.Response(500, json={"error": {"message": "Service temporarily unavailable"}}),
        httpx.Response(200, json={"messages": [{"id": "wamid.OK"}]}),
    ])
    message = _queued(wa_conversation)
    with pytest.raises(RetryDelivery) as retry:
        _run(message)
    assert retry.value.retry_at > timezone.now() - timedelta(seconds=1)
    message.refresh_from_db()
    assert message.status == "queued" and "HTTP 500" in message.error
    assert _run(message) == "sent"
    assert route.call_count == 2
    outcomes = list(DeliveryAttempt.dangerously_unscoped.order_by("number").values_list("outcome", "http_status"))
    assert outcomes == [("retry", 500), ("sent", 200)]


@respx.mock
def test_provider_400_fails_without_retry(wa_conversation):
    route = respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(
        return_value=httpx.Response(400, json={"error": {"message": "(#131030) Recipient phone number not in allowed list"}})
    )
    message = _queued(wa_conversation)
    assert _run(message) == "failed"
    message.refresh_from_db()
    assert message.status == "failed" and "131030" in message.error and "HTTP 400" in message.error
    assert route.call_count == 1


@respx.mock
def test_timeouts_and_429_retry_until_max_attempts(wa_conversation, settings):
    settings.RELAY_MAX_ATTEMPTS = 3
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.ConnectTimeout("slow"), httpx.Response(429, headers={"Retry-After": "0"}), httpx.ConnectError("down"),
    ])
    message = _queued(wa_conversation)
    for _ in range(2):
        with pytest.raises(RetryDelivery):
            _run(message)
    assert _run(message) == "failed"
    message.refresh_from_db()
    assert message.attempts == 3 and "connection error" in message.error


def test_missing_credentials_fail_with_a_clear_error(wa_binding):
    conversation = factories.conversation(wa_binding.tenant, binding=wa_binding)
    message = _queued(conversation)
    assert _run(message) == "failed"
    message.refresh_from_db()
    assert message.error == "WhatsApp Cloud credentials not configured"


@respx.mock
@pytest.mark.parametrize("channel", ["facebook", "instagram"])
def test_messenger_and_instagram_send_shape(tenant_a, channel):
    set_tenant_credential(tenant_a.pk, "meta", "USER_TOKEN", "user-token-1")
    set_tenant_credential(tenant_a.pk, "meta", "PAGE_TOKEN", "page-token-1")
    conversation = factories.conversation(tenant_a, channel_source=channel, contact_external_id="PSID9")
    route = respx.post(f"{GRAPH}/me/messages").mock(
        return_value=httpx.Response(200, json={"recipient_id": "PSID9", "message_id": "m_OUT"}))
    message = _queued(conversation)
    assert _run(message) == "sent"
    request = route.calls.last.request
    assert request.headers["Authorization"] == "Bearer page-token-1"
    assert httpx.Response(200, content=request.content).json() == {
        "recipient": {"id": "PSID9"}, "messaging_type": "RESPONSE", "message": {"text": "hola"}}


@respx.mock
def test_chatwoot_send_goes_to_the_same_conversation_with_bot_token(tenant_a):
    set_tenant_credential(tenant_a.pk, "chatwoot", "BASE_URL", "https://chat.shop.test/")
    set_tenant_credential(tenant_a.pk, "chatwoot", "ACCOUNT_ID", "12")
    set_tenant_credential(tenant_a.pk, "chatwoot", "CHATWOOT_API_TOKEN", "api-token-1")
    set_tenant_credential(tenant_a.pk, "chatwoot", "CHATWOOT_BOT_TOKEN", "bot-token-1")
    conversation = factories.conversation(tenant_a, provider="chatwoot", external_chatwoot_id="345",
                                          external_account_id="12")
    route = respx.post("https://chat.shop.test/api/v1/accounts/12/conversations/345/messages").mock(
        return_value=httpx.Response(200, json={"id": 5555, "content": "hola"}))
    message = _queued(conversation)
    assert _run(message) == "sent"
    request = route.calls.last.request
    assert request.headers["api_access_token"] == "bot-token-1"
    assert httpx.Response(200, content=request.content).json() == {
        "content": "hola", "message_type": "outgoing", "private": False}
    message.refresh_from_db()
    assert message.provider_message_id == "5555"


@respx.mock
def test_ycloud_send_shape(tenant_a):
    for name, value in (("API_KEY", "yc-key-1"), ("WEBHOOK_SECRET", "s"), ("FROM_NUMBER", "+15550002222")):
        set_tenant_credential(tenant_a.pk, "ycloud", name, value)
    conversation = factories.conversation(tenant_a, provider="ycloud", contact_external_id="5491100000009")
    route = respx.post("https://ycloud.test/v2/whatsapp/messages").mock(
        return_value=httpx.Response(200, json={"id": "yc-1", "status": "accepted"}))
    message = _queued(conversation)
    assert _run(message) == "sent"
    request = route.calls.last.request
    assert request.headers["X-API-Key"] == "yc-key-1"
    assert httpx.Response(200, content=request.content).json() == {
        "from": "+15550002222", "to": "+5491100000009", "type": "text", "text": {"body": "hola"},
        "externalId": str(message.idempotency_key)}


@respx.mock
def test_send_keeps_real_spacing_after_a_late_previous_send(wa_conversation, monkeypatch):
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.S"}]}))
    message = _queued(wa_conversation)
    lane = DeliveryLane.dangerously_unscoped.get()
    DeliveryLane.dangerously_unscoped.filter(pk=lane.pk).update(last_sent_at=timezone.now())
    with pytest.raises(RetryDelivery) as retry:  # 4 s still to go: rescheduled, not slept
        _run(message)
    assert (retry.value.retry_at - timezone.now()).total_seconds() > 3
    slept = []
    monkeypatch.setattr(relay.time, "sleep", slept.append)
    DeliveryLane.dangerously_unscoped.filter(pk=lane.pk).update(last_sent_at=timezone.now() - timedelta(seconds=3.5))
    assert _run(message) == "sent"
    assert slept and 0 < slept[0] <= 0.5


@respx.mock
@pytest.mark.parametrize("channel,external_id,token", [
    ("facebook", "PAGE-2", "page-token-2"), ("instagram", "IG-2", "page-token-2"), ("facebook", "PAGE-X", "page-token-1"),
])
def test_each_page_replies_with_its_own_token(tenant_a, channel, external_id, token):
    """Meta connect stores a token per page (and per linked Instagram account); unknown ids fall back."""
    set_tenant_credential(tenant_a.pk, "meta", "PAGE_TOKEN", "page-token-1")
    set_tenant_credential(tenant_a.pk, "meta", "PAGE_TOKENS", json.dumps(
        {"PAGE-1": "page-token-1", "PAGE-2": "page-token-2", "IG-2": "page-token-2"}))
    binding = factories.binding(tenant_a, channel_source=channel, external_id=external_id)
    conversation = factories.conversation(tenant_a, channel_source=channel, binding=binding, contact_external_id="PSID7")
    route = respx.post(f"{GRAPH}/me/messages").mock(
        return_value=httpx.Response(200, json={"recipient_id": "PSID7", "message_id": "m_OUT2"}))
    assert _run(_queued(conversation)) == "sent"
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {token}"


@respx.mock
def test_a_send_job_run_again_after_a_crash_starts_no_second_chain(wa_conversation):
    """kill -9 after the send committed (and scheduled the lane's next job) but before the worker
    marked the job done: the requeued job finds its message sent and leaves the waiting job alone."""
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.C1"}]}))
    past = timezone.now() - timedelta(seconds=60)
    first, second = relay_parts(conversation=wa_conversation, parts=["uno", "dos"], role="agent", now=past)
    [job] = _send_jobs()
    ProcrastinateJob.objects.filter(pk=job.pk).update(status="doing")
    assert deliver(**job.args).status == "sent"
    assert [j.args["message_id"] for j in _send_jobs()] == [second.pk]
    assert deliver(**job.args).status == "skipped"  # the requeued run
    assert [j.args["message_id"] for j in _send_jobs()] == [second.pk]  # still one chain
