"""The webhook inbox: a delivery is stored raw before the 200, and the worker's drainer parses,
routes and stores it (batches, one delivery's failure isolated, retries, the admin's view)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging import inbox, ingest
from messaging.webhooks import meta
from messaging.models import ChatConversation, ChatMessage, InboundDelivery
from messaging.signatures import sign_meta
from tests.messaging.helpers import APP_SECRET, post_meta, whatsapp_text

pytestmark = pytest.mark.django_db


def _post_raw(client, body: dict):
    raw = json.dumps(body).encode()
    return client.post("/webhooks/meta/", raw, content_type="application/json",
                       HTTP_X_HUB_SIGNATURE_256=sign_meta(APP_SECRET, raw))


def test_the_webhook_persists_the_raw_delivery_before_it_answers(anon, wa_binding):
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "hola")
    response = _post_raw(anon, body)
    assert response.status_code == 200 and response.json() == {"status": "accepted"}
    delivery = InboundDelivery.objects.get()
    assert json.loads(delivery.body) == body and delivery.provider == "meta_direct"
    assert delivery.attempts == 0 and delivery.next_attempt_at is not None
    assert not ChatMessage.dangerously_unscoped.exists()  # the worker stores it

    assert inbox.drain() == 1
    assert ChatMessage.dangerously_unscoped.get().text == "hola"
    assert not InboundDelivery.objects.exists()


def test_a_batch_stores_every_delivery_in_order(anon, wa_binding):
    for n in range(5):
        _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000001", f"m{n}"))
    _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000002", "otro"))
    assert inbox.process_pending(limit=10) == 6
    texts = list(ChatMessage.dangerously_unscoped.filter(conversation__contact_external_id="5491100000001")
                 .order_by("id").values_list("text", flat=True))
    assert texts == ["m0", "m1", "m2", "m3", "m4"]
    assert ChatConversation.dangerously_unscoped.count() == 2
    assert not InboundDelivery.objects.exists()


def test_the_buffer_counts_from_when_the_webhook_received_the_message(anon, wa_binding):
    _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola"))
    received = InboundDelivery.objects.get().received_at
    InboundDelivery.objects.update(received_at=received - timedelta(seconds=60))  # a backlog of a minute
    inbox.drain()
    conversation = ChatConversation.dangerously_unscoped.get()
    assert conversation.buffer_due_at == received - timedelta(seconds=60) + timedelta(seconds=16)


def test_one_failing_delivery_does_not_hold_back_the_others(anon, wa_binding, monkeypatch, caplog):
    for text in ("uno", "boom", "tres"):
        _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000001", text))
    real = meta.parse

    def flaky(payload):
        events = real(payload)
        if any(getattr(event, "text", "") == "boom" for event in events):
            raise RuntimeError("storage exploded")
        return events

    monkeypatch.setattr(meta, "parse", flaky)
    assert inbox.process_pending() == 3
    assert sorted(ChatMessage.dangerously_unscoped.values_list("text", flat=True)) == ["tres", "uno"]
    stuck = InboundDelivery.objects.get()
    assert stuck.attempts == 1 and stuck.last_error == "RuntimeError: storage exploded"
    assert stuck.next_attempt_at > timezone.now()  # backoff: not picked up again at once
    assert inbox.drain() == 0

    # Due again and fixed: stored once, nothing doubled.
    monkeypatch.setattr(meta, "parse", real)
    InboundDelivery.objects.update(next_attempt_at=timezone.now())
    assert inbox.drain() == 1
    assert sorted(ChatMessage.dangerously_unscoped.values_list("text", flat=True)) == ["boom", "tres", "uno"]


def test_a_delivery_that_keeps_failing_is_kept_with_its_error_until_processed_again(anon, wa_binding, monkeypatch,
                                                                                    settings):
    settings.INBOX_MAX_ATTEMPTS = 2
    _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola"))

    def broken(*args, **kwargs):
        raise ValueError("bad luck")

    monkeypatch.setattr(ingest, "record_inbound_many", broken)
    for _ in range(2):
        InboundDelivery.objects.filter(next_attempt_at__isnull=False).update(next_attempt_at=timezone.now())
        inbox.drain()
    stuck = InboundDelivery.objects.get()
    assert stuck.attempts == 2 and stuck.next_attempt_at is None and "bad luck" in stuck.last_error
    monkeypatch.undo()
    assert inbox.drain() == 0  # given up: only the admin brings it back
    assert inbox.process_again([stuck.pk]) == 1
    assert inbox.drain() == 1
    assert ChatMessage.dangerously_unscoped.get().text == "hola"


def test_a_duplicate_delivery_in_the_same_batch_is_stored_once(anon, wa_binding):
    body = whatsapp_text(wa_binding.external_id, "5491100000001", "hola", message_id="wamid.same")
    _post_raw(anon, body)
    _post_raw(anon, body)
    assert inbox.drain() == 2
    assert ChatMessage.dangerously_unscoped.count() == 1


def test_post_helper_processes_like_a_worker(anon, wa_binding):
    post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola"))
    assert ChatMessage.dangerously_unscoped.count() == 1 and not InboundDelivery.objects.exists()


def test_only_platform_admins_see_the_inbox_in_the_admin(client, platform_admin, user_a, anon, wa_binding):
    _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "hola secreto"))
    delivery = InboundDelivery.objects.get()
    client.force_login(user_a)
    assert client.get("/admin/messaging/inbounddelivery/").status_code == 403
    client.force_login(platform_admin)
    page = client.get("/admin/messaging/inbounddelivery/")
    assert page.status_code == 200 and str(delivery.pk) in page.content.decode()
    InboundDelivery.objects.update(next_attempt_at=None, attempts=5, last_error="ValueError: x")
    response = client.post("/admin/messaging/inbounddelivery/", {
        "action": "process_again", "_selected_action": [delivery.pk]}, follow=True)
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None and delivery.attempts == 0


def test_a_batch_arms_one_buffer_job_per_conversation(anon, wa_binding):
    from procrastinate.contrib.django.models import ProcrastinateJob

    for n in range(3):
        _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000001", f"a{n}"))
        _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000002", f"b{n}"))
    assert inbox.drain() == 6
    jobs = ProcrastinateJob.objects.filter(queueing_lock__startswith="buffer:", status="todo")
    conversations = ChatConversation.dangerously_unscoped.all()
    assert sorted(job.args["conversation_id"] for job in jobs) == sorted(c.pk for c in conversations)
    _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "a3"))  # a job already waits
    inbox.drain()
    assert jobs.count() == 2


def test_one_contact_on_two_numbers_of_a_tenant_in_one_batch(anon, wa_binding, tenant_a):
    from tests.messaging import factories

    second = factories.binding(tenant_a, provider="meta_direct", channel_source="whatsapp", external_id="99887766")
    _post_raw(anon, whatsapp_text(wa_binding.external_id, "5491100000001", "al primero"))
    _post_raw(anon, whatsapp_text(second.external_id, "5491100000001", "al segundo"))
    assert inbox.drain() == 2
    conversation = ChatConversation.dangerously_unscoped.get()  # one conversation per contact and channel
    assert sorted(conversation.messages.values_list("text", flat=True)) == ["al primero", "al segundo"]
    assert conversation.binding_id == second.pk  # the latest binding the contact wrote to


def test_the_drainer_thread_yields_the_cpu_to_requests(settings):
    """Its nice value is raised for its own thread only (Linux: per thread), not the worker's."""
    import os
    import threading

    if not hasattr(os, "setpriority"):
        pytest.skip("no setpriority on this platform")
    settings.INBOX_NICE = 5
    seen = {}

    def drainer_thread():
        inbox._lower_priority()
        seen["drainer"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=drainer_thread)
    thread.start()
    thread.join()
    assert seen["drainer"] == os.getpriority(os.PRIO_PROCESS, 0) + 5 or seen["drainer"] == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < seen["drainer"]
