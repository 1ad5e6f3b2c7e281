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
    assert call["conversation_id"] == conversation.pk and call["agent_id"] == conversation.agent_id
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
