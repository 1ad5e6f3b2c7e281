"""The relay: splitting, lane slots (spacing and order), provider calls, retries, failures."""

from __future__ import annotations

from datetime import timedelta

import json

import httpx
import pytest
import respx
from django.db import connection
from django.utils import timezone

from messaging import relay
from messaging.models import ChatMessage, DeliveryAttempt, DeliveryLane
from messaging.relay import relay_parts, split_text
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


def _queued(conversation, text="hola", now=None) -> ChatMessage:
    return relay_parts(conversation=conversation, parts=[text], role="agent", now=now)[0]


def _lane() -> DeliveryLane:
    return DeliveryLane.dangerously_unscoped.get()


def _run(message) -> str:
    """A dispatcher's turn with the clock a day ahead: the outcome for `message`'s send."""
    outcomes = {o.message_id: o for o in relay.run_due(now=timezone.now() + timedelta(days=1))}
    return outcomes[message.pk].status if message.pk in outcomes else "nothing due"


def _claim(owner: int) -> list[relay.Claim]:
    with connection.cursor() as cursor:
        cursor.execute(relay.CLAIM_SQL, relay.claim_params(owner=owner, limit=10, horizon=timezone.now() + timedelta(days=1)))
        return relay.prepare(relay.claims_from_rows(cursor.fetchall()), owner)


def _release(owner: int, working=()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(relay.RELEASE_SQL, relay.release_params(owner, working))
        return len(cursor.fetchall())


def test_split_text_respects_limits_and_keeps_every_word():
    text = " ".join(f"word{i}" for i in range(600))
    for limit in (1000, 2000, 4096):
        parts = split_text(text, limit)
        assert all(len(p) <= limit for p in parts)
        assert " ".join(parts) == text
    assert split_text("x" * 2500, 1000) == ["x" * 1000, "x" * 1000, "x" * 500]


def test_instagram_parts_stay_under_1000_utf8_bytes(tenant_a):
    """Spanish with accents and emoji: 700 characters are over 1,000 bytes."""
    conversation = factories.conversation(tenant_a, channel_source="instagram")
    text = " ".join(["¡Acá está tu pedido! 🎉 Envío en camión"] * 40)
    parts = [m.text for m in relay_parts(conversation=conversation, parts=[text], role="agent")]
    assert len(parts) > 1 and all(len(p.encode()) < 1000 for p in parts)
    assert " ".join(parts) == text
    assert split_text("é" * 600, 1000, in_bytes=True) == ["é" * 500, "é" * 100]  # never half a character


@pytest.mark.parametrize("channel,limit", [("whatsapp", 4096), ("facebook", 2000), ("instagram", 999)])
def test_long_reply_is_split_to_the_channel_limit(tenant_a, channel, limit):
    conversation = factories.conversation(tenant_a, channel_source=channel)
    messages = relay_parts(conversation=conversation, parts=["palabra " * 1000], role="agent")
    assert len(messages) == -(-len(("palabra " * 1000).strip()) // limit) or len(messages) > 1
    assert all(len(m.text) <= limit for m in messages)


@respx.mock
def test_five_parts_to_one_recipient_are_spaced_and_ordered(wa_conversation):
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.Response(200, json={"messages": [{"id": f"wamid.S{n}"}]}) for n in range(5)])
    now = timezone.now() - timedelta(seconds=60)  # every slot is already due
    messages = relay_parts(conversation=wa_conversation, parts=[f"part {i}" for i in range(5)], role="agent", now=now)
    slots = [m.scheduled_at for m in messages]
    assert slots[0] == now
    assert all((b - a).total_seconds() >= 4 for a, b in zip(slots, slots[1:]))
    assert (_lane().due_at, _lane().claimed_by) == (slots[0], None)  # due at the first slot; the rest wait
    sent = []
    while (lane := _lane()).due_at is not None:
        if sent:  # each send makes the next due: at its slot and ≥ 4 s after the real send
            previous = ChatMessage.dangerously_unscoped.get(pk=sent[-1]).sent_at
            assert lane.due_at == max(slots[len(sent)], previous + timedelta(seconds=4))
        assert relay.run_due(now=lane.due_at - timedelta(milliseconds=1)) == []  # not a moment early
        [outcome] = relay.run_due(now=lane.due_at)  # one message per lane at a time
        assert outcome.status == "sent"
        sent.append(outcome.message_id)
    assert sent == [m.pk for m in messages]
    assert _lane().claimed_by is None  # idle again


