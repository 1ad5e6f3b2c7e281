"""Real worker processes on the test database, against a local provider server.

Small settings keep each test to a few seconds: spacing 0.3 s, heartbeats every 0.5 s, a killed
worker's jobs requeued after 2 s and its relay lanes taken over after 1 s.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.db import connection
from django.utils import timezone

from messaging.models import ChatMessage, DeliveryLane, InboundDelivery
from messaging import relay
from messaging.relay import relay_parts
from tests.messaging import factories
from tests.messaging.helpers import Worker
from tests.messaging.provider_server import ProviderServer
from vault.credentials import set_tenant_credential

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SPACING = 0.3


@pytest.fixture
def provider():
    with ProviderServer() as server:
        yield server


@pytest.fixture
def conversations(tenant_a, settings):
    settings.RELAY_SPACING_SECONDS = SPACING
    binding = factories.binding(tenant_a, external_id="PN-WORKER")
    set_tenant_credential(tenant_a.pk, "whatsapp_cloud", "ACCESS_TOKEN", "wa-token-worker")
    set_tenant_credential(tenant_a.pk, "whatsapp_cloud", "PHONE_NUMBER_ID", "PN-WORKER")
    return [
        factories.conversation(tenant_a, binding=binding, contact_external_id=f"54911000000{i:02d}",
                               last_inbound_at=timezone.now())
        for i in range(4)
    ]


def _worker(tmp_path, provider, name="worker", **env):
    return Worker(tmp_path / f"{name}.log", META_GRAPH_BASE=provider.url, RELAY_SPACING_SECONDS=SPACING,
                  MESSAGE_BUFFER_SECONDS=0.5,
                  RELAY_RETRY_BASE_SECONDS=0.05, RELAY_RETRY_MAX_SECONDS=0.2, **env)


def _answered_by(agent, conversations, settings):
    """The conversations' binding answered by `agent`, with a 0.5 s buffer: the binding."""
    settings.MESSAGE_BUFFER_SECONDS = 0.5
    binding = conversations[0].binding
    binding.agent = agent
    binding.save()
    return binding


def _check_spacing_and_order(provider, messages):
    by_recipient = defaultdict(list)
    for delivery in provider.deliveries():
        by_recipient[delivery["json"]["to"]].append(delivery)
    for recipient, deliveries in by_recipient.items():
        times = [d["at"] for d in deliveries]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(gap >= SPACING - 0.005 for gap in gaps), (recipient, gaps)
        expected = [m.text for m in messages if m.conversation.contact_external_id == recipient]
        assert [d["json"]["text"]["body"] for d in deliveries] == expected
    return by_recipient


def test_parts_are_spaced_in_order_and_recipients_run_in_parallel(tmp_path, provider, conversations):
    messages = []
    for conversation in conversations[:2]:
        messages += relay_parts(conversation=conversation, parts=[f"{conversation.pk}-{i}" for i in range(5)],
                                role="agent")
    with _worker(tmp_path, provider) as worker:
        worker.wait_for(lambda: len(provider.deliveries()) == 10)
    assert provider.replays == 0
    by_recipient = _check_spacing_and_order(provider, messages)
    firsts = sorted(d[0]["at"] for d in by_recipient.values())
    assert firsts[1] - firsts[0] < SPACING  # the second recipient did not wait for the first
    assert ChatMessage.dangerously_unscoped.filter(status="sent").count() == 10


def test_worker_killed_mid_queue_sends_every_message_exactly_once(tmp_path, provider, conversations):
    messages = []
    for conversation in conversations:
        messages += relay_parts(conversation=conversation, parts=[f"{conversation.pk}-{i}" for i in range(6)],
                                role="agent")
    first = _worker(tmp_path, provider, "first").start()
    try:
        first.wait_for(lambda: len(provider.deliveries()) >= 6)
    finally:
        first.kill()
    sent_before_restart = len(provider.deliveries())
    assert sent_before_restart < len(messages), "the kill must land mid-queue"
    with _worker(tmp_path, provider, "second") as second:
        second.wait_for(lambda: ChatMessage.dangerously_unscoped.filter(status="sent").count() == len(messages))
    keys = [d["headers"]["Idempotency-Key"] for d in provider.deliveries()]
    assert sorted(keys) == sorted(str(m.idempotency_key) for m in messages)  # every message delivered, once
    _check_spacing_and_order(provider, messages)


def test_provider_500_then_200_through_the_worker(tmp_path, provider, conversations):
    provider.script("/PN-WORKER/messages", [500, 503])
    message = relay_parts(conversation=conversations[0], parts=["retry me"], role="agent")[0]
    with _worker(tmp_path, provider) as worker:
        worker.wait_for(lambda: ChatMessage.dangerously_unscoped.get(pk=message.pk).status == "sent")
    assert len(provider.deliveries()) == 1 and len(provider.requests) == 3
    assert ChatMessage.dangerously_unscoped.get(pk=message.pk).attempts == 3


