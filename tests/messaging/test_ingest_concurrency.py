"""A burst from one contact arriving on parallel connections, each thread also draining the
webhook inbox as a worker would (so up to eight batch writes race for one conversation): every
message stored once, one conversation, exactly one waiting buffer job (the loser of the
queueing-lock race runs its statement again and finds the winner's job), and a duplicate storm
stores nothing twice."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.test import Client
from procrastinate.contrib.django.models import ProcrastinateJob

from messaging.models import ChatConversation, ChatMessage
from tests.messaging.helpers import post_meta, whatsapp_text

pytestmark = pytest.mark.django_db(transaction=True)


def _post_in_parallel(bodies: list[dict], threads: int = 8) -> list[int]:
    statuses, barrier = [], threading.Barrier(threads)

    def worker(mine):
        client = Client()
        try:
            barrier.wait(timeout=30)
            for body in mine:
                statuses.append(post_meta(client, body).status_code)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker, args=(bodies[n::threads],)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    return statuses


def test_a_parallel_burst_stores_everything_and_arms_one_buffer_job(wa_binding):
    bodies = [whatsapp_text(wa_binding.external_id, "5491100000009", f"parte {n}") for n in range(40)]
    statuses = _post_in_parallel(bodies)
    assert statuses == [200] * 40
    assert ChatConversation.dangerously_unscoped.count() == 1
    assert ChatMessage.dangerously_unscoped.count() == 40
    conversation = ChatConversation.dangerously_unscoped.get()
    jobs = ProcrastinateJob.objects.filter(queueing_lock=f"buffer:{conversation.pk}", status="todo")
    assert jobs.count() == 1
    job = jobs.get()
    assert job.args == {"tenant_id": wa_binding.tenant_id, "conversation_id": conversation.pk}
    assert job.task_name == "messaging.answer_conversation" and job.lock == f"buffer:{conversation.pk}"
    # Scheduled at the first message's due time; when it runs it reschedules itself to the last one.
    assert job.scheduled_at <= conversation.buffer_due_at


def test_a_parallel_duplicate_storm_stores_one_message(wa_binding):
    body = whatsapp_text(wa_binding.external_id, "5491100000009", "hola", message_id="wamid.same")
    assert _post_in_parallel([body] * 24) == [200] * 24
    assert ChatMessage.dangerously_unscoped.count() == 1


def test_a_staff_reply_holds_the_conversation_before_it_waits_for_the_recipient_lane(tenant_a, wa_binding):
    """Lock order: a reply locks the conversation row exclusively first and the lane second, as
    the buffer's turn does (its claim, then relay_parts), so a reply and a turn at once queue
    behind each other instead of deadlocking. With the lane held elsewhere, the reply waits on it
    while holding the conversation: a probe asking for the conversation's row is refused. (An
    insert's foreign-key check alone would only take a share lock, which the probe's mode allows.)"""
    import psycopg
    from django.db import connection

    from messaging.models import DeliveryLane
    from messaging.relay import relay_parts
    from messaging.services import relay_message
    from tests.messaging import factories
    from tests.messaging.helpers import wait_until

    conversation = factories.conversation(tenant_a, binding=wa_binding, contact_external_id="5491144444444")
    relay_parts(conversation=conversation, parts=["primera"], role="agent")  # the recipient's lane exists
    lane = DeliveryLane.dangerously_unscoped.get()
    params = connection.get_connection_params()
    errors = []

    def reply():
        try:
            relay_message(tenant_id=tenant_a.pk, to="", text="segunda", provider="meta_direct",
                          channel_source="whatsapp", conversation_id=conversation.pk, role="human")
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    with psycopg.connect(**params) as holder:
        holder.execute(f"SELECT 1 FROM {DeliveryLane._meta.db_table} WHERE id = %s FOR UPDATE", [lane.pk])
        thread = threading.Thread(target=reply)
        thread.start()

        def reply_waits_for_the_lane():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                               "AND wait_event_type = 'Lock' AND query LIKE %s",
                               [f"%{DeliveryLane._meta.db_table}%"])
                return cursor.fetchone()

        wait_until(reply_waits_for_the_lane)
        with psycopg.connect(**params, autocommit=True) as probe, pytest.raises(psycopg.errors.LockNotAvailable):
            probe.execute(f"SELECT 1 FROM {ChatConversation._meta.db_table} WHERE id = %s FOR NO KEY UPDATE NOWAIT",
                          [conversation.pk])
        holder.rollback()
        thread.join(30)
    assert not errors
    assert list(ChatMessage.dangerously_unscoped.order_by("id").values_list("text", flat=True)) == ["primera", "segunda"]