def _database_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


@respx.mock
def test_spacing_runs_on_the_databases_clock_not_the_machines(wa_conversation, monkeypatch):
    """A web or worker machine whose clock is an hour off neither delays a message by an hour nor
    sends the next one early: slots, the last send and due times are the database's, and a
    dispatcher waits "due in N seconds" on its own monotonic clock."""
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.C"}]}))
    skewed = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: skewed)  # this machine's wall clock is an hour ahead

    before = _database_now()
    first, second = relay_parts(conversation=wa_conversation, parts=["uno", "dos"], role="agent")
    after = _database_now()
    assert before <= first.scheduled_at <= after  # the database's now, not the skewed one
    assert second.scheduled_at == first.scheduled_at + timedelta(seconds=4)

    [claim] = _claim(owner=5)
    assert claim.message.pk == first.pk and claim.seconds_until_due() <= 0  # due now, by the database
    relay.send_claim(claim, 5)
    first.refresh_from_db()
    lane = _lane()
    assert before <= first.sent_at <= _database_now() and lane.last_sent_at == first.sent_at
    attempt = DeliveryAttempt.dangerously_unscoped.get(message=first)  # its start: the same clock, before the send
    assert before <= attempt.started_at <= first.sent_at
    assert lane.due_at == max(second.scheduled_at, first.sent_at + timedelta(seconds=4))

    [claim] = _claim(owner=6)  # claimed ahead of time: the dispatcher is told how long to wait
    assert claim.message.pk == second.pk
    assert 3 < claim.seconds_until_due() <= (lane.due_at - first.sent_at).total_seconds()


def test_a_message_queued_behind_a_waiting_one_leaves_the_lane_due_time_alone(wa_conversation):
    first = _queued(wa_conversation, "uno")
    second = _queued(wa_conversation, "dos")
    assert _lane().due_at == first.scheduled_at
    assert second.lane_id == first.lane_id and second.scheduled_at - first.scheduled_at >= timedelta(seconds=4)


@respx.mock
def test_a_message_queued_during_a_send_is_due_after_it(wa_conversation):
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.F"}]}))
    first = _queued(wa_conversation, "uno", now=timezone.now() - timedelta(seconds=60))
    [claim] = _claim(owner=77)
    assert claim.message.pk == first.pk and _lane().claimed_by == 77
    second = _queued(wa_conversation, "dos")  # the lane is held: its next due time is the send's to set
    assert relay.send_claim(claim, 77).status == "sent"
    lane = _lane()
    sent_at = ChatMessage.dangerously_unscoped.get(pk=first.pk).sent_at
    assert lane.claimed_by is None and lane.last_sent_at == sent_at
    assert lane.due_at == max(second.scheduled_at, sent_at + timedelta(seconds=4))


def test_a_lane_left_without_a_due_time_is_restarted_by_the_sweep(wa_conversation):
    past = timezone.now() - timedelta(minutes=5)
    messages = relay_parts(conversation=wa_conversation, parts=["a", "b"], role="agent", now=past)
    DeliveryLane.dangerously_unscoped.update(due_at=None)  # lost (a restored backup, a hand edit)
    assert relay.recover_stranded_lanes() == 1
    assert _lane().due_at >= messages[0].scheduled_at
    assert relay.recover_stranded_lanes() == 0  # a due lane is left alone


def test_lanes_of_a_dispatcher_that_is_gone_are_taken_over_after_the_grace(wa_conversation, settings):
    settings.RELAY_ORPHAN_SECONDS = 30
    message = _queued(wa_conversation, now=timezone.now() - timedelta(seconds=60))
    claimed = _lane()
    DeliveryLane.dangerously_unscoped.update(claimed_by=12345, claimed_at=timezone.now() - timedelta(seconds=10))
    assert _release(owner=999) == 0  # its owner's lock is gone, but a send could still be under way
    DeliveryLane.dangerously_unscoped.update(claimed_at=timezone.now() - timedelta(seconds=31))
    assert _release(owner=999) == 1
    assert (_lane().claimed_by, _lane().due_at) == (None, claimed.due_at)  # due again: sent again, same key
    # A dispatcher that is alive (its advisory lock held) keeps its lanes however long it takes.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [relay.LOCK_CLASS, 4242])
        DeliveryLane.dangerously_unscoped.update(claimed_by=4242, claimed_at=timezone.now() - timedelta(hours=1))
        assert _release(owner=999) == 0
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [relay.LOCK_CLASS, 4242])
    # A dispatcher's own lanes go back at once when it no longer works on them (a send raised).
    DeliveryLane.dangerously_unscoped.update(claimed_by=999, claimed_at=timezone.now())
    assert _release(owner=999, working=[claimed.pk]) == 0
    assert _release(owner=999) == 1
    assert ChatMessage.dangerously_unscoped.get(pk=message.pk).status == "queued"


