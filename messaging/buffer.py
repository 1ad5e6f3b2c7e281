"""The durable inbound buffer: one agent turn per burst of customer messages.

State lives in PostgreSQL (ChatConversation.buffer_due_at, ChatMessage.answered_at,
ChatConversation.turn_claim) and in one procrastinate job per conversation (queueing lock for
"at most one waiting", lock for "one running"). The webhook pushes buffer_due_at forward and makes
sure a job waits; the job, holding the conversation row lock, reschedules itself while the due
time is ahead, otherwise claims the unanswered messages and runs the turn. A crash after the
claim leaves turn_claim set and the next run answers those messages again (never zero times).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.exceptions import AlreadyEnqueued

from messaging import events
from messaging.history import build_history, message_as_text
from messaging.models import ChatConversation, ChatMessage, ConversationStatus, Direction, Role
from tenants.scoping import tenant_scope

logger = logging.getLogger(__name__)

WHATSAPP_WINDOW = timedelta(hours=24)


BUFFER_LOCK_PREFIX = "buffer:"


def buffer_lock(conversation_id: int) -> str:
    return f"{BUFFER_LOCK_PREFIX}{conversation_id}"


def ensure_buffer_job(conversation: ChatConversation, due_at) -> bool:
    """Make sure one buffer job waits for the conversation (look first: deferring into a taken
    queueing lock costs a unique violation and a savepoint rollback, see STACK.md). The webhook's
    inbox's batch write does the same in SQL (messaging.upserts.record_inbound_batch)."""
    from messaging.tasks import answer_conversation

    lock = buffer_lock(conversation.pk)
    if ProcrastinateJob.objects.filter(queueing_lock=lock, status="todo").exists():
        return False
    try:
        with transaction.atomic():
            answer_conversation.configure(lock=lock, queueing_lock=lock, schedule_at=due_at).defer(
                tenant_id=conversation.tenant_id, conversation_id=conversation.pk
            )
    except AlreadyEnqueued:  # a concurrent webhook won the race; its job serves this message too
        return False
    return True


def skip_reason(conversation: ChatConversation, now) -> str:
    """Why the bot must not answer now ("" when it may)."""
    from agents.models import Agent

    if conversation.status == ConversationStatus.HUMAN:
        return "Conversation is in human mode; the bot does not answer."
    if conversation.status == ConversationStatus.CLOSED:
        return "Conversation is closed; the bot does not answer."
    if conversation.bot_paused_until and conversation.bot_paused_until > now:
        return f"Bot paused until {conversation.bot_paused_until:%Y-%m-%d %H:%M} UTC."
    agent_id = conversation.agent_id or (conversation.binding.agent_id if conversation.binding_id else None)
    if agent_id is None:
        return "No agent is assigned to this channel."
    agent = Agent.objects.for_tenant(conversation.tenant_id).filter(pk=agent_id).values("is_active").first()
    if agent is None:
        return f"Agent {agent_id} no longer exists."
    if not agent["is_active"]:
        return f"Agent {agent_id} is inactive."
    if conversation.channel_source == "whatsapp" and (
        conversation.last_inbound_at is None or now - conversation.last_inbound_at > WHATSAPP_WINDOW
    ):
        return "WhatsApp 24-hour window is closed; only template messages may be sent."
    return ""


def _claim(conversation_id: int, now):
    with transaction.atomic():
        conversation = (
            ChatConversation.objects.select_for_update(of=("self",)).select_related("binding")
            .filter(pk=conversation_id).first()
        )
        if conversation is None:
            return "missing"
        if conversation.turn_claim:
            logger.warning("Conversation %s: answering messages %s again after an interrupted turn",
                           conversation.pk, conversation.turn_claim)
            return conversation, list(conversation.turn_claim)
        pending = ChatMessage.objects.filter(
            conversation=conversation, direction=Direction.IN, role=Role.CUSTOMER, answered_at__isnull=True
        )
        ids = list(pending.order_by("created_at", "id").values_list("id", flat=True))
        if not ids:
            return "nothing to answer"
        if conversation.buffer_due_at and conversation.buffer_due_at > now:
            ensure_buffer_job(conversation, conversation.buffer_due_at)
            return "rescheduled"
        reason = skip_reason(conversation, now)
        ChatMessage.objects.filter(pk__in=ids).update(answered_at=now)
        if reason:
            logger.info("Conversation %s: no turn for %d message(s): %s", conversation.pk, len(ids), reason)
            conversation.last_error = reason
            conversation.save(update_fields=["last_error", "updated_at"])
            events.conversation_updated(conversation)
            return f"skipped: {reason}"
        conversation.turn_claim = ids
        conversation.save(update_fields=["turn_claim", "updated_at"])
        return conversation, ids