def test_webhook_burst_to_one_reply_through_a_real_worker(tmp_path, provider, conversations, client, settings,
                                                          agent_a, model_a):
    """Webhook → inbox → worker's drainer → durable buffer (0.5 s) → worker → real run_turn (fake
    model) → relay → provider."""
    from tests.fakes.openai_server import Reply
    from tests.messaging.helpers import post_meta, whatsapp_text

    binding = _answered_by(agent_a, conversations, settings)
    model_a.push(Reply.text("¡Hola! ||| Sí, tenemos talle 42."))
    for text in ("hola", "tienen talle 42?"):
        response = post_meta(client, whatsapp_text(binding.external_id, "5491199999999", text), process=False)
        assert response.status_code == 200
    assert InboundDelivery.objects.count() == 2 and not ChatMessage.dangerously_unscoped.exists()
    with _worker(tmp_path, provider) as worker:
        worker.wait_for(lambda: len(provider.deliveries()) == 2)
    assert provider.texts() == ["¡Hola!", "Sí, tenemos talle 42."]
    assert not InboundDelivery.objects.exists()
    assert {d["json"]["to"] for d in provider.deliveries()} == {"5491199999999"}
    assert len(model_a.requests) == 1 and model_a.messages()[-1]["content"] == "hola\ntienen talle 42?"
    deliveries = provider.deliveries()
    assert deliveries[1]["at"] - deliveries[0]["at"] >= SPACING - 0.005


def test_a_worker_stopped_mid_queue_hands_its_lanes_back_at_once(tmp_path, provider, conversations):
    """A graceful stop (SIGINT/SIGTERM): sends under way are recorded, held lanes go back at once
    (not after RELAY_ORPHAN_SECONDS), and the next worker sends the rest exactly once."""
    messages = []
    for conversation in conversations:
        messages += relay_parts(conversation=conversation, parts=[f"{conversation.pk}-{i}" for i in range(4)],
                                role="agent")
    # Claiming a second ahead, it holds every lane (waiting for the due time) when it stops.
    first = _worker(tmp_path, provider, "first", RELAY_POLL_SECONDS=1).start()
    first.wait_for(lambda: len(provider.deliveries()) >= 4)
    first.stop()
    assert first.proc.returncode is not None
    assert not DeliveryLane.dangerously_unscoped.filter(claimed_by__isnull=False).exists()
    sent = ChatMessage.dangerously_unscoped.filter(status="sent").count()
    assert sent == len(provider.deliveries()) < len(messages)  # every send that left was recorded
    with _worker(tmp_path, provider, "second", RELAY_ORPHAN_SECONDS=3600) as second:
        second.wait_for(lambda: ChatMessage.dangerously_unscoped.filter(status="sent").count() == len(messages))
    keys = [d["headers"]["Idempotency-Key"] for d in provider.deliveries()]
    assert sorted(keys) == sorted(str(m.idempotency_key) for m in messages)
    assert provider.replays == 0  # not even a resend with the same key (Meta and Chatwoot do not honour it)
    _check_spacing_and_order(provider, messages)


def test_the_dispatcher_starts_over_when_its_database_session_is_cut(tmp_path, provider, conversations):
    """The dispatcher's listening session (which holds its advisory lock) is terminated mid-queue:
    it starts over under a new id and every message still leaves once, in order, spaced."""
    messages = []
    for conversation in conversations:
        messages += relay_parts(conversation=conversation, parts=[f"{conversation.pk}-{i}" for i in range(5)],
                                role="agent")
    with _worker(tmp_path, provider) as worker:
        worker.wait_for(lambda: len(provider.deliveries()) >= 4)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                           [f"LISTEN {relay.WAKE_CHANNEL}"])
            assert cursor.fetchall() == [(True,)]
        worker.wait_for(lambda: ChatMessage.dangerously_unscoped.filter(status="sent").count() == len(messages))
        assert "starting over under a new id" in worker.output()
    keys = [d["headers"]["Idempotency-Key"] for d in provider.deliveries()]
    assert sorted(keys) == sorted(str(m.idempotency_key) for m in messages)
    assert provider.replays == 0
    _check_spacing_and_order(provider, messages)