def test_two_recipients_do_not_wait_for_each_other(wa_binding):
    now = timezone.now()
    first = factories.conversation(wa_binding.tenant, binding=wa_binding, contact_external_id="1")
    second = factories.conversation(wa_binding.tenant, binding=wa_binding, contact_external_id="2")
    a = relay_parts(conversation=first, parts=["a1", "a2"], role="agent", now=now)
    b = relay_parts(conversation=second, parts=["b1"], role="agent", now=now)
    assert a[0].scheduled_at == b[0].scheduled_at == now
    assert sorted(DeliveryLane.dangerously_unscoped.values_list("due_at", flat=True)) == [now, now]


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
    assert _run(message) == "nothing due" and route.call_count == 1  # once sent, never again


@respx.mock
def test_a_customer_known_only_by_bsuid_is_sent_to_as_recipient(wa_binding):
    set_tenant_credential(wa_binding.tenant_id, "whatsapp_cloud", "ACCESS_TOKEN", "wa-token-123456")
    conversation = factories.conversation(wa_binding.tenant, binding=wa_binding, last_inbound_at=timezone.now(),
                                          contact_external_id="AR.13491208655302741918")
    route = respx.post(f"{GRAPH}/{wa_binding.external_id}/messages").mock(return_value=httpx.Response(
        200, json={"messaging_product": "whatsapp", "contacts": [{"input": "AR.13491208655302741918",
                                                                  "user_id": "AR.13491208655302741918"}],
                   "messages": [{"id": "wamid.TO_BSUID"}]}))
    assert _run(_queued(conversation)) == "sent"
    body = json.loads(route.calls.last.request.content)
    assert body["recipient"] == "AR.13491208655302741918" and "to" not in body


@respx.mock
def test_provider_500_then_200_is_sent_once(wa_conversation):
    route = respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.Response(500, json={"error": {"message": "Service temporarily unavailable"}}),
        httpx.Response(200, json={"messages": [{"id": "wamid.OK"}]}),
    ])
    message = _queued(wa_conversation)
    [outcome] = relay.run_due()
    assert outcome.status == "retry" and outcome.retry_at > timezone.now() - timedelta(seconds=1)
    assert _lane().due_at == outcome.retry_at  # the same message is due again: the lane keeps its order
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


def _graph_error(code, message, **extra):
    return {"error": {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code,
                      "error_data": {"messaging_product": "whatsapp", "details": extra.pop("details", "")},
                      "fbtrace_id": "Az8or2yhqkZfEZ", **extra}}


@respx.mock
@pytest.mark.parametrize("error", [
    _graph_error(131056, "(Business Account, Consumer Account) pair rate limit hit", details="Message failed to send "
                 "because there were too many messages sent from this phone number to the same phone number"),
    _graph_error(130429, "Rate limit hit"),
    _graph_error(4, "Application request limit reached"),
    _graph_error(80007, "Rate limit issues"),
    {"error": {"message": "An unexpected error has occurred. Please retry your request later.", "type": "OAuthException",
               "code": 9999, "is_transient": True}},
], ids=["pair-rate", "throughput", "app-rate", "account-rate", "is_transient"])
def test_meta_rate_limits_that_come_as_400_are_retried(wa_conversation, settings, error):
    settings.RELAY_RETRY_MAX_SECONDS = 60
    route = _route(wa_conversation).mock(side_effect=[
        httpx.Response(400, json=error), httpx.Response(200, json={"messages": [{"id": "wamid.LATER"}]})])
    message = _queued(wa_conversation)
    before = timezone.now()
    assert _run(message) == "retry"
    message.refresh_from_db()
    assert error["error"]["message"] in message.error and message.status == "queued"
    if error["error"]["code"] == 131056:  # about one message every 6 s to one person: not sooner
        assert _lane().due_at >= before + timedelta(seconds=6)
        assert "too many messages sent from this phone number to the same phone number" in message.error
    else:
        assert _lane().due_at <= timezone.now() + timedelta(seconds=2)  # the first backoff: 1-2 s
    assert _run(message) == "sent" and route.call_count == 2