def _default_turn_runner(**kwargs):
    from agents.runtime import run_turn

    return run_turn(**kwargs)


def run_buffer(*, tenant_id: int, conversation_id: int, clock=timezone.now, turn_runner=None) -> str:
    """The buffer job's body; `clock` and `turn_runner` are injectable for tests."""
    with tenant_scope(tenant_id):
        claim = _claim(conversation_id, clock())
        if isinstance(claim, str):
            return claim
        conversation, ids = claim
        return _answer(conversation, ids, turn_runner or _default_turn_runner)


def _answer(conversation: ChatConversation, ids: list[int], turn_runner) -> str:
    from messaging.relay import relay_parts

    claimed = list(ChatMessage.objects.filter(pk__in=ids).order_by("created_at", "id"))
    agent_id = conversation.agent_id or conversation.binding.agent_id
    events.turn_typing(conversation.tenant_id, conversation.pk, True)
    try:
        result = turn_runner(
            tenant_id=conversation.tenant_id, agent_id=agent_id,
            history=build_history(conversation, exclude_ids=ids, window=settings.AGENT_HISTORY_WINDOW),
            user_text="\n".join(message_as_text(m) for m in claimed), conversation_id=conversation.pk,
        )
        error, parts = result.error, [p for p in (result.parts or []) if p and p.strip()]
        turn_id = str(result.turn_id or "")
    except Exception as exc:  # run_turn promises not to raise; a bug must still not block the buffer
        logger.exception("Agent turn crashed for conversation %s", conversation.pk)
        error, parts, turn_id = f"Agent turn failed: {type(exc).__name__}", [], ""
    finally:
        events.turn_typing(conversation.tenant_id, conversation.pk, False)
    with transaction.atomic():
        locked = ChatConversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.turn_claim != ids:
            return "answered elsewhere"
        replies = relay_parts(conversation=locked, parts=parts, role=Role.AGENT, turn_id=turn_id) if parts else []
        locked.turn_claim = []
        locked.last_error = (error or "")[:500]
        locked.save(update_fields=["turn_claim", "last_error", "updated_at"])
        events.conversation_updated(locked)
    if error:
        logger.warning("Conversation %s: agent turn returned an error: %s", conversation.pk, error)
        return f"error: {error}"
    _feed_shadow_rag(locked, agent_id, claimed + replies)
    return f"answered {len(ids)} message(s) with {len(parts)} part(s)"


def _feed_shadow_rag(conversation, agent_id, messages) -> None:
    """Answered turns feed the knowledge base's Shadow RAG (agents that opted in), when the rag
    app offers it (messaging -> rag is an allowed import; rag never imports messaging)."""
    try:
        from rag.services import index_conversation_messages
    except ImportError:
        return
    from agents.models import Agent

    if not Agent.objects.for_tenant(conversation.tenant_id).filter(pk=agent_id, shadow_rag_enabled=True).exists():
        return
    try:
        index_conversation_messages(tenant_id=conversation.tenant_id, agent_id=agent_id, messages=[
            {"id": m.pk, "conversation_id": conversation.pk, "role": m.role, "text": m.text,
             "created_at": m.created_at.isoformat()}
            for m in messages
        ])
    except Exception:
        logger.warning("Shadow RAG indexing failed for conversation %s", conversation.pk, exc_info=True)


def due_time(now=None, seconds: float | None = None):
    return (now or timezone.now()) + timedelta(
        seconds=settings.MESSAGE_BUFFER_SECONDS if seconds is None else seconds
    )