def test_a_worker_killed_mid_turn_while_the_customer_writes_again(tmp_path, provider, conversations, client,
                                                                    settings, agent_a, model_a):
    """The worker dies while the model answers; the customer writes again, so a second job of the
    conversation waits under the same queueing lock. The next worker cannot put the dead one's job
    back to "todo" (the lock is taken): it marks it failed, and the waiting job answers both
    messages in one turn. Before, the dead job stayed "doing" for good, holding the conversation's
    lock, and the customer was never answered again."""
    from procrastinate.contrib.django.models import ProcrastinateJob

    from tests.fakes.openai_server import Reply
    from tests.messaging.helpers import post_meta, whatsapp_text

    binding = _answered_by(agent_a, conversations, settings)
    model_a.push(Reply.text("never arrives", delay=60), Reply.text("Hola, te respondo las dos cosas."))
    post_meta(client, whatsapp_text(binding.external_id, "5491177777777", "hola"))
    first = _worker(tmp_path, provider, "first").start()
    try:
        first.wait_for(lambda: len(model_a.requests) == 1)  # the turn is inside the model call
    finally:
        first.kill()
    post_meta(client, whatsapp_text(binding.external_id, "5491177777777", "sigo esperando"))
    conversation = ChatMessage.dangerously_unscoped.get(text="hola").conversation
    jobs = ProcrastinateJob.objects.filter(task_name="messaging.answer_conversation",
                                           args__conversation_id=conversation.pk)
    assert sorted(jobs.values_list("status", flat=True)) == ["doing", "todo"]
    with _worker(tmp_path, provider, "second") as second:
        second.wait_for(lambda: len(provider.deliveries()) == 1)
        assert "replaced by the job already waiting" in second.output()
    assert provider.texts() == ["Hola, te respondo las dos cosas."]
    assert model_a.messages()[-1]["content"] == "hola\nsigo esperando"
    assert sorted(jobs.values_list("status", flat=True)) == ["failed", "succeeded"]


def test_a_job_whose_status_write_is_cut_is_recorded_and_frees_the_conversation(tmp_path, provider, conversations,
                                                                                 client, settings, agent_a, model_a):
    """The database connection of a finished turn's status write is cut (a database restart at that
    moment) while the worker lives on. procrastinate alone left that job "doing" for good under a
    worker whose heartbeat went on, holding the conversation's lock: the customer's next message was
    never answered. The worker now writes the status again, and the next message is answered."""
    import psycopg
    from procrastinate.contrib.django.models import ProcrastinateJob

    from tests.fakes.openai_server import Reply
    from tests.messaging.helpers import post_meta, wait_until, whatsapp_text

    binding = _answered_by(agent_a, conversations, settings)
    model_a.push(Reply.text("Primera respuesta", delay=0.5), Reply.text("Segunda respuesta"))
    post_meta(client, whatsapp_text(binding.external_id, "5491166666666", "hola"))
    conversation = ChatMessage.dangerously_unscoped.get(text="hola").conversation
    job = ProcrastinateJob.objects.get(task_name="messaging.answer_conversation", args__conversation_id=conversation.pk)
    params = connection.get_connection_params()
    with _worker(tmp_path, provider) as worker, psycopg.connect(**params) as holder:
        worker.wait_for(lambda: len(model_a.requests) == 1)
        holder.execute("SELECT 1 FROM procrastinate_jobs WHERE id = %s FOR UPDATE", [job.pk])

        def waiting_status_write():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                               "AND wait_event_type = 'Lock' AND query LIKE '%%procrastinate_finish_job%%'")
                return cursor.fetchone()

        pid = wait_until(waiting_status_write)[0]  # the turn is over; its status write waits on our lock
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        holder.rollback()
        worker.wait_for(lambda: ProcrastinateJob.objects.get(pk=job.pk).status == "succeeded")
        assert "Could not record job" in worker.output()
        post_meta(client, whatsapp_text(binding.external_id, "5491166666666", "¿seguís ahí?"))
        worker.wait_for(lambda: len(provider.deliveries()) == 2)
    assert provider.texts() == ["Primera respuesta", "Segunda respuesta"]


def test_the_worker_comes_back_after_the_database_was_away(tmp_path, provider, conversations, client, settings,
                                                         agent_a, model_a):
    """The database refuses connections for a while (a restart, a failover). procrastinate's worker
    stops for good when its listener or heartbeat loses the database: the process used to exit
    quietly (status 0), and `make up` stopped with it. It now starts its job worker again once the
    database answers, and the next customer message is answered."""
    import psycopg
    from procrastinate.contrib.django.models import ProcrastinateWorker

    from tests.fakes.openai_server import Reply
    from tests.messaging.helpers import post_meta, whatsapp_text

    binding = _answered_by(agent_a, conversations, settings)
    model_a.push(Reply.text("Acá estoy"))
    name = connection.settings_dict["NAME"]
    maintenance = {**connection.get_connection_params(), "dbname": "postgres", "autocommit": True}
    with _worker(tmp_path, provider) as worker, psycopg.connect(**maintenance) as admin:
        worker.wait_for(lambda: ProcrastinateWorker.objects.exists())  # its job worker is up
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            # Usually procrastinate's listener fails at once and its worker stops; sometimes the
            # outage is only noticed by the pool, which waits it out. Either way: 5 s at most.
            try:
                worker.wait_for(lambda: "stopping worker" in worker.output(), timeout=5)
            except AssertionError:
                assert worker.proc.poll() is None, worker.output()[-3000:]
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        if "stopping worker" in worker.output():
            worker.wait_for(lambda: "starting it again" in worker.output())
        post_meta(client, whatsapp_text(binding.external_id, "5491155555555", "¿hay alguien?"))
        worker.wait_for(lambda: len(provider.deliveries()) == 1)
    assert provider.texts() == ["Acá estoy"]