@respx.mock
def test_a_meta_error_keeps_its_details_and_user_message(wa_conversation):
    _route(wa_conversation).mock(return_value=httpx.Response(400, json=_graph_error(
        100, "Invalid parameter", details="Parameter 'to' must be a valid phone number",
        error_user_msg="Check the number and try again")))
    message = _queued(wa_conversation)
    assert _run(message) == "failed"
    message.refresh_from_db()
    assert message.error == ("WhatsApp Cloud answered HTTP 400: (#100) Invalid parameter — Parameter 'to' must be a "
                             "valid phone number — Check the number and try again")


@respx.mock
def test_ycloud_passes_whatsapps_rate_limit_on_and_it_is_retried(tenant_a):
    for name, value in (("API_KEY", "yc-key-1"), ("FROM_NUMBER", "+15550002222")):
        set_tenant_credential(tenant_a.pk, "ycloud", name, value)
    conversation = factories.conversation(tenant_a, provider="ycloud", contact_external_id="5491100000009")
    respx.post("https://ycloud.test/v2/whatsapp/messages").mock(side_effect=[
        httpx.Response(400, json={"error": {"status": 400, "code": "WHATSAPP_API_ERROR", "message": "(#130429) Rate limit hit",
                                            "target": "whatsappApiError",
                                            "whatsappApiError": {"message": "(#130429) Rate limit hit", "code": "130429"}}}),
        httpx.Response(200, json={"id": "yc-2", "status": "accepted"}),
    ])
    message = _queued(conversation)
    assert [_run(message), _run(message)] == ["retry", "sent"]


@respx.mock
def test_timeouts_and_429_retry_until_max_attempts(wa_conversation, settings):
    settings.RELAY_MAX_ATTEMPTS = 3
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.ConnectTimeout("slow"), httpx.Response(429, headers={"Retry-After": "0"}), httpx.ConnectError("down"),
    ])
    message = _queued(wa_conversation)
    for _ in range(2):
        assert _run(message) == "retry"
    assert _run(message) == "failed"
    message.refresh_from_db()
    assert message.attempts == 3 and "connection error" in message.error


@respx.mock
def test_a_staff_retry_gets_fresh_attempts_and_its_log_numbers_on(wa_conversation, settings, caplog):
    from messaging.services import retry_message

    settings.RELAY_MAX_ATTEMPTS = 2
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.Response(503), httpx.Response(503), httpx.Response(503),
        httpx.Response(200, json={"messages": [{"id": "wamid.RETRIED"}]}),
    ])
    message = _queued(wa_conversation)
    key = message.idempotency_key
    assert [_run(message), _run(message)] == ["retry", "failed"]
    retry_message(tenant_id=message.tenant_id, message_id=message.pk)
    assert [_run(message), _run(message)] == ["retry", "sent"]  # two fresh attempts, not failed at once
    message.refresh_from_db()
    assert message.attempts == 2 and message.idempotency_key == key and message.provider_message_id == "wamid.RETRIED"
    log = list(DeliveryAttempt.dangerously_unscoped.filter(message=message).values_list("number", "outcome"))
    assert log == [(1, "retry"), (2, "failed"), (3, "retry"), (4, "sent")]
    said = [record.getMessage() for record in caplog.records if record.name == "messaging.relay"]
    assert any(f"Message {message.pk} failed after 2 attempt(s) (delivery log #2)" in line for line in said)
    assert any(f"Message {message.pk} attempt 1 of 2 (delivery log #3) failed, retrying" in line for line in said)


