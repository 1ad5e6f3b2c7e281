"""The inbound buffer with an injectable clock: one turn per burst, no turn when it must not."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from messaging.buffer import run_buffer
from messaging.models import ChatConversation, ChatMessage
from tests.messaging.helpers import post_meta, whatsapp_text

pytestmark = pytest.mark.django_db


@dataclass
class FakeResult:
    parts: list = field(default_factory=lambda: ["Hola!", "Sí, hay talle 42."])
    error: str | None = None
    turn_id: int | None = 7


class Runner:
    def __init__(self, result=None, crash=None):
        self.calls, self.result, self.crash = [], result or FakeResult(), crash

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        if self.crash:
            raise self.crash
        return self.result


class WorkerDied(BaseException):
    """Not an Exception: nothing in the job catches it, like a SIGKILL mid-turn."""


@pytest.fixture
def burst(anon, wa_binding, agent_a):
    wa_binding.agent = agent_a
    wa_binding.save()
    t0 = timezone.now()
    for text in ("hola", "tienen talle 42?"):
        post_meta(anon, whatsapp_text(wa_binding.external_id, "5491100000001", text))
    return ChatConversation.dangerously_unscoped.get(), t0


def _run(conversation, at, runner):
    return run_buffer(tenant_id=conversation.tenant_id, conversation_id=conversation.pk, clock=lambda: at,
                      turn_runner=runner)


def test_burst_waits_for_the_window_then_one_turn_answers_all(burst):
    conversation, t0 = burst
    runner = Runner()
    assert _run(conversation, t0 + timedelta(seconds=10), runner) == "rescheduled"
    assert runner.calls == []
    result = _run(conversation, t0 + timedelta(seconds=17), runner)
    assert result.startswith("answered 2 message(s)")
    assert len(runner.calls) == 1
    call = runner.calls[0]
    assert call["user_text"] == "hola\ntienen talle 42?" and call["history"] == []
    assert call["conversation_id"] == conversation.pk and call["agent_id"] == conversation.binding.agent_id
    replies = ChatMessage.dangerously_unscoped.filter(direction="out").order_by("id")
    assert [m.text for m in replies] == ["Hola!", "Sí, hay talle 42."]
    assert all(m.role == "agent" and m.status == "queued" and m.turn_id == "7" for m in replies)
    assert _run(conversation, t0 + timedelta(seconds=30), runner) == "nothing to answer"
    assert len(runner.calls) == 1


def test_a_new_message_pushes_the_window(anon, burst):
    conversation, t0 = burst
    conversation.refresh_from_db()
    first_due = conversation.buffer_due_at
    post_meta(anon, whatsapp_text(conversation.binding.external_id, "5491100000001", "y en negro?"))
    conversation.refresh_from_db()
    assert conversation.buffer_due_at > first_due
    runner = Runner()
    assert _run(conversation, conversation.buffer_due_at - timedelta(seconds=0.5), runner) == "rescheduled"
    assert _run(conversation, conversation.buffer_due_at, runner).startswith("answered 3")


def test_a_replayed_message_does_not_push_the_window(anon, burst):
    conversation, _ = burst
    conversation.refresh_from_db()
    due = conversation.buffer_due_at
    first = ChatMessage.dangerously_unscoped.filter(direction="in").order_by("id").first()
    post_meta(anon, whatsapp_text(conversation.binding.external_id, "5491100000001", "hola",
                                  message_id=first.provider_message_id))  # Meta retries the delivery
    conversation.refresh_from_db()
    assert conversation.buffer_due_at == due
    assert ChatMessage.dangerously_unscoped.filter(direction="in").count() == 2
    runner = Runner()
    assert _run(conversation, due, runner).startswith("answered 2")


def test_history_holds_earlier_messages_oldest_first(burst):
    conversation, t0 = burst
    runner = Runner()
    _run(conversation, t0 + timedelta(seconds=17), runner)
    ChatMessage.dangerously_unscoped.create(tenant_id=conversation.tenant_id, conversation=conversation, direction="in",
                                             role="customer", text="gracias", provider="meta_direct", status="received")
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(buffer_due_at=t0)
    _run(conversation, t0 + timedelta(seconds=40), runner)
    assert runner.calls[1]["user_text"] == "gracias"
    assert runner.calls[1]["history"] == [
        {"role": "customer", "text": "hola"}, {"role": "customer", "text": "tienen talle 42?"},
        {"role": "agent", "text": "Hola!"}, {"role": "agent", "text": "Sí, hay talle 42."},
    ]


@pytest.mark.parametrize("change,reason", [
    ({"bot_paused_until": timezone.now() + timedelta(hours=1)}, "Bot paused"),
    ({"status": "human"}, "human mode"),
    ({"status": "closed"}, "closed"),
    ({"agent": None}, "No agent"),
    ({"last_inbound_at": timezone.now() - timedelta(hours=25)}, "24-hour window"),
])
def test_no_turn_when_the_bot_must_not_answer(burst, change, reason):
    conversation, t0 = burst
    if change.get("agent", 1) is None:
        conversation.binding.agent = None
        conversation.binding.save()
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(**change)
    runner = Runner()
    at = t0 + timedelta(seconds=17) if "last_inbound_at" not in change else timezone.now() + timedelta(seconds=17)
    assert reason in _run(conversation, at, runner)
    assert runner.calls == []
    conversation.refresh_from_db()
    assert reason in conversation.last_error
    assert ChatMessage.dangerously_unscoped.filter(direction="in").count() == 2  # kept
    assert not ChatMessage.dangerously_unscoped.filter(direction="out").exists()


def test_inactive_agent_gets_no_turn(burst, agent_a):
    conversation, t0 = burst
    agent_a.is_active = False
    agent_a.save()
    runner = Runner()
    assert "inactive" in _run(conversation, t0 + timedelta(seconds=17), runner)
    assert runner.calls == []


def test_a_crash_mid_turn_answers_the_burst_on_the_next_run_exactly_once(burst):
    conversation, t0 = burst
    with pytest.raises(WorkerDied):
        _run(conversation, t0 + timedelta(seconds=17), Runner(crash=WorkerDied()))
    conversation.refresh_from_db()
    assert len(conversation.turn_claim) == 2
    runner = Runner()
    assert _run(conversation, t0 + timedelta(seconds=60), runner).startswith("answered 2")
    assert runner.calls[0]["user_text"] == "hola\ntienen talle 42?"
    assert ChatMessage.dangerously_unscoped.filter(direction="out").count() == 2
    assert _run(conversation, t0 + timedelta(seconds=90), runner) == "nothing to answer"


def test_turn_error_is_recorded_on_the_conversation(burst):
    conversation, t0 = burst
    runner = Runner(FakeResult(parts=[], error="OpenAI credentials not configured"))
    assert _run(conversation, t0 + timedelta(seconds=17), runner) == "error: OpenAI credentials not configured"
    conversation.refresh_from_db()
    assert conversation.last_error == "OpenAI credentials not configured" and conversation.turn_claim == []


def test_rescheduling_defers_one_job_at_the_due_time(burst):
    conversation, t0 = burst
    ProcrastinateJob.objects.filter(task_name="messaging.answer_conversation").delete()  # as if running
    _run(conversation, t0 + timedelta(seconds=5), Runner())
    job = ProcrastinateJob.objects.get(task_name="messaging.answer_conversation", status="todo")
    conversation.refresh_from_db()
    assert job.scheduled_at == conversation.buffer_due_at


def test_answered_turn_feeds_shadow_rag_when_the_agent_opted_in(burst, agent_a, monkeypatch):
    import sys
    import types

    calls = []
    fake = types.ModuleType("rag.services")
    fake.index_conversation_messages = lambda **kwargs: calls.append(kwargs)
    monkeypatch.setitem(sys.modules, "rag.services", fake)
    conversation, t0 = burst
    _run(conversation, t0 + timedelta(seconds=17), Runner())
    assert calls == []  # not opted in
    agent_a.shadow_rag_enabled = True
    agent_a.save()
    ChatMessage.dangerously_unscoped.create(tenant_id=conversation.tenant_id, conversation=conversation, direction="in",
                                             role="customer", text="gracias", provider="meta_direct", status="received")
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(buffer_due_at=t0)
    _run(conversation, t0 + timedelta(seconds=40), Runner())
    assert calls[0]["agent_id"] == agent_a.pk
    assert [(m["role"], m["text"]) for m in calls[0]["messages"]] == [
        ("customer", "gracias"), ("agent", "Hola!"), ("agent", "Sí, hay talle 42.")]


def _texts_out():
    return list(ChatMessage.dangerously_unscoped.filter(direction="out").order_by("id").values_list("text", flat=True))


def test_an_interrupted_turn_is_answered_together_with_what_came_after_it(anon, burst):
    conversation, t0 = burst
    with pytest.raises(WorkerDied):
        _run(conversation, t0 + timedelta(seconds=17), Runner(crash=WorkerDied()))
    post_meta(anon, whatsapp_text(conversation.binding.external_id, "5491100000001", "sigo acá?"))
    conversation.refresh_from_db()
    runner = Runner()
    assert _run(conversation, conversation.buffer_due_at - timedelta(seconds=1), runner) == "rescheduled"
    assert _run(conversation, conversation.buffer_due_at + timedelta(seconds=1), runner).startswith("answered 3")
    assert runner.calls[0]["user_text"] == "hola\ntienen talle 42?\nsigo acá?"  # one turn, nothing left behind
    assert _texts_out() == ["Hola!", "Sí, hay talle 42."]
    conversation.refresh_from_db()
    assert conversation.turn_claim == []


def test_an_interrupted_turn_is_not_answered_again_once_a_person_took_over(burst):
    conversation, t0 = burst
    with pytest.raises(WorkerDied):
        _run(conversation, t0 + timedelta(seconds=17), Runner(crash=WorkerDied()))
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(status="human")
    runner = Runner()
    assert "human mode" in _run(conversation, t0 + timedelta(seconds=60), runner)
    assert runner.calls == [] and not _texts_out()
    conversation.refresh_from_db()
    assert conversation.turn_claim == [] and "human mode" in conversation.last_error


class TakeoverRunner(Runner):
    """A person answers while the model is still thinking (or the turn itself hands off)."""

    def __init__(self, conversation, result=None):
        super().__init__(result)
        self.conversation = conversation

    def __call__(self, **kwargs):
        from messaging.services import set_bot_paused

        set_bot_paused(tenant_id=self.conversation.tenant_id, conversation_id=self.conversation.pk, paused=True,
                       human_mode=True)
        return super().__call__(**kwargs)


def test_the_bot_reply_is_not_sent_when_a_person_took_over_during_the_turn(burst):
    conversation, t0 = burst
    outcome = _run(conversation, t0 + timedelta(seconds=17), TakeoverRunner(conversation))
    assert outcome == "not sent: Conversation is in human mode; the bot does not answer."
    assert not _texts_out()
    conversation.refresh_from_db()
    assert "was not sent" in conversation.last_error and conversation.turn_claim == []


def test_the_turns_own_handoff_still_sends_its_reply(burst):
    conversation, t0 = burst
    result = FakeResult(parts=["Te paso con una persona."])
    result.handoff_reason = "asked for a person"
    outcome = _run(conversation, t0 + timedelta(seconds=17), TakeoverRunner(conversation, result))
    assert outcome.startswith("answered 2")
    assert _texts_out() == ["Te paso con una persona."]


def test_the_buffer_compares_with_the_databases_clock(burst, monkeypatch):
    """The job was scheduled by the database's clock; a worker whose clock runs late must not
    reschedule it again and again (it would spin until its clock caught up)."""
    conversation, t0 = burst
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(
        buffer_due_at=timezone.now() - timedelta(seconds=1))
    monkeypatch.setattr(timezone, "now", lambda: t0 - timedelta(minutes=5))  # this machine's clock is late
    runner = Runner()
    outcome = run_buffer(tenant_id=conversation.tenant_id, conversation_id=conversation.pk, turn_runner=runner)
    assert outcome.startswith("answered 2")


# --- a failing job (not a turn that returns an error) ------------------------------------------


@pytest.fixture
def failing_run(monkeypatch):
    """The job's body raises (the database went away mid-job); the job wrapper runs for real, minus
    its reconnects (the test's connection holds the test's transaction)."""
    from messaging import buffer, tasks

    monkeypatch.setattr(tasks, "close_old_connections", lambda: None)
    monkeypatch.setattr(buffer, "run_buffer", lambda **kwargs: (_ for _ in ()).throw(RuntimeError("db went away")))


def _buffer_jobs(status="todo"):
    return list(ProcrastinateJob.objects.filter(task_name="messaging.answer_conversation", status=status))


def test_a_failed_job_leaves_the_work_to_the_job_already_waiting(burst, failing_run):
    from messaging.tasks import answer_conversation

    conversation, _ = burst
    [waiting] = _buffer_jobs()
    outcome = answer_conversation(tenant_id=conversation.tenant_id, conversation_id=conversation.pk)
    assert outcome == "a waiting job takes over"
    assert [job.id for job in _buffer_jobs()] == [waiting.id]


def test_a_failed_job_runs_again_with_backoff_then_gives_up(burst, settings, monkeypatch):
    from messaging import buffer, tasks
    from messaging.tasks import answer_conversation

    settings.BUFFER_MAX_ATTEMPTS = 3
    conversation, t0 = burst
    with pytest.raises(WorkerDied):
        _run(conversation, t0 + timedelta(seconds=17), Runner(crash=WorkerDied()))
    ProcrastinateJob.objects.filter(task_name="messaging.answer_conversation").delete()  # this job is the one running
    monkeypatch.setattr(tasks, "close_old_connections", lambda: None)
    monkeypatch.setattr(buffer, "run_buffer", lambda **kwargs: (_ for _ in ()).throw(RuntimeError("db went away")))
    before = timezone.now()
    assert answer_conversation(tenant_id=conversation.tenant_id, conversation_id=conversation.pk).startswith("retry 1")
    [job] = _buffer_jobs()
    assert job.args == {"tenant_id": conversation.tenant_id, "conversation_id": conversation.pk, "attempt": 1}
    assert before + timedelta(seconds=1.5) <= job.scheduled_at <= timezone.now() + timedelta(seconds=2.5)
    ProcrastinateJob.objects.filter(pk=job.pk).delete()
    assert answer_conversation(tenant_id=conversation.tenant_id, conversation_id=conversation.pk,
                               attempt=1).startswith("retry 2")
    ProcrastinateJob.objects.all().delete()
    post_meta_inline = ChatMessage.dangerously_unscoped.create(  # a message that came in meanwhile
        tenant_id=conversation.tenant_id, conversation=conversation, direction="in", role="customer", text="¿y?",
        provider="meta_direct", status="received")
    assert answer_conversation(tenant_id=conversation.tenant_id, conversation_id=conversation.pk,
                               attempt=2) == "gave up"
    assert _buffer_jobs() == []
    from messaging.buffer import rearm_stranded_conversations

    post_meta_inline.refresh_from_db()
    assert post_meta_inline.answered_at is not None
    assert rearm_stranded_conversations(older_than_seconds=0) == 0  # not started again every minute
    conversation.refresh_from_db()
    assert conversation.turn_claim == [] and "failed 3 times" in conversation.last_error


def test_the_sweep_rearms_conversations_left_without_a_job(burst):
    from messaging.buffer import rearm_stranded_conversations

    conversation, t0 = burst
    assert rearm_stranded_conversations(older_than_seconds=0) == 0  # its job waits
    ProcrastinateJob.objects.all().delete()  # the job failed while the database was down
    assert rearm_stranded_conversations(older_than_seconds=3600) == 0  # too recent to be stranded
    assert rearm_stranded_conversations(older_than_seconds=0) == 1
    assert len(_buffer_jobs()) == 1
    runner = Runner()
    assert _run(conversation, t0 + timedelta(seconds=17), runner).startswith("answered 2")
    assert rearm_stranded_conversations(older_than_seconds=0) == 0  # answered: nothing left


def test_the_sweep_rearms_an_interrupted_turn(burst):
    from messaging.buffer import rearm_stranded_conversations

    conversation, t0 = burst
    with pytest.raises(WorkerDied):
        _run(conversation, t0 + timedelta(seconds=17), Runner(crash=WorkerDied()))
    ProcrastinateJob.objects.all().delete()
    assert rearm_stranded_conversations(older_than_seconds=0) == 1


def test_a_conversation_set_to_another_agent_keeps_it(burst, tenant_a):
    from agents.models import Agent

    conversation, t0 = burst
    other = Agent.objects.for_tenant(tenant_a.pk).create(tenant_id=tenant_a.pk, name="Especialista")
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(agent=other)
    runner = Runner()
    _run(conversation, t0 + timedelta(seconds=17), runner)
    assert runner.calls[0]["agent_id"] == other.pk != conversation.binding.agent_id


def test_a_customer_writing_to_a_closed_conversation_opens_it_again(anon, burst):
    conversation, t0 = burst
    _run(conversation, t0 + timedelta(seconds=17), Runner())
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(status="closed")
    post_meta(anon, whatsapp_text(conversation.binding.external_id, "5491100000001", "otra consulta"))
    conversation.refresh_from_db()
    assert conversation.status == "bot"
    runner = Runner()
    assert _run(conversation, conversation.buffer_due_at + timedelta(seconds=1), runner).startswith("answered 1")
    assert runner.calls[0]["user_text"] == "otra consulta"


def test_a_replayed_old_message_does_not_open_a_closed_conversation(anon, burst):
    conversation, _ = burst
    first = ChatMessage.dangerously_unscoped.filter(direction="in").order_by("id").first()
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(status="closed")
    post_meta(anon, whatsapp_text(conversation.binding.external_id, "5491100000001", "hola",
                                  message_id=first.provider_message_id))  # Meta delivers it again
    conversation.refresh_from_db()
    assert conversation.status == "closed"


def test_a_reaction_does_not_open_a_closed_conversation(anon, burst):
    conversation, _ = burst
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(status="closed")
    body = whatsapp_text(conversation.binding.external_id, "5491100000001", "x")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(type="reaction", reaction={"message_id": "wamid.any", "emoji": "👍"})
    post_meta(anon, body)
    conversation.refresh_from_db()
    assert conversation.status == "closed"


def test_a_delivery_processed_late_does_not_bring_the_wait_back(anon, burst):
    from messaging import ingest
    from messaging.models import ChannelBinding
    from messaging.webhooks.normalized import InboundMessage

    conversation, t0 = burst
    due = conversation.buffer_due_at
    binding = ChannelBinding.dangerously_unscoped.get(pk=conversation.binding_id)
    late = InboundMessage(route_key=binding.external_id, channel_source="whatsapp", contact_id="5491100000001",
                          provider_message_id="wamid.late", text="llegué tarde")
    ingest.record_inbound_many([(binding, late, t0 - timedelta(minutes=5))])  # received long ago, retried now
    conversation.refresh_from_db()
    assert conversation.buffer_due_at == due


@pytest.mark.parametrize("channel", ["facebook", "instagram"])
def test_messenger_and_instagram_windows_close_after_24_hours_too(burst, channel):
    conversation, t0 = burst
    ChatConversation.dangerously_unscoped.filter(pk=conversation.pk).update(
        channel_source=channel, last_inbound_at=t0 - timedelta(hours=25))
    runner = Runner()
    assert "24-hour window is closed" in _run(conversation, t0 + timedelta(seconds=17), runner)
    assert runner.calls == []


def test_migration_0007_makes_copied_agents_follow_the_channel(tenant_a, agent_a):
    """Conversations created before 0007 carry a copy of their channel's agent at the time."""
    import importlib
    from types import SimpleNamespace

    from django.db import connection

    from agents.models import Agent
    from tests.messaging import factories

    migration = importlib.import_module("messaging.migrations.0007_conversations_follow_their_channels_agent")
    old = Agent.objects.for_tenant(tenant_a.pk).create(tenant_id=tenant_a.pk, name="Viejo", is_active=False)
    override = Agent.objects.for_tenant(tenant_a.pk).create(tenant_id=tenant_a.pk, name="Especialista")
    binding = factories.binding(tenant_a, agent=agent_a)
    copy, stale, chosen = (factories.conversation(tenant_a, binding=binding, agent=agent) for agent in (agent_a, old, override))
    migration.follow_the_channel(None, SimpleNamespace(connection=connection))
    for conversation in (copy, stale, chosen):
        conversation.refresh_from_db()
    assert (copy.agent_id, stale.agent_id, chosen.agent_id) == (None, None, override.pk)