@respx.mock
def test_a_reply_whose_part_failed_holds_its_later_parts_until_a_retry_sends_them_in_order(wa_conversation,
                                                                                         monkeypatch):
    from messaging import events
    from messaging.services import retry_message

    published = []
    monkeypatch.setattr(events, "message_status", lambda message: published.append(
        (message.pk, message.status, message.error)))

    route = respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.Response(400, json={"error": {"message": "(#100) Invalid parameter", "code": 100}}),
        httpx.Response(200, json={"messages": [{"id": "wamid.NEXT_TURN"}]}),
        *[httpx.Response(200, json={"messages": [{"id": f"wamid.P{i}"}]}) for i in range(1, 4)],
    ])
    first, second, third = relay_parts(conversation=wa_conversation, parts=["uno", "dos", "tres"], role="agent",
                                       turn_id="41")
    later_turn = relay_parts(conversation=wa_conversation, parts=["otra respuesta"], role="agent", turn_id="42")[0]
    assert _run(first) == "failed"
    for held in (second, third):
        held.refresh_from_db()
        assert held.status == "failed" and held.error.startswith(f"{relay.HELD_PREFIX} (message {first.pk})")
        assert "Invalid parameter" in held.error
        assert (held.pk, "failed", held.error) in published  # the live view hears of it
    assert _run(later_turn) == "sent"  # another reply is not held
    assert route.call_count == 2

    retry_message(tenant_id=first.tenant_id, message_id=first.pk)
    for message in (first, second, third):
        assert _run(message) == "sent"
    sent = [json.loads(call.request.content)["text"]["body"] for call in route.calls]
    assert sent == ["uno", "otra respuesta", "uno", "dos", "tres"]


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
@pytest.mark.parametrize("channel", ["facebook", "instagram"])
def test_a_staff_reply_after_24_hours_is_tagged_human_agent_for_up_to_7_days(tenant_a, channel):
    set_tenant_credential(tenant_a.pk, "meta", "PAGE_TOKEN", "page-token-1")
    conversation = factories.conversation(tenant_a, channel_source=channel, contact_external_id="PSID9",
                                          last_inbound_at=timezone.now() - timedelta(days=3))
    route = respx.post(f"{GRAPH}/me/messages").mock(
        return_value=httpx.Response(200, json={"recipient_id": "PSID9", "message_id": "m_OUT"}))
    staff = relay_parts(conversation=conversation, parts=["Perdón la demora"], role="human")[0]
    assert _run(staff) == "sent"
    body = json.loads(route.calls.last.request.content)
    assert body["messaging_type"] == "MESSAGE_TAG" and body["tag"] == "HUMAN_AGENT"

    conversation.last_inbound_at = timezone.now() - timedelta(hours=2)  # the customer wrote again: a response
    conversation.save()
    again = relay_parts(conversation=conversation, parts=["¿algo más?"], role="human")[0]
    assert _run(again) == "sent"
    body = json.loads(route.calls.last.request.content)
    assert body["messaging_type"] == "RESPONSE" and "tag" not in body

    conversation.last_inbound_at = timezone.now() - timedelta(days=8)
    conversation.save()
    late = relay_parts(conversation=conversation, parts=["hola?"], role="human")[0]
    assert _run(late) == "failed" and route.call_count == 2  # not even tried
    late.refresh_from_db()
    assert "more than 7 days ago" in late.error and "until they write again" in late.error


@respx.mock
@pytest.mark.parametrize("provider", ["meta_direct", "ycloud"])
def test_a_whatsapp_message_after_24_hours_fails_without_a_call(wa_binding, provider):
    for category, name, value in (("whatsapp_cloud", "ACCESS_TOKEN", "wa-token-123456"),
                                  ("ycloud", "API_KEY", "yc-key-1"), ("ycloud", "FROM_NUMBER", "+15550002222")):
        set_tenant_credential(wa_binding.tenant_id, category, name, value)
    binding = wa_binding if provider == "meta_direct" else factories.binding(
        wa_binding.tenant, provider="ycloud", external_id="+15550002222")
    conversation = factories.conversation(wa_binding.tenant, binding=binding, provider=provider,
                                          contact_external_id="5491100000001",
                                          last_inbound_at=timezone.now() - timedelta(hours=25))
    graph = respx.post(f"{GRAPH}/{wa_binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.LATE"}]}))
    ycloud = respx.post("https://ycloud.test/v2/whatsapp/messages").mock(
        return_value=httpx.Response(200, json={"id": "yc-late", "status": "accepted"}))
    staff = relay_parts(conversation=conversation, parts=["¿Seguís ahí?"], role="human")[0]
    assert _run(staff) == "failed" and graph.call_count == ycloud.call_count == 0
    staff.refresh_from_db()
    assert "more than 24 hours ago" in staff.error and "template" in staff.error

    conversation.last_inbound_at = timezone.now() - timedelta(hours=23)  # still open: sent
    conversation.save()
    assert _run(relay_parts(conversation=conversation, parts=["hola"], role="human")[0]) == "sent"


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
def test_ycloud_sends_to_a_bsuid_as_recipient_without_to(tenant_a):
    for name, value in (("API_KEY", "yc-key-1"), ("FROM_NUMBER", "+15550002222")):
        set_tenant_credential(tenant_a.pk, "ycloud", name, value)
    conversation = factories.conversation(tenant_a, provider="ycloud", contact_external_id="AR.1502576394655843")
    route = respx.post("https://ycloud.test/v2/whatsapp/messages").mock(
        return_value=httpx.Response(200, json={"id": "yc-3", "status": "accepted"}))
    assert _run(_queued(conversation)) == "sent"
    body = json.loads(route.calls.last.request.content)
    assert body["recipient"] == "AR.1502576394655843" and "to" not in body


@respx.mock
def test_ycloud_replies_from_the_number_the_customer_wrote_to(tenant_a):
    """One YCloud account, two numbers: the reply leaves from the conversation's number, not FROM_NUMBER."""
    for name, value in (("API_KEY", "yc-key-1"), ("WEBHOOK_SECRET", "s"), ("FROM_NUMBER", "+15550002222")):
        set_tenant_credential(tenant_a.pk, "ycloud", name, value)
    second_number = factories.binding(tenant_a, provider="ycloud", external_id="+15550003333")
    conversation = factories.conversation(tenant_a, provider="ycloud", binding=second_number,
                                          contact_external_id="5491100000010")
    route = respx.post("https://ycloud.test/v2/whatsapp/messages").mock(
        return_value=httpx.Response(200, json={"id": "yc-2", "status": "accepted"}))
    assert _run(_queued(conversation)) == "sent"
    assert httpx.Response(200, content=route.calls.last.request.content).json()["from"] == "+15550003333"


@respx.mock
def test_a_new_message_keeps_real_spacing_after_a_late_previous_send(wa_conversation):
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.Response(200, json={"messages": [{"id": f"wamid.L{n}"}]}) for n in range(2)])
    past = timezone.now() - timedelta(seconds=60)
    first = _queued(wa_conversation, "uno", now=past)
    assert _run(first) == "sent"
    assert _lane().due_at is None  # idle
    late = timezone.now()
    DeliveryLane.dangerously_unscoped.update(last_sent_at=late)  # the first send left late
    second = _queued(wa_conversation, "dos", now=past + timedelta(seconds=1))
    assert second.scheduled_at == past + timedelta(seconds=4)  # its slot is long gone ...
    assert _lane().due_at == late + timedelta(seconds=4)  # ... but it waits 4 s after the real send
    assert relay.run_due(now=late + timedelta(seconds=3.9)) == []
    assert [o.status for o in relay.run_due(now=late + timedelta(seconds=4))] == ["sent"]


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
def test_a_send_cut_off_by_a_dead_dispatcher_is_sent_again_with_the_same_key(wa_conversation, settings):
    """kill -9 during the provider call: the provider may have the message or not. The lane goes
    back after the grace, the message is sent again with the same idempotency key, and the
    interrupted attempt stays visible."""
    route = respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.C1"}]}))
    first, second = relay_parts(conversation=wa_conversation, parts=["uno", "dos"], role="agent",
                                now=timezone.now() - timedelta(seconds=60))
    [claim] = _claim(owner=31337)  # the dispatcher that dies: no advisory lock is held for it
    assert claim.message.pk == first.pk
    DeliveryLane.dangerously_unscoped.update(claimed_at=timezone.now() - timedelta(seconds=settings.RELAY_ORPHAN_SECONDS + 1))
    assert _release(owner=1) == 1
    assert _run(first) == "sent"
    assert route.calls.last.request.headers["Idempotency-Key"] == str(first.idempotency_key)
    attempts = DeliveryAttempt.dangerously_unscoped.filter(message=first).order_by("number")
    assert list(attempts.values_list("number", "outcome")) == [(1, ""), (2, "sent")]
    sent_at = ChatMessage.dangerously_unscoped.get(pk=first.pk).sent_at
    assert relay.send_claim(claim, 31337).status == "sent"  # the dead one's late record ...
    assert _lane().due_at > timezone.now()  # ... does not touch a lane it no longer holds
    assert ChatMessage.dangerously_unscoped.get(pk=first.pk).sent_at == sent_at  # nor the message
    assert route.call_count == 2 and ChatMessage.dangerously_unscoped.get(pk=second.pk).status == "queued"


@respx.mock
def test_a_failed_message_hands_the_lane_to_the_next_one(wa_conversation):
    respx.post(f"{GRAPH}/{wa_conversation.binding.external_id}/messages").mock(side_effect=[
        httpx.Response(400, json={"error": {"message": "(#100) Invalid parameter"}}),
        httpx.Response(200, json={"messages": [{"id": "wamid.N2"}]})])
    past = timezone.now() - timedelta(seconds=60)
    first, second = relay_parts(conversation=wa_conversation, parts=["uno", "dos"], role="agent", now=past)
    assert [o.status for o in relay.run_due()] == ["failed"]
    assert _lane().due_at == second.scheduled_at  # nothing left before it: due at its own slot
    assert [o.status for o in relay.run_due()] == ["sent"]
    assert ChatMessage.dangerously_unscoped.get(pk=first.pk).status == "failed"


@respx.mock
def test_a_sent_message_whose_provider_id_is_taken_is_recorded_not_resent(tenant_a):
    """Chatwoot answers with an id an inbox echo already stored (as a human reply): the message
    left, so it is recorded as sent without the id, never sent again (Chatwoot has no
    idempotency key)."""
    set_tenant_credential(tenant_a.pk, "chatwoot", "BASE_URL", "https://chat.shop.test/")
    set_tenant_credential(tenant_a.pk, "chatwoot", "CHATWOOT_API_TOKEN", "api-token-1")
    conversation = factories.conversation(tenant_a, provider="chatwoot", external_chatwoot_id="345",
                                          external_account_id="12")
    ChatMessage.objects.for_tenant(tenant_a.pk).create(
        tenant_id=tenant_a.pk, conversation=conversation, direction="out", role="human", text="echo",
        provider="chatwoot", provider_message_id="5555", status="sent")
    route = respx.post("https://chat.shop.test/api/v1/accounts/12/conversations/345/messages").mock(
        return_value=httpx.Response(200, json={"id": 5555, "content": "hola"}))
    message = _queued(conversation)
    assert _run(message) == "sent"
    message.refresh_from_db()
    assert (message.status, message.provider_message_id, route.call_count) == ("sent", None, 1)
    assert _run(message) == "nothing due"


# --- what a provider answers that must not be taken at its word -------------------------------

def _route(conversation):
    return respx.post(f"{GRAPH}/{conversation.binding.external_id}/messages")


@respx.mock
def test_a_redirect_is_not_a_delivery(wa_conversation):
    """httpx does not follow redirects; a 3xx used to count as sent, and the message was lost."""
    route = _route(wa_conversation).mock(return_value=httpx.Response(
        301, headers={"Location": "https://graph.test/v23.0/moved?access_token=x"}))
    message = _queued(wa_conversation)
    assert _run(message) == "failed"
    message.refresh_from_db()
    assert "HTTP 301" in message.error and "redirect" in message.error and "access_token" not in message.error
    assert route.call_count == 1


@respx.mock
def test_a_2xx_that_carries_an_error_is_a_failure(wa_conversation):
    _route(wa_conversation).mock(return_value=httpx.Response(200, json={"error": {"message": "(#100) Invalid"}}))
    message = _queued(wa_conversation)
    assert _run(message) == "failed"
    message.refresh_from_db()
    assert "(#100) Invalid" in message.error


@respx.mock
def test_error_texts_and_ids_postgresql_cannot_store_do_not_make_the_relay_loop(wa_conversation):
    """A NUL in a proxy's 502 page, or an id longer than the column, used to make the record fail
    after the call, and the lane sent the message again every 5 s."""
    route = _route(wa_conversation).mock(side_effect=[
        httpx.Response(502, content=b"bad gateway\x00\xff"),
        httpx.Response(200, json={"messages": [{"id": "wamid." + "x" * 300}]}),
    ])
    message = _queued(wa_conversation)
    assert _run(message) == "retry"
    message.refresh_from_db()
    assert "bad gateway" in message.error and "\x00" not in message.error
    assert _run(message) == "sent"
    message.refresh_from_db()
    assert message.provider_message_id == ("wamid." + "x" * 300)[:200]
    assert route.call_count == 2


@respx.mock
def test_a_send_whose_record_fails_is_recorded_without_its_id_not_sent_again(wa_conversation, monkeypatch):
    route = _route(wa_conversation).mock(return_value=httpx.Response(200, json={"messages": [{"id": "wamid.R"}]}))
    real_record, calls = relay._record, []

    def record(claim, owner, result, error, duration):
        calls.append(result.provider_message_id if result else None)
        if len(calls) == 1:
            raise RuntimeError("the id clashed with a row written meanwhile")
        return real_record(claim, owner, result, error, duration)

    monkeypatch.setattr(relay, "_record", record)
    message = _queued(wa_conversation)
    assert _run(message) == "sent"
    assert calls == ["wamid.R", ""] and route.call_count == 1
    message.refresh_from_db()
    assert message.status == "sent" and message.provider_message_id is None


@respx.mock
def test_a_message_whose_attempts_keep_going_unrecorded_fails_instead_of_looping(wa_conversation, settings):
    route = _route(wa_conversation).mock(return_value=httpx.Response(200, json={"messages": [{"id": "wamid.L"}]}))
    message = _queued(wa_conversation)
    ChatMessage.dangerously_unscoped.filter(pk=message.pk).update(
        attempts=settings.RELAY_MAX_ATTEMPTS + relay.UNRECORDED_ATTEMPTS_ALLOWED)
    assert _run(message) == "failed"
    message.refresh_from_db()
    assert "could not all be recorded" in message.error and route.call_count == 0


@respx.mock
def test_retry_after_is_honoured_up_to_the_longest_backoff(wa_conversation, settings):
    settings.RELAY_RETRY_MAX_SECONDS = 60
    _route(wa_conversation).mock(return_value=httpx.Response(429, headers={"Retry-After": "86400"}))
    message = _queued(wa_conversation)
    before = timezone.now()
    assert _run(message) == "retry"
    due = _lane().due_at
    assert before + timedelta(seconds=59) <= due <= timezone.now() + timedelta(seconds=61)


def test_retry_after_as_seconds_or_an_http_date():
    from email.utils import format_datetime

    from messaging.providers.base import retry_after_seconds

    assert retry_after_seconds("120") == 120
    assert 25 <= retry_after_seconds(format_datetime(timezone.now() + timedelta(seconds=30), usegmt=True)) <= 30
    assert retry_after_seconds("inf") is None and retry_after_seconds("1e400") is None
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@respx.mock
def test_a_token_quoted_by_a_connection_error_is_not_stored(wa_conversation):
    token = "wa-token-123456"
    _route(wa_conversation).mock(side_effect=httpx.LocalProtocolError(f"Illegal header value b'Bearer {token}\\n'"))
    message = _queued(wa_conversation)
    assert _run(message) == "retry"
    message.refresh_from_db()
    assert token not in message.error and "[redacted]" in message.error
    assert token not in DeliveryAttempt.dangerously_unscoped.get(message=message).error


def test_old_delivery_attempts_are_pruned_oldest_first(wa_conversation, settings):
    message = _queued(wa_conversation)
    now = timezone.now()
    for number, age_days in enumerate((200, 120, 91, 30, 1), start=1):
        DeliveryAttempt.dangerously_unscoped.create(tenant_id=message.tenant_id, message=message, number=number,
                                                   started_at=now - timedelta(days=age_days), outcome="retry")
    assert relay.prune_delivery_attempts(keep_days=0) == 0  # 0 keeps everything
    assert relay.prune_delivery_attempts(keep_days=90, batch=2) == 3
    assert sorted(DeliveryAttempt.dangerously_unscoped.values_list("number", flat=True)) == [4, 5]
    message.refresh_from_db()
    assert message.status == "queued"  # the message itself is untouched
